"""VISOLO's per-frame branches: category (pre/post), kernel (pre/post) and the mask feature branch.

Legend: B images (clips x frames), C channels, E hidden channels, K classes, S_h x S_w the grid,
G = S_h * S_w cells, H x W the padded input.
"""

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, get_norm
from torch import nn

__all__ = [
    "add_coords",
    "CategoryPreBranch",
    "CategoryPostBranch",
    "KernelPreBranch",
    "KernelPostBranch",
    "MaskFeatureBranch",
    "init_msra",
    "conv_block",
]


def init_msra(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, relu) weights and zero biases for every conv, as the official code."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def add_coords(x: torch.Tensor) -> torch.Tensor:
    """CoordConv input: append normalised (y, x) coordinates in [-1, 1].

    Args:
        x: (B, C, H, W).
    Returns:
        (B, C + 2, H, W).
    """
    b, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([yy, xx])[None].expand(b, 2, h, w)
    return torch.cat([x, coords], dim=1)


def conv_block(in_ch: int, out_ch: int, k: int, norm: str, relu: bool) -> Conv2d:
    """k x k conv (same padding) with optional norm and ReLU, and a bias even when normalised, as
    the official code (detectron2's Conv2d default), so that its checkpoints load."""
    return Conv2d(
        in_ch,
        out_ch,
        kernel_size=k,
        padding=k // 2,
        bias=True,
        norm=get_norm(norm, out_ch),
        activation=nn.ReLU(inplace=True) if relu else None,
    )


def _resize_to_grid(x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(grid), mode="bilinear", align_corners=False)


class CategoryPreBranch(nn.Module):
    """res4 -> grid -> key map K (the memory-matching input) and category feature Cf."""

    def __init__(self, in_channels: int, dim: int, grid: Tuple[int, int], norm: str = "GN"):
        super().__init__()
        self.grid = tuple(grid)
        self.key_conv = conv_block(in_channels, dim, 3, norm, relu=False)
        self.convs = nn.Sequential(
            conv_block(dim, dim, 3, norm, True), conv_block(dim, dim, 3, norm, True)
        )
        self.out_conv = conv_block(dim, dim, 1, norm, relu=False)
        init_msra(self)

    def forward(self, res4: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            res4: (B, C4, H/16, W/16).
        Returns:
            key: (B, E, S_h, S_w) the key map K; cat_feat: (B, E, S_h, S_w) Cf.
        """
        key = self.key_conv(_resize_to_grid(res4, self.grid))
        cat_feat = self.out_conv(self.convs(F.relu(key)))
        return key, cat_feat


class CategoryPostBranch(nn.Module):
    """Aggregated category feature -> per-cell class logits."""

    def __init__(self, dim: int, num_classes: int, norm: str = "GN", prior_prob: float = 0.0):
        super().__init__()
        self.convs = nn.Sequential(*[conv_block(dim, dim, 3, norm, True) for _ in range(3)])
        self.pred = nn.Conv2d(dim, num_classes, kernel_size=3, padding=1)
        init_msra(self)
        if prior_prob > 0:
            nn.init.constant_(self.pred.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, cat_feat: torch.Tensor) -> torch.Tensor:
        """(B, E, S_h, S_w) -> (B, K, S_h, S_w) logits."""
        return self.pred(self.convs(cat_feat))


class KernelPreBranch(nn.Module):
    """res4 + coordinates -> grid -> mask (kernel) feature Mf stored in the memory."""

    def __init__(self, in_channels: int, dim: int, grid: Tuple[int, int], norm: str = "GN"):
        super().__init__()
        self.grid = tuple(grid)
        self.convs = nn.Sequential(
            conv_block(in_channels + 2, dim, 3, norm, True),
            conv_block(dim, dim, 3, norm, True),
            conv_block(dim, dim, 3, norm, True),
        )
        init_msra(self)

    def forward(self, res4: torch.Tensor) -> torch.Tensor:
        """(B, C4, H/16, W/16) -> (B, E, S_h, S_w)."""
        return self.convs(_resize_to_grid(add_coords(res4), self.grid))


class KernelPostBranch(nn.Module):
    """Aggregated mask feature -> one E-dim dynamic 1x1 kernel per cell."""

    def __init__(self, dim: int, norm: str = "GN"):
        super().__init__()
        self.convs = nn.Sequential(
            conv_block(dim, dim, 3, norm, True), conv_block(dim, dim, 3, norm, True)
        )
        self.pred = conv_block(dim, dim, 1, norm, relu=False)
        init_msra(self)

    def forward(self, kernel_feat: torch.Tensor) -> torch.Tensor:
        """(B, E, S_h, S_w) -> (B, E, S_h, S_w) kernels."""
        return self.pred(self.convs(kernel_feat))


class _ResBlock(nn.Module):
    """x + conv(relu(conv(relu(x)))), no normalisation (as the official mask branch)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = conv_block(dim, dim, 3, "", relu=True)
        self.conv2 = conv_block(dim, dim, 3, "", relu=False)

    def forward(self, x):
        return x + self.conv2(self.conv1(F.relu(x)))


class _Refine(nn.Module):
    """Fuse a finer backbone feature with the upsampled coarser mask feature."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.skip_conv = conv_block(in_channels, dim, 3, "", relu=False)
        self.skip_res = _ResBlock(dim)
        self.out_res = _ResBlock(dim)

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(coarse, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.out_res(self.skip_res(self.skip_conv(skip)) + up)


class MaskFeatureBranch(nn.Module):
    """res4 (+ coordinates) refined with res3 and res2 into the mask feature F_mask at 1/4."""

    def __init__(self, in_channels: Tuple[int, int, int], dim: int, norm: str = "GN"):
        """
        Args:
            in_channels: channels of (res2, res3, res4).
        """
        super().__init__()
        c2, c3, c4 = in_channels
        self.res4_conv = conv_block(c4 + 2, dim, 3, norm, relu=False)
        self.res4_block = _ResBlock(dim)
        self.refine3 = _Refine(c3, dim)
        self.refine2 = _Refine(c2, dim)
        self.out_conv = conv_block(dim, dim, 3, norm, relu=True)
        self.pred = conv_block(dim, dim, 1, norm, relu=False)
        init_msra(self)

    def forward(self, res2, res3, res4) -> torch.Tensor:
        """res2 (B, C2, H/4, W/4), res3 (B, C3, H/8, W/8), res4 (B, C4, H/16, W/16) -> (B, E, H/4, W/4)."""
        x = self.res4_block(self.res4_conv(add_coords(res4)))
        x = self.refine3(res3, x)
        x = self.refine2(res2, x)
        return self.pred(self.out_conv(F.relu(x)))
