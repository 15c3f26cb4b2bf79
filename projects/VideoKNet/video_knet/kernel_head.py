"""K-Net's kernel head (Video K-Net's ``rpn_head``): the semantic-FPN localisation features at
stride 8, the initial kernels and their masks, under the official checkpoint's names
(lxtGH/Video-K-Net ``knet/det/semantic_fpn_wrapper.py`` ``SemanticFPNWrapper`` and
``knet_vis/det/kernel_head.py``, as the VIS config ``knet_track_r50.py`` builds them).

Legend: B frames, N kernels, C channels, K classes, H, W the stride-8 map.

``localization_fpn`` (levels P2-P5, GN(32) + ReLU after every conv, no conv bias):
P2 -> 3x3 stride-2 conv; P3 -> 3x3 conv; P4 -> conv, x2 bilinear, conv; P5 + 2-D sine position
encoding -> conv, x2, conv, x2, conv; the four stride-8 maps are summed, then ``conv_pred`` (1x1,
GN, ReLU) gives the localisation features and ``aux_convs.0`` (1x1, GN, ReLU) the semantic ones.
``loc_convs.0`` / ``seg_convs.0`` (1x1, GN, ReLU) refine each; ``init_kernels`` (a 1x1 conv with N
outputs, no bias) on the localisation features gives the initial masks; the features the stages
read are X = loc + sem; the initial kernels are ``init_kernels.weight`` plus the sum of X over each
initial mask binarised at 0.5. ``conv_seg`` (1x1, K classes) on the semantic features gives the
semantic logits that only the kernel head's semantic loss reads (``loss_rpn_seg``: every pixel of a
matched object's mask labelled with its class, the rest background).
"""

from __future__ import annotations

import math
from typing import List, Tuple

import torch
from torch import Tensor, nn

from vis_core.modeling.position_encoding import PositionEmbeddingSine

__all__ = ["ConvGNReLU", "SemanticFPNWrapper", "ConvKernelHead"]


class ConvGNReLU(nn.Module):
    """mmcv ``ConvModule`` with GN: ``conv`` (no bias) -> ``gn`` -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False
        )
        self.gn = nn.GroupNorm(32, out_channels)
        self.activate = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.gn(self.conv(x)))


class SemanticFPNWrapper(nn.Module):
    """``localization_fpn``: P2-P5 (B, C, H_l, W_l) -> (loc, sem) maps (B, C, H/8... stride 8)."""

    def __init__(self, channels: int = 256, pe_feats: int = 128):
        super().__init__()
        if channels % 32:
            raise ValueError(
                f"SemanticFPNWrapper: GN(32) needs channels divisible by 32, got {channels}"
            )
        if 2 * pe_feats != channels:
            raise ValueError(
                f"SemanticFPNWrapper: the position encoding has 2 x {pe_feats} channels, the "
                f"features {channels}"
            )
        self.positional_encoding = PositionEmbeddingSine(pe_feats, normalize=True)

        def level(*ops):
            seq = nn.Sequential()
            for i, op in enumerate(ops):
                if op == "up":
                    seq.add_module(
                        f"upsample{i // 2}",
                        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                    )
                else:
                    seq.add_module(f"conv{i // 2}", op)
            return seq

        conv = lambda stride=1: ConvGNReLU(channels, channels, 3, stride)  # noqa: E731
        self.convs_all_levels = nn.ModuleList(
            [
                level(conv(2)),  # P2: stride 4 -> 8
                level(conv()),  # P3
                level(conv(), "up", conv()),  # P4: 16 -> 8
                level(conv(), "up", conv(), "up", conv()),  # P5 (+ position encoding): 32 -> 8
            ]
        )
        self.conv_pred = ConvGNReLU(channels, channels, 1)
        self.aux_convs = nn.ModuleList([ConvGNReLU(channels, channels, 1)])
        for m in self.modules():  # the official init_weights: normal std 0.01
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)

    def forward(self, features: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """P2-P5 -> (localisation features, semantic features), each (B, C, H, W) at stride 8."""
        if len(features) != 4:
            raise ValueError(f"SemanticFPNWrapper: needs P2-P5 (4 maps), got {len(features)}")
        p5 = features[3]
        p5 = p5 + self.positional_encoding(p5).to(p5.dtype)
        summed = sum(convs(x) for convs, x in zip(self.convs_all_levels, [*features[:3], p5]))
        return self.conv_pred(summed), self.aux_convs[0](summed)


class ConvKernelHead(nn.Module):
    """``rpn_head``: initial kernels (B, N, C), their mask logits (B, N, H, W), the features X
    (B, C, H, W) the update stages read and the semantic logits (B, K, H, W)."""

    def __init__(
        self,
        num_classes: int,
        *,
        num_proposals: int = 100,
        channels: int = 256,
        kernel_init_std: float = 1.0,
        hard_mask_thr: float = 0.5,
    ):
        """
        Args:
            num_classes: K (``conv_seg``'s outputs).
            num_proposals: N kernels.
            channels: C.
            kernel_init_std: std of ``init_kernels``' normal init (1 in the VIS config).
            hard_mask_thr: initial masks are binarised at this probability for the gathering.
        """
        super().__init__()
        self.num_proposals = num_proposals
        self.hard_mask_thr = hard_mask_thr
        self.localization_fpn = SemanticFPNWrapper(channels, channels // 2)
        self.init_kernels = nn.Conv2d(channels, num_proposals, 1, bias=False)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.loc_convs = nn.ModuleList([ConvGNReLU(channels, channels, 1)])
        self.seg_convs = nn.ModuleList([ConvGNReLU(channels, channels, 1)])
        nn.init.normal_(self.init_kernels.weight, std=kernel_init_std)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.constant_(self.conv_seg.bias, -math.log((1 - 0.01) / 0.01))
        for conv in (*self.loc_convs, *self.seg_convs):  # conv_normal_init
            nn.init.normal_(conv.conv.weight, std=0.01)

    def forward(self, features: List[Tensor]) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """
        Args:
            features: FPN P2-P5 of B frames.
        Returns:
            kernels (B, N, C), mask logits (B, N, H, W) at stride 8, features X (B, C, H, W),
            semantic logits (B, K, H, W).
        """
        loc, sem = self.localization_fpn(features)
        for conv in self.loc_convs:
            loc = conv(loc)
        for conv in self.seg_convs:
            sem = conv(sem)
        masks = self.init_kernels(loc)  # (B, N, H, W)
        x = loc + sem
        hard = (masks.sigmoid() > self.hard_mask_thr).to(x.dtype)
        kernels = self.init_kernels.weight.flatten(1)[None] + torch.einsum(
            "bnhw,bchw->bnc", hard, x
        )
        return kernels, masks, x, self.conv_seg(sem)
