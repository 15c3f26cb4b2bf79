"""Multi-scale deformable attention (Deformable DETR), as a compiled CUDA op and its PyTorch twin.

Legend: N batch (clips x frames), S keys of all levels flattened, M heads, D channels per head,
Lq queries, L levels, P sampling points per head and level, C = M * D channels.

``ms_deform_attn`` dispatches to ``vis_core._C`` for CUDA tensors when the extension is built and to
the pure-PyTorch twin (``ms_deform_attn_pytorch``, built on ``grid_sample``) otherwise. Both sample
bilinearly with ``align_corners=False`` and zeros outside the map, so they compute the same thing.
Set ``VIS_CORE_FORCE_PYTORCH_OPS=1`` (or pass ``impl="pytorch"``) to force the twin everywhere.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import Function
from torch.autograd.function import once_differentiable

logger = logging.getLogger(__name__)

try:
    from vis_core import _C
except ImportError as _error:  # the extension was not built: the PyTorch twin is used
    _C = None
    _C_IMPORT_ERROR: Optional[ImportError] = _error
else:
    _C_IMPORT_ERROR = None

__all__ = [
    "MSDeformAttn",
    "ms_deform_attn",
    "ms_deform_attn_pytorch",
    "is_compiled_op_available",
]

_IMPLS = ("auto", "cuda", "pytorch")
FORCE_PYTORCH_ENV = "VIS_CORE_FORCE_PYTORCH_OPS"


def is_compiled_op_available() -> bool:
    """Whether ``vis_core._C`` (the CUDA version of the op) was built and imports."""
    return _C is not None


def _check_inputs(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> None:
    if value.dim() != 4:
        raise ValueError(f"ms_deform_attn: value must be (N, S, M, D), got {tuple(value.shape)}")
    N, S, M, _ = value.shape
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError(
            f"ms_deform_attn: spatial_shapes must be (L, 2) as (H, W), got {tuple(spatial_shapes.shape)}"
        )
    L = spatial_shapes.shape[0]
    if tuple(level_start_index.shape) != (L,):
        raise ValueError(
            f"ms_deform_attn: level_start_index must be ({L},), got {tuple(level_start_index.shape)}"
        )
    if (
        sampling_locations.dim() != 6
        or sampling_locations.shape[0] != N
        or sampling_locations.shape[2] != M
        or sampling_locations.shape[3] != L
        or sampling_locations.shape[5] != 2
    ):
        raise ValueError(
            "ms_deform_attn: sampling_locations must be (N, Lq, M, L, P, 2) = "
            f"({N}, Lq, {M}, {L}, P, 2), got {tuple(sampling_locations.shape)}"
        )
    if tuple(attention_weights.shape) != tuple(sampling_locations.shape[:5]):
        raise ValueError(
            "ms_deform_attn: attention_weights must be (N, Lq, M, L, P) = "
            f"{tuple(sampling_locations.shape[:5])}, got {tuple(attention_weights.shape)}"
        )
    num_keys = int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())
    if num_keys != S:
        raise ValueError(
            f"ms_deform_attn: value has S={S} keys but the levels {spatial_shapes.tolist()} "
            f"hold {num_keys}"
        )


def ms_deform_attn_pytorch(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Pure-PyTorch multi-scale deformable attention (runs on any device, any float dtype).

    Args:
        value: (N, S, M, D) keys of all levels, flattened level after level.
        spatial_shapes: (L, 2) integer (H, W) of each level.
        level_start_index: (L,) offset of each level in S.
        sampling_locations: (N, Lq, M, L, P, 2) normalised (x, y) in [0, 1].
        attention_weights: (N, Lq, M, L, P).
    Returns:
        (N, Lq, M * D): for each query and head, sum over levels and points of weight x value
        sampled bilinearly (align_corners=False, zeros outside the map).
    """
    N, _, M, D = value.shape
    _, Lq, _, L, P, _ = sampling_locations.shape
    shapes = spatial_shapes.tolist()
    starts = level_start_index.tolist()
    grids = 2 * sampling_locations - 1  # grid_sample's [-1, 1] coordinates
    sampled = []
    for lvl, ((H, W), start) in enumerate(zip(shapes, starts)):
        value_l = value[:, start : start + H * W]  # (N, H*W, M, D)
        value_l = value_l.permute(0, 2, 3, 1).reshape(N * M, D, H, W)  # (N*M, D, H, W)
        grid_l = grids[:, :, :, lvl].transpose(1, 2).reshape(N * M, Lq, P, 2)  # (N*M, Lq, P, 2)
        sampled.append(
            F.grid_sample(
                value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False
            )
        )  # (N*M, D, Lq, P)
    stacked = torch.stack(sampled, dim=-2)  # (N*M, D, Lq, L, P)
    weights = attention_weights.transpose(1, 2).reshape(N * M, 1, Lq, L, P)
    output = (stacked * weights).sum(dim=(-2, -1))  # (N*M, D, Lq)
    return output.view(N, M * D, Lq).transpose(1, 2).contiguous()  # (N, Lq, M*D)


