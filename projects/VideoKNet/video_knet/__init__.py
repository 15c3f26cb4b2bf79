"""Video K-Net (Li et al., "Video K-Net: A Simple, Strong, and Unified Baseline for Video
Segmentation", CVPR 2022, arXiv 2204.04656) as a detectron2 project on vis_core: the VIS model is
the clip-level one of the official code (lxtGH/Video-K-Net, ``knet_vis``).

Importing the package registers the meta-architecture ``VideoKNet`` in detectron2's
``META_ARCH_REGISTRY`` and its class-count key.
"""

from vis_core.config import register_num_classes_key

from .config import add_video_knet_config
from .kernel_head import ConvKernelHead, SemanticFPNWrapper
from .kernel_update_head import KernelUpdateHead, KernelUpdator
from .meta_arch import VideoKNet

__all__ = [
    "ConvKernelHead",
    "KernelUpdateHead",
    "KernelUpdator",
    "SemanticFPNWrapper",
    "VideoKNet",
    "add_video_knet_config",
]

register_num_classes_key("VideoKNet", "MODEL.VIDEO_KNET.NUM_CLASSES")
