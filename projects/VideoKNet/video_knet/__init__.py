"""Video K-Net (Li et al., "Video K-Net: A Simple, Strong, and Unified Baseline for Video
Segmentation", CVPR 2022, arXiv 2204.04656) as a detectron2 project on vis_core: the VIS model is
the clip-level one of the official code (lxtGH/Video-K-Net, ``knet_vis``).

In progress (issue 16): the kernel head and the per-frame kernel update stage are built; the
tracker, the meta-architecture and the configs are not yet.
"""

from .kernel_head import ConvKernelHead, SemanticFPNWrapper
from .kernel_update_head import KernelUpdateHead, KernelUpdator

__all__ = ["ConvKernelHead", "KernelUpdateHead", "KernelUpdator", "SemanticFPNWrapper"]
