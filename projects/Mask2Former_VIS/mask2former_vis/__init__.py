"""Mask2Former-VIS (Cheng et al., arXiv 2112.10764) as a detectron2 project on vis_core.

Importing the package registers the meta-architecture ``Mask2FormerVIS`` in detectron2's
``META_ARCH_REGISTRY``.
"""

from vis_core.config import register_num_classes_key
from vis_core.modeling.pixel_decoder import MSDeformAttnPixelDecoder

from .config import add_mask2former_vis_config
from .inference import encode_rle, link_queries, masks_to_original_size, select_top_pairs
from .meta_arch import Mask2FormerVIS, Mask2FormerVISHead
from .transformer_decoder import VideoMultiScaleMaskedTransformerDecoder

__all__ = [
    "Mask2FormerVIS",
    "Mask2FormerVISHead",
    "MSDeformAttnPixelDecoder",
    "VideoMultiScaleMaskedTransformerDecoder",
    "add_mask2former_vis_config",
    "encode_rle",
    "link_queries",
    "masks_to_original_size",
    "select_top_pairs",
]

register_num_classes_key("Mask2FormerVIS", "MODEL.MASK2FORMER_VIS.NUM_CLASSES")
