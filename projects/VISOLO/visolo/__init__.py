"""VISOLO (Han et al., CVPR 2022): grid-based space-time aggregation for online VIS, on detectron2."""

from vis_core.config import register_num_classes_key

from .config import add_visolo_config
from .inference import VISOLOState
from .meta_arch import VISOLO

__all__ = ["add_visolo_config", "VISOLO", "VISOLOState"]

register_num_classes_key("VISOLO", "MODEL.VISOLO.NUM_CLASSES")
