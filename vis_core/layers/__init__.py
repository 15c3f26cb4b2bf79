"""Compiled ops of vis_core with their pure-PyTorch twins (sources of the CUDA versions in csrc/)."""

from .deform_attn import (
    MSDeformAttn,
    is_compiled_op_available,
    ms_deform_attn,
    ms_deform_attn_pytorch,
)

__all__ = ["MSDeformAttn", "is_compiled_op_available", "ms_deform_attn", "ms_deform_attn_pytorch"]