class _MSDeformAttnFunction(Function):
    @staticmethod
    def forward(
        ctx, value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    ):
        output = _C.ms_deform_attn_forward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights
        )
        ctx.save_for_backward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights
        )
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = (
            ctx.saved_tensors
        )
        grad_value, grad_locations, grad_weights = _C.ms_deform_attn_backward(
            value,
            spatial_shapes,
            level_start_index,
            sampling_locations,
            attention_weights,
            grad_output.contiguous(),
        )
        return grad_value, None, None, grad_locations, grad_weights


def _resolve_impl(impl: str, value: Tensor) -> str:
    if impl not in _IMPLS:
        raise ValueError(f"ms_deform_attn: impl must be one of {_IMPLS}, got {impl!r}")
    if impl == "cuda":
        if _C is None:
            raise RuntimeError(
                "ms_deform_attn(impl='cuda') was asked for, but vis_core._C is not built "
                f"({_C_IMPORT_ERROR}). Build it with a CUDA toolkit: `pip install --no-build-isolation "
                "-e .` in the repository root (without VIS_CORE_NO_CUDA_OPS=1), or use impl='pytorch'."
            )
        if not value.is_cuda:
            raise RuntimeError(
                f"ms_deform_attn(impl='cuda') needs CUDA tensors, got value on {value.device}"
            )
        return "cuda"
    if impl == "pytorch" or os.environ.get(FORCE_PYTORCH_ENV, "0") == "1":
        return "pytorch"
    return "cuda" if (_C is not None and value.is_cuda) else "pytorch"


def ms_deform_attn(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    *,
    impl: str = "auto",
) -> Tensor:
    """Multi-scale deformable attention with Deformable DETR's signature.

    Args:
        value: (N, S, M, D).
        spatial_shapes: (L, 2) integer (H, W) of each level.
        level_start_index: (L,) offset of each level in S.
        sampling_locations: (N, Lq, M, L, P, 2) normalised (x, y) in [0, 1].
        attention_weights: (N, Lq, M, L, P).
        impl: "auto" (compiled op for CUDA tensors when ``vis_core._C`` is built, else the twin;
            ``VIS_CORE_FORCE_PYTORCH_OPS=1`` forces the twin), "cuda" (error if not available) or
            "pytorch".
    Returns:
        (N, Lq, M * D).
    """
    _check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    if _resolve_impl(impl, value) == "pytorch":
        return ms_deform_attn_pytorch(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights
        )
    dtype = value.dtype
    compute = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    device = value.device
    output = _MSDeformAttnFunction.apply(
        value.to(compute),
        spatial_shapes.to(device=device, dtype=torch.long),
        level_start_index.to(device=device, dtype=torch.long),
        sampling_locations.to(compute),
        attention_weights.to(compute),
    )
    return output.to(dtype)


