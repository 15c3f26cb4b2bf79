"""TeViT (Yang et al., "Temporally Efficient Vision Transformer for Video Instance Segmentation",
CVPR 2022, arXiv 2204.08412) as a detectron2 project on vis_core.

Importing the package registers the meta-architecture ``TeViT`` in detectron2's
``META_ARCH_REGISTRY`` and its class-count key.
"""

from vis_core.config import register_num_classes_key

from .config import add_tevit_config
from .meta_arch import TeViT

__all__ = ["TeViT", "add_tevit_config"]

register_num_classes_key("TeViT", "MODEL.TEVIT.NUM_CLASSES")
