"""Sine position encodings (DETR's, normalised) for images and for T x H x W feature volumes.

Legend: B clips, T frames, C channels, H, W feature height and width.

Both encodings have no parameters. Coordinates are the 1-based row/column (and frame) index,
normalised to (0, 2*pi] by the extent of that axis, then encoded with sines and cosines of
geometrically spaced frequencies. The 2-D code is ``cat(y code, x code)`` (C/2 channels each); the
3-D code adds (not concatenates) a C-channel code of the frame index to it, as Mask2Former-VIS does,
so a frame's code depends on the clip length it is seen in.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["PositionEmbeddingSine", "PositionEmbeddingSine3D", "sine_code"]


def sine_code(coords: Tensor, num_feats: int, temperature: float) -> Tensor:
    """Encode coordinates with interleaved sines and cosines.

    Args:
        coords: (...) float coordinates.
        num_feats: channels of the code (even).
        temperature: base of the geometric frequency progression.
    Returns:
        (..., num_feats): channel 2i is sin(coords / temperature^(2i/num_feats)), channel 2i+1 the
        cosine of the same argument.
    """
    if num_feats % 2 != 0:
        raise ValueError(f"sine_code: num_feats must be even, got {num_feats}")
    dim = torch.arange(num_feats, dtype=torch.float32, device=coords.device)
    dim = temperature ** (2 * torch.div(dim, 2, rounding_mode="floor") / num_feats)
    angles = coords[..., None].float() / dim  # (..., num_feats)
    code = torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1)
    return code.flatten(-2)  # (..., num_feats / 2, 2) -> (..., num_feats)


def _normalised_index(not_mask: Tensor, dim: int, normalize: bool, scale: float) -> Tensor:
    index = not_mask.cumsum(dim, dtype=torch.float32)
    if normalize:
        last = index.narrow(dim, index.shape[dim] - 1, 1)
        index = index / (last + 1e-6) * scale
    return index


class _SineBase(nn.Module):
    def __init__(
        self,
        num_pos_feats: int = 128,
        temperature: float = 10000.0,
        normalize: bool = True,
        scale: Optional[float] = None,
    ):
        """
        Args:
            num_pos_feats: channels of the x code and of the y code (the output has twice as many).
            temperature: base of the frequencies.
            normalize: normalise coordinates to (0, scale] by the axis extent.
            scale: the normalised range (default 2*pi); only with ``normalize``.
        """
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError(f"{type(self).__name__}: scale={scale} needs normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def extra_repr(self) -> str:
        return (
            f"num_pos_feats={self.num_pos_feats}, temperature={self.temperature}, "
            f"normalize={self.normalize}, scale={self.scale:.4f}"
        )


class PositionEmbeddingSine(_SineBase):
    """2-D sine position encoding of an image feature map (DETR, normalised)."""

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            x: (B, C', H, W) features; only their shape and device are used.
            mask: optional (B, H, W) bool, True at padded positions (not counted).
        Returns:
            (B, 2 * num_pos_feats, H, W).
        """
        if x.dim() != 4:
            raise ValueError(f"PositionEmbeddingSine expects (B, C, H, W), got {tuple(x.shape)}")
        if mask is None:
            mask = torch.zeros(
                (x.shape[0], x.shape[2], x.shape[3]), dtype=torch.bool, device=x.device
            )
        not_mask = ~mask
        y = _normalised_index(not_mask, 1, self.normalize, self.scale)
        xx = _normalised_index(not_mask, 2, self.normalize, self.scale)
        pos = torch.cat(
            (
                sine_code(y, self.num_pos_feats, self.temperature),
                sine_code(xx, self.num_pos_feats, self.temperature),
            ),
            dim=-1,
        )  # (B, H, W, 2 * num_pos_feats)
        return pos.permute(0, 3, 1, 2).to(x.dtype)


class PositionEmbeddingSine3D(_SineBase):
    """3-D sine position encoding of a clip's features: the 2-D code plus a frame-index code.

    The frame code has ``2 * num_pos_feats`` channels (the same as the 2-D code) and is added to it.
    """

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            x: (B, T, C', H, W) features; only their shape and device are used.
            mask: optional (B, T, H, W) bool, True at padded positions (not counted).
        Returns:
            (B, T, 2 * num_pos_feats, H, W).
        """
        if x.dim() != 5:
            raise ValueError(
                f"PositionEmbeddingSine3D expects (B, T, C, H, W), got {tuple(x.shape)}"
            )
        if mask is None:
            B, T, _, H, W = x.shape
            mask = torch.zeros((B, T, H, W), dtype=torch.bool, device=x.device)
        not_mask = ~mask
        z = _normalised_index(not_mask, 1, self.normalize, self.scale)
        y = _normalised_index(not_mask, 2, self.normalize, self.scale)
        xx = _normalised_index(not_mask, 3, self.normalize, self.scale)
        spatial = torch.cat(
            (
                sine_code(y, self.num_pos_feats, self.temperature),
                sine_code(xx, self.num_pos_feats, self.temperature),
            ),
            dim=-1,
        )  # (B, T, H, W, 2 * num_pos_feats)
        temporal = sine_code(z, 2 * self.num_pos_feats, self.temperature)
        pos = spatial + temporal  # (B, T, H, W, 2 * num_pos_feats)
        return pos.permute(0, 1, 4, 2, 3).to(x.dtype)