class MSDeformAttn(nn.Module):
    """The multi-scale deformable attention module of Deformable DETR.

    Each query predicts, for each of ``n_heads`` heads, ``n_levels`` levels and ``n_points``
    points, a sampling offset around its reference point and an attention weight (softmax over
    the levels and points of a head); the output is the weighted sum of the sampled values,
    projected back to ``d_model`` channels.
    """

    def __init__(
        self,
        d_model: int = 256,
        n_levels: int = 4,
        n_heads: int = 8,
        n_points: int = 4,
        *,
        impl: str = "auto",
    ):
        """
        Args:
            d_model: channels C of queries and values.
            n_levels: feature levels L.
            n_heads: attention heads M; C must be divisible by M.
            n_points: sampling points P per head and level.
            impl: passed to :func:`ms_deform_attn` ("auto", "cuda" or "pytorch").
        """
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(
                f"MSDeformAttn: d_model={d_model} must be divisible by n_heads={n_heads}"
            )
        if impl not in _IMPLS:
            raise ValueError(f"MSDeformAttn: impl must be one of {_IMPLS}, got {impl!r}")
        head_dim = d_model // n_heads
        if head_dim & (head_dim - 1) != 0:
            logger.warning(
                "MSDeformAttn: channels per head (%d) is not a power of 2; the CUDA op is less "
                "efficient then.",
                head_dim,
            )
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.impl = impl
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's initialisation: offsets start on rays in M directions, the k-th point
        of a head at distance k, weights uniform, projections Xavier."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float64) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([angles.cos(), angles.sin()], dim=-1)  # (M, 2)
        directions = directions / directions.abs().max(dim=-1, keepdim=True).values
        steps = torch.arange(1, self.n_points + 1, dtype=torch.float64)  # (P,)
        bias = directions[:, None, None, :] * steps[None, None, :, None]  # (M, 1, P, 2)
        bias = bias.expand(self.n_heads, self.n_levels, self.n_points, 2)  # (M, L, P, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1).float())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        input_flatten: Tensor,
        input_spatial_shapes: Tensor,
        input_level_start_index: Tensor,
        input_padding_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """
        Args:
            query: (N, Lq, C).
            reference_points: (N, Lq, L, 2) normalised (x, y) in [0, 1], or (N, Lq, L, 4) boxes
                (cx, cy, w, h) whose half size scales the offsets.
            input_flatten: (N, S, C) the features of all levels, flattened level after level.
            input_spatial_shapes: (L, 2) integer (H, W) of each level.
            input_level_start_index: (L,) offset of each level in S.
            input_padding_mask: optional (N, S) bool, True at padded keys (their values are zeroed).
        Returns:
            (N, Lq, C).
        """
        N, Lq, C = query.shape
        _, S, _ = input_flatten.shape
        M, L, P = self.n_heads, self.n_levels, self.n_points
        if C != self.d_model or input_flatten.shape[-1] != self.d_model:
            raise ValueError(
                f"MSDeformAttn: expected {self.d_model} channels, got query {tuple(query.shape)} and "
                f"input_flatten {tuple(input_flatten.shape)}"
            )
        if input_spatial_shapes.shape[0] != L:
            raise ValueError(
                f"MSDeformAttn was built for {L} levels, got spatial shapes of "
                f"{input_spatial_shapes.shape[0]}"
            )
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(N, S, M, C // M)  # (N, S, C) -> (N, S, M, D)
        offsets = self.sampling_offsets(query).view(N, Lq, M, L, P, 2)
        weights = self.attention_weights(query).view(N, Lq, M, L * P).softmax(-1)
        weights = weights.view(N, Lq, M, L, P)  # (N, Lq, M, L*P) -> (N, Lq, M, L, P)
        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level: divide by (W, H)
            normalizer = input_spatial_shapes.flip(-1).to(offsets)  # (L, 2) as (W, H)
            locations = (
                reference_points[:, :, None, :, None, :]
                + offsets / normalizer[None, None, None, :, None, :]
            )
        elif reference_points.shape[-1] == 4:
            locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / P * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        else:
            raise ValueError(
                "MSDeformAttn: reference_points must end in 2 (x, y) or 4 (cx, cy, w, h), got "
                f"{tuple(reference_points.shape)}"
            )
        output = ms_deform_attn(
            value, input_spatial_shapes, input_level_start_index, locations, weights, impl=self.impl
        )
        return self.output_proj(output)
