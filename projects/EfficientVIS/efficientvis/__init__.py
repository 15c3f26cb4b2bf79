"""EfficientVIS (Wu et al., "Efficient Video Instance Segmentation via Tracklet Query and Proposal",
CVPR 2022, arXiv 2203.01853) as a detectron2 project on vis_core, built from the paper (no code was
published).

Importing the package registers the meta-architecture ``EfficientVIS`` in detectron2's
``META_ARCH_REGISTRY`` and its class-count key.
"""

from vis_core.config import register_num_classes_key

from .config import add_efficientvis_config
from .meta_arch import EfficientVIS
from .stage_head import EfficientVISStageHead, temporal_dynamic_conv

__all__ = [
    "EfficientVIS",
    "EfficientVISStageHead",
    "add_efficientvis_config",
    "temporal_dynamic_conv",
]

register_num_classes_key("EfficientVIS", "MODEL.EFFICIENTVIS.NUM_CLASSES")
