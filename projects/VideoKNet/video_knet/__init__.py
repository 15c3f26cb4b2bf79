"""Video K-Net (Li et al., "Video K-Net: A Simple, Strong, and Unified Baseline for Video
Segmentation", CVPR 2022, arXiv 2204.04656) as a detectron2 project on vis_core: the VIS model is
the clip-level one of the official code (lxtGH/Video-K-Net, ``knet_vis``).

In progress (issue 16): the per-frame kernel update stage is built; the kernel head, the tracker,
the meta-architecture and the configs are not yet.
"""

from .kernel_update_head import KernelUpdateHead, KernelUpdator

__all__ = ["KernelUpdateHead", "KernelUpdator"]
