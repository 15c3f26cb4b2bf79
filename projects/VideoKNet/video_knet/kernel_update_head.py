"""K-Net's kernel update head (one per-frame refinement stage of Video K-Net), under the official
checkpoint's names (``roi_head.mask_head.{s}.*``; lxtGH/Video-K-Net ``knet_vis/det/kernel_update_head.py``
``KernelUpdateHead`` and ``knet/kernel_updator.py`` ``KernelUpdator``, as the VIS config
``knet_track_r50.py`` builds them: 1x1 kernels, 256 channels, LayerNorm, ReLU).

Legend: B frames, N kernels, C channels, K classes, H, W the feature map (stride 8), h, w the
previous masks.

One stage: the previous masks, resized to the features and binarised (sigmoid > 0.5), gather each
kernel's group feature from ``feat_transform(x)``; the gated ``kernel_update_conv`` merges it into
the kernel; MHSA over the N kernels (residual) + LN; FFN (residual) + LN; the class branch reads the
kernel, the mask branch turns it into a new 1x1 kernel that is convolved with ``feat_transform(x)``.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vis_core.modeling.query_inst import FFN, ResidualAttention, fc_branch, xavier_init

__all__ = ["KernelUpdator", "KernelUpdateHead"]


class KernelUpdator(nn.Module):
    """K-Net's gated kernel update: each kernel and its group feature make two gates that mix the
    two (``dynamic_layer``, ``input_layer``, ``input_gate``, ``update_gate``, LNs ``norm_in``,
    ``norm_out``, ``input_norm_in``, ``input_norm_out``, then ``fc_layer``, ``fc_norm``, ReLU)."""

    def __init__(self, in_channels: int = 256, feat_channels: int = 256, out_channels: int = 256):
        super().__init__()
        if feat_channels != in_channels:
            raise ValueError(
                f"KernelUpdator: the official layers need feat_channels == in_channels, got "
                f"{feat_channels} and {in_channels}"
            )
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.dynamic_layer = nn.Linear(in_channels, 2 * feat_channels)
        self.input_layer = nn.Linear(in_channels, 2 * feat_channels)
        self.input_gate = nn.Linear(in_channels, feat_channels)
        self.update_gate = nn.Linear(in_channels, feat_channels)
        self.norm_in = nn.LayerNorm(feat_channels)
        self.norm_out = nn.LayerNorm(feat_channels)
        self.input_norm_in = nn.LayerNorm(feat_channels)
        self.input_norm_out = nn.LayerNorm(feat_channels)
        self.activation = nn.ReLU(inplace=True)
        self.fc_layer = nn.Linear(feat_channels, out_channels)
        self.fc_norm = nn.LayerNorm(out_channels)

    def forward(self, update_feature: Tensor, input_feature: Tensor) -> Tensor:
        """
        Args:
            update_feature: (R, C) the group feature gathered by each kernel's mask.
            input_feature: (R, C) the kernels.
        Returns:
            (R, C_out) the updated kernels.
        """
        C = self.feat_channels
        param_in, param_out = self.dynamic_layer(update_feature).split(C, dim=-1)
        input_in, input_out = self.input_layer(input_feature).split(C, dim=-1)
        gate = input_in * param_in
        input_gate = self.input_norm_in(self.input_gate(gate)).sigmoid()
        update_gate = self.norm_in(self.update_gate(gate)).sigmoid()
        features = update_gate * self.norm_out(param_out) + input_gate * self.input_norm_out(
            input_out
        )
        return self.activation(self.fc_norm(self.fc_layer(features)))


class KernelUpdateHead(nn.Module):
    """One K-Net refinement stage (1x1 kernels)."""

    def __init__(
        self,
        num_classes: int,
        *,
        in_channels: int = 256,
        num_heads: int = 8,
        feedforward_channels: int = 2048,
        num_cls_fcs: int = 1,
        num_mask_fcs: int = 1,
        dropout: float = 0.0,
        hard_mask_thr: float = 0.5,
        with_cls: bool = True,
        prior_prob: float = 0.01,
    ):
        """
        Args:
            num_classes: K sigmoid classes.
            in_channels: C of features and kernels.
            num_heads: heads of the MHSA over the kernels.
            feedforward_channels: hidden width of the FFN.
            num_cls_fcs, num_mask_fcs: (Linear, LN, ReLU) blocks of the class / mask branches.
            dropout: of the attention and the FFN (0 officially).
            hard_mask_thr: the previous masks' probability threshold for the gathering.
            with_cls: build the class branch (the tracker's last stage has none).
            prior_prob: initial foreground probability of ``fc_cls``.
        """
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"KernelUpdateHead: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.hard_mask_thr = hard_mask_thr
        self.attention = ResidualAttention(in_channels, num_heads, dropout)
        self.attention_norm = nn.LayerNorm(in_channels)
        self.kernel_update_conv = KernelUpdator(in_channels, in_channels, in_channels)
        self.feat_transform = (
            nn.Module()
        )  # mmcv ConvModule without norm/act: ``feat_transform.conv``
        self.feat_transform.conv = nn.Conv2d(in_channels, in_channels, 1)
        self.ffn = FFN(in_channels, feedforward_channels, dropout)
        self.ffn_norm = nn.LayerNorm(in_channels)
        self.with_cls = with_cls
        if with_cls:
            self.cls_fcs = fc_branch(in_channels, num_cls_fcs)
            self.fc_cls = nn.Linear(in_channels, num_classes)
        self.mask_fcs = fc_branch(in_channels, num_mask_fcs)
        self.fc_mask = nn.Linear(in_channels, in_channels)
        self.reset_parameters(prior_prob)

    def reset_parameters(self, prior_prob: float = 0.01) -> None:
        """The official ``init_weights``: Xavier-uniform for every parameter with more than one dim
        (mmcv ConvModule's own Kaiming init of ``feat_transform`` is overwritten by it too), the
        focal prior on ``fc_cls``'s bias."""
        xavier_init(self)
        if self.with_cls:
            nn.init.constant_(self.fc_cls.bias, -math.log((1 - prior_prob) / prior_prob))

    def transform(self, x: Tensor) -> Tensor:
        """``feat_transform``: (B, C, H, W) -> (B, C, H, W)."""
        return self.feat_transform.conv(x)

    def gather(self, x: Tensor, mask_logits: Tensor) -> Tensor:
        """Each kernel's group feature: the sum of ``x`` over its binarised mask.

        Args:
            x: (B, C, H, W) transformed features.
            mask_logits: (B, N, h, w) the previous stage's masks (bilinearly resized to H x W).
        Returns:
            (B, N, C).
        """
        H, W = x.shape[-2:]
        if mask_logits.shape[-2:] != (H, W):
            mask_logits = F.interpolate(mask_logits, (H, W), mode="bilinear", align_corners=False)
        hard = (mask_logits.sigmoid() > self.hard_mask_thr).to(x.dtype)
        return torch.einsum("bnhw,bchw->bnc", hard, x)

    def update(self, group_feat: Tensor, kernels: Tensor) -> Tensor:
        """Gated update, MHSA over the N kernels, FFN: (B, N, C), (B, N, C) -> (B, N, C)."""
        B, N, C = kernels.shape
        obj = self.kernel_update_conv(group_feat.reshape(B * N, C), kernels.reshape(B * N, C))
        obj = self.attention_norm(self.attention(obj.view(B, N, C)))
        return self.ffn_norm(self.ffn(obj))

    def classify(self, kernels: Tensor) -> Tensor:
        """(..., N, C) kernels -> (..., N, K) class logits."""
        if not self.with_cls:
            raise RuntimeError("KernelUpdateHead: built without a class branch (with_cls=False)")
        cls_feat = kernels
        for layer in self.cls_fcs:
            cls_feat = layer(cls_feat)
        return self.fc_cls(cls_feat)

    def mask_kernels(self, kernels: Tensor) -> Tensor:
        """(..., N, C) kernels -> (..., N, C) the 1x1 conv kernels of their masks."""
        mask_feat = kernels
        for layer in self.mask_fcs:
            mask_feat = layer(mask_feat)
        return self.fc_mask(mask_feat)

    def forward(
        self, x: Tensor, kernels: Tensor, mask_logits: Tensor
    ) -> Tuple[Optional[Tensor], Tensor, Tensor]:
        """One per-frame stage (``roi_head.mask_head.{s}``).

        Args:
            x: (B, C, H, W) the kernel head's features (stride 8).
            kernels: (B, N, C) the previous stage's kernels.
            mask_logits: (B, N, h, w) the previous stage's mask logits.
        Returns:
            cls (B, N, K) logits (None without a class branch), mask logits (B, N, H, W),
            kernels (B, N, C).
        """
        self._check(kernels, 3)
        x = self.transform(x)
        kernels = self.update(self.gather(x, mask_logits), kernels)
        cls = self.classify(kernels) if self.with_cls else None
        masks = torch.einsum("bnc,bchw->bnhw", self.mask_kernels(kernels), x)
        return cls, masks, kernels

    def forward_clip(
        self, x: Tensor, kernels: Tensor, mask_logits: Tensor
    ) -> Tuple[Optional[Tensor], Tensor, Tensor]:
        """One tracker stage (``tracker.mask_head.{s}``, official ``KernelUpdateHeadVideo``) on the
        T frames of each clip.

        Args:
            x: (B, T, C, H, W) the kernel head's features of every frame.
            kernels: (B, N, C), one kernel per object for the whole clip (stages 0-1: each kernel's
                group features are gathered frame by frame and averaged over the frames; one update;
                the new kernel segments every frame), or (B, T, N, C), one per frame (the last
                stage: updated frame by frame, MHSA within each frame, no class).
            mask_logits: (B, T, N, h, w) the previous stage's masks.
        Returns:
            cls (B, N, K) logits (None for per-frame kernels), mask logits (B, T, N, H, W), kernels
            of the same shape as given.
        """
        B, T, C, H, W = x.shape
        x = self.transform(x.flatten(0, 1))  # (B*T, C, H, W)
        gathered = self.gather(x, mask_logits.flatten(0, 1))  # (B*T, N, C)
        x = x.view(B, T, C, H, W)
        if kernels.dim() == 3:
            self._check(kernels, 3)
            N = kernels.shape[1]
            kernels = self.update(gathered.view(B, T, N, C).mean(1), kernels)  # (B, N, C)
            cls = self.classify(kernels) if self.with_cls else None
            masks = torch.einsum("bnc,btchw->btnhw", self.mask_kernels(kernels), x)
            return cls, masks, kernels
        self._check(kernels, 4)
        N = kernels.shape[2]
        kernels = self.update(gathered, kernels.flatten(0, 1)).view(B, T, N, C)
        masks = torch.einsum("btnc,btchw->btnhw", self.mask_kernels(kernels), x)
        return None, masks, kernels

    def _check(self, kernels: Tensor, dims: int) -> None:
        if kernels.dim() != dims or kernels.shape[-1] != self.in_channels:
            shape = "(B, N, C)" if dims == 3 else "(B, T, N, C)"
            raise ValueError(
                f"KernelUpdateHead: kernels must be {shape} with C={self.in_channels}, got "
                f"{tuple(kernels.shape)}"
            )
