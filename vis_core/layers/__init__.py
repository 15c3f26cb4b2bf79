"""Compiled ops of vis_core with their pure-PyTorch twins (sources of the CUDA versions in csrc/)."""

from .deform_attn import (
    MSDeformAttn,
    is_compiled_op_available,
    ms_deform_attn,
    ms_deform_attn_pytorch,
)
from .roi_extractor import MultiLevelRoIAlign

__all__ = [
    "MSDeformAttn",
    "MultiLevelRoIAlign",
    "is_compiled_op_available",
    "ms_deform_attn",
    "ms_deform_attn_pytorch",
]
