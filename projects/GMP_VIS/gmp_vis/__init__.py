"""GMP-VIS (Qin et al., "A Graph Matching Perspective With Transformers on Video Instance
Segmentation", CVPR 2022) as a detectron2 project on vis_core, built from the paper (the released
code is a partial VisTR fork without checkpoints).

Importing the package registers the meta-architecture ``GMPVIS`` in detectron2's
``META_ARCH_REGISTRY`` and its class-count key.
"""

from vis_core.config import register_num_classes_key

from .association import GraphAssociation, Tracker
from .config import add_gmp_vis_config
from .decoder import GMPVISDecoder
from .meta_arch import GMPVIS

__all__ = ["GMPVIS", "GMPVISDecoder", "GraphAssociation", "Tracker", "add_gmp_vis_config"]

register_num_classes_key("GMPVIS", "MODEL.GMP_VIS.NUM_CLASSES")
