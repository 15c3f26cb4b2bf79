"""Query-based instance heads of Sparse R-CNN / QueryInst, with the query interaction made temporal.

Legend: B clips, T frames, F = B * T frames of a batch (clip-major: frame t of clip b is b * T + t),
N queries (proposals), C channels, K classes, S the RoI size, R RoIs.

The pieces keep mmdet's attribute names, so that official TeViT (and, later, EfficientVIS-style)
checkpoints load key for key:

* :class:`EmbeddingRPNHead` - N learned proposal boxes (normalised cx, cy, w, h, initialised to the
  whole image) and N learned proposal features; the same set for every frame.
* :class:`DynamicConv` - Sparse R-CNN's dynamic instance interaction: each query generates two
  matrices that act on its RoI features. :meth:`DynamicConv.interact` stops before ``fc_layer`` so
  that a temporal variant (EfficientVIS' TDC) can combine the per-frame outputs first.
* :func:`query_interaction` - multi-head self-attention among queries, residual, then LayerNorm:
  "spatial" (the N queries of each frame; QueryInst), "stqi" (TeViT: the same module and norm over
  the N queries of each frame, then over the T frames of each query), "fused" (one attention over
  all T * N queries of a clip; TeViT Table 5), "temporal" (over the T frames of each query only),
  "ftsa" (separate modules: over the T frames of each query, then over the N queries of each frame;
  EfficientVIS).
* :class:`DIIHead` - one stage: interaction, dynamic conv on the RoI features, FFN, class and box
  branches (``cls_fcs``, ``reg_fcs``, ``fc_cls``, ``fc_reg``); a subclass may replace
  :meth:`DIIHead.dynamic_interaction` (EfficientVIS' temporal dynamic convolution).
* :class:`ResidualAttention`, :class:`FFN`, :func:`fc_branch` - mmcv's residual multi-head
  attention, two-layer FFN and (Linear, LN, ReLU) branches under their checkpoint names (also
  K-Net's kernel update heads).
* :class:`DynamicMaskHead` - RoIAlign features (S = 14) modulated by a dynamic conv without the
  projection, 4 x (conv 3x3, BN, ReLU), deconv 2x2 stride 2 + ReLU, per-class 1x1 logits (2S x 2S).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

__all__ = [
    "EmbeddingRPNHead",
    "ResidualAttention",
    "FFN",
    "fc_branch",
    "xavier_init",
    "DynamicConv",
    "query_interaction",
    "DIIHead",
    "DynamicMaskHead",
    "INTERACTION_MODES",
]

INTERACTION_MODES = ("spatial", "stqi", "fused", "temporal", "ftsa")


def xavier_init(module: nn.Module) -> None:
    """mmdet's init of these heads: Xavier-uniform for every parameter with more than one dim."""
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class EmbeddingRPNHead(nn.Module):
    """Learned proposals: ``init_proposal_bboxes`` (N, 4) normalised (cx, cy, w, h) and
    ``init_proposal_features`` (N, C)."""

    def __init__(self, num_proposals: int = 100, proposal_feature_channel: int = 256):
        super().__init__()
        if num_proposals < 1 or proposal_feature_channel < 1:
            raise ValueError(
                f"EmbeddingRPNHead: num_proposals ({num_proposals}) and proposal_feature_channel "
                f"({proposal_feature_channel}) must be >= 1"
            )
        self.num_proposals = num_proposals
        self.init_proposal_bboxes = nn.Embedding(num_proposals, 4)
        self.init_proposal_features = nn.Embedding(num_proposals, proposal_feature_channel)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every box covers the whole image: (0.5, 0.5, 1, 1); features stay N(0, 1)."""
        with torch.no_grad():
            self.init_proposal_bboxes.weight[:, :2].fill_(0.5)
            self.init_proposal_bboxes.weight[:, 2:].fill_(1.0)

    def forward(self, image_whwh: Tensor) -> Tuple[Tensor, Tensor]:
        """
        Args:
            image_whwh: (F, 4) each frame's (W, H, W, H) of the resized, unpadded input.
        Returns:
            boxes (F, N, 4) absolute (x1, y1, x2, y2) and features (F, N, C).
        """
        if image_whwh.dim() != 2 or image_whwh.shape[1] != 4:
            raise ValueError(
                f"EmbeddingRPNHead: image_whwh must be (F, 4), got {tuple(image_whwh.shape)}"
            )
        cxcy, wh = self.init_proposal_bboxes.weight.split(2, dim=-1)
        xyxy = torch.cat([cxcy - 0.5 * wh, cxcy + 0.5 * wh], dim=-1)  # (N, 4) normalised
        boxes = xyxy[None] * image_whwh[:, None].to(xyxy)  # (F, N, 4)
        feats = self.init_proposal_features.weight[None].expand(image_whwh.shape[0], -1, -1)
        return boxes, feats


class DynamicConv(nn.Module):
    """Dynamic instance interaction: per query, ``dynamic_layer`` makes W_in (C_in x C_f) and W_out
    (C_f x C_out); RoI features (S*S, C_in) @ W_in -> LN -> ReLU -> @ W_out -> LN -> ReLU, then,
    with ``with_proj``, flatten -> ``fc_layer`` -> ``fc_norm`` -> ReLU."""

    def __init__(
        self,
        in_channels: int = 256,
        feat_channels: int = 64,
        out_channels: int = 256,
        input_feat_shape: int = 7,
        with_proj: bool = True,
    ):
        """
        Args:
            in_channels: C_in of the queries and RoI features.
            feat_channels: C_f, inner channels of the two dynamic matrices.
            out_channels: C_out.
            input_feat_shape: S, side of the RoI features (7 boxes, 14 masks).
            with_proj: keep ``fc_layer`` + ``fc_norm`` (box stages) or return the (S*S, C_out) map
                (mask head).
        """
        super().__init__()
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.out_channels = out_channels
        self.input_feat_shape = input_feat_shape
        self.with_proj = with_proj
        self.num_params_in = in_channels * feat_channels
        self.num_params_out = out_channels * feat_channels
        self.dynamic_layer = nn.Linear(in_channels, self.num_params_in + self.num_params_out)
        self.norm_in = nn.LayerNorm(feat_channels)
        self.norm_out = nn.LayerNorm(out_channels)
        self.activation = nn.ReLU(inplace=True)
        if with_proj:
            self.fc_layer = nn.Linear(out_channels * input_feat_shape**2, out_channels)
            self.fc_norm = nn.LayerNorm(out_channels)

    def interact(self, param_feature: Tensor, input_feature: Tensor) -> Tensor:
        """The two dynamic matrix products, before ``fc_layer``.

        Args:
            param_feature: (R, C_in) one query per RoI.
            input_feature: (R, C_in, S, S) RoI features.
        Returns:
            (R, S*S, C_out), positions in row-major (y, x) order.
        """
        R = param_feature.shape[0]
        S = self.input_feat_shape
        if param_feature.shape != (R, self.in_channels) or input_feature.shape != (
            R,
            self.in_channels,
            S,
            S,
        ):
            raise ValueError(
                f"DynamicConv: param_feature {tuple(param_feature.shape)} and input_feature "
                f"{tuple(input_feature.shape)} must be (R, {self.in_channels}) and "
                f"(R, {self.in_channels}, {S}, {S})"
            )
        feats = input_feature.flatten(2).transpose(1, 2)  # (R, C_in, S, S) -> (R, S*S, C_in)
        params = self.dynamic_layer(param_feature)  # (R, C_in*C_f + C_f*C_out)
        param_in = params[:, : self.num_params_in].view(R, self.in_channels, self.feat_channels)
        param_out = params[:, -self.num_params_out :].view(R, self.feat_channels, self.out_channels)
        feats = self.activation(self.norm_in(torch.bmm(feats, param_in)))  # (R, S*S, C_f)
        return self.activation(self.norm_out(torch.bmm(feats, param_out)))  # (R, S*S, C_out)

    def project(self, features: Tensor) -> Tensor:
        """(R, S*S, C_out) -> (R, C_out) through ``fc_layer``, ``fc_norm``, ReLU."""
        if not self.with_proj:
            raise RuntimeError("DynamicConv.project: built with with_proj=False (no fc_layer)")
        return self.activation(self.fc_norm(self.fc_layer(features.flatten(1))))

    def forward(self, param_feature: Tensor, input_feature: Tensor) -> Tensor:
        """(R, C_out) with ``with_proj``, else (R, S*S, C_out); see :meth:`interact`."""
        features = self.interact(param_feature, input_feature)
        return self.project(features) if self.with_proj else features


class ResidualAttention(nn.Module):
    """x + MHSA(x) (mmcv ``MultiheadAttention`` adds the identity itself); ``attn`` holds the
    fused ``in_proj_weight`` (3C, C) and ``out_proj`` of the checkpoints."""

    def __init__(self, embed_dims: int, num_heads: int, attn_drop: float = 0.0):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f"attention: {embed_dims} channels not divisible by {num_heads} heads")
        self.attn = nn.MultiheadAttention(
            embed_dims, num_heads, dropout=attn_drop, batch_first=True
        )

    def forward(self, x: Tensor) -> Tensor:
        """(batch, L, C) -> (batch, L, C), attention along L."""
        return x + self.attn(x, x, x, need_weights=False)[0]


def _over_time(x: Tensor, num_frames: int, attention: nn.Module, norm: nn.Module) -> Tensor:
    """norm(attention) over the T frames of each query: (F, N, C) -> (F, N, C)."""
    F_, N, C = x.shape
    B = F_ // num_frames
    x = x.view(B, num_frames, N, C).transpose(1, 2).reshape(B * N, num_frames, C)
    x = norm(attention(x))  # (B*N, T, C)
    return x.view(B, N, num_frames, C).transpose(1, 2).reshape(F_, N, C)


def query_interaction(
    x: Tensor,
    num_frames: int,
    mode: str,
    attention: nn.Module,
    norm: nn.Module,
    temporal_attention: Optional[nn.Module] = None,
    temporal_norm: Optional[nn.Module] = None,
) -> Tensor:
    """Self-attention among the queries of each clip, residual, then LayerNorm.

    Args:
        x: (F, N, C) queries, F = B * T clip-major.
        num_frames: T.
        mode: "spatial" (over the N queries of each frame), "stqi" (``attention``/``norm`` over
            the N queries of each frame, then the same modules over the T frames of each query),
            "fused" (over the T * N queries of each clip), "temporal" (``attention``/``norm`` over
            the T frames of each query only) or "ftsa" (``temporal_attention`` /
            ``temporal_norm`` over the T frames, then ``attention``/``norm`` over the N queries).
        attention, norm: residual attention ((batch, L, C) -> same) and its LayerNorm.
        temporal_attention, temporal_norm: the separate temporal modules of "ftsa".
    Returns:
        (F, N, C).
    """
    if mode not in INTERACTION_MODES:
        raise ValueError(f"query interaction mode must be one of {INTERACTION_MODES}, got {mode!r}")
    if x.dim() != 3 or num_frames < 1 or x.shape[0] % num_frames:
        raise ValueError(
            f"query interaction: queries {tuple(x.shape)} are not (B*T, N, C) with T={num_frames}"
        )
    if mode == "ftsa":
        if temporal_attention is None or temporal_norm is None:
            raise ValueError("query interaction 'ftsa' needs temporal_attention and temporal_norm")
        x = _over_time(x, num_frames, temporal_attention, temporal_norm)
    if mode == "temporal":
        return _over_time(x, num_frames, attention, norm)
    if mode == "fused":
        F_, N, C = x.shape
        x = norm(attention(x.reshape(F_ // num_frames, num_frames * N, C)))  # (B, T*N, C)
        return x.view(F_, N, C)
    x = norm(attention(x))  # over the N queries of each frame
    if mode == "stqi":
        x = _over_time(x, num_frames, attention, norm)
    return x


class FFN(nn.Module):
    """mmcv ``FFN`` with two fcs: x + fc2(drop(ReLU(fc1(x)))); names ``layers.0.0``, ``layers.1``."""

    def __init__(self, embed_dims: int, feedforward_channels: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(
                nn.Linear(embed_dims, feedforward_channels),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
            ),
            nn.Linear(feedforward_channels, embed_dims),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)


def fc_branch(channels: int, num_fcs: int) -> nn.ModuleList:
    """num_fcs x (Linear without bias, LayerNorm, ReLU), flat as mmdet lists them."""
    layers = nn.ModuleList()
    for _ in range(num_fcs):
        layers.append(nn.Linear(channels, channels, bias=False))
        layers.append(nn.LayerNorm(channels))
        layers.append(nn.ReLU(inplace=True))
    return layers


class DIIHead(nn.Module):
    """One stage of the query head (mmdet ``DIIHead`` / TeViT ``STQIHead``)."""

    def __init__(
        self,
        num_classes: int,
        *,
        in_channels: int = 256,
        num_heads: int = 8,
        feedforward_channels: int = 2048,
        num_cls_fcs: int = 1,
        num_reg_fcs: int = 3,
        dynamic_feat_channels: int = 64,
        roi_feat_size: int = 7,
        dropout: float = 0.0,
        interaction: str = "stqi",
        prior_prob: float = 0.01,
    ):
        """
        Args:
            num_classes: K sigmoid classes (no background logit).
            in_channels: C of queries and RoI features.
            num_heads: attention heads of the query interaction.
            feedforward_channels: hidden width of the FFN.
            num_cls_fcs, num_reg_fcs: (Linear, LN, ReLU) blocks of the class / box branches.
            dynamic_feat_channels: C_f of the dynamic conv.
            roi_feat_size: S of the RoI features.
            dropout: of attention, dynamic conv output and FFN (0 in TeViT).
            interaction: one of :data:`INTERACTION_MODES` (:func:`query_interaction`); "ftsa"
                adds ``temporal_attention`` and ``temporal_attention_norm``.
            prior_prob: initial foreground probability of ``fc_cls`` (focal loss prior).
        """
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"DIIHead: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        if interaction not in INTERACTION_MODES:
            raise ValueError(
                f"DIIHead: interaction must be one of {INTERACTION_MODES}, got {interaction!r}"
            )
        self.interaction = interaction
        self.attention = ResidualAttention(in_channels, num_heads, dropout)
        self.attention_norm = nn.LayerNorm(in_channels)
        if interaction == "ftsa":
            self.temporal_attention = ResidualAttention(in_channels, num_heads, dropout)
            self.temporal_attention_norm = nn.LayerNorm(in_channels)
        self.instance_interactive_conv = DynamicConv(
            in_channels, dynamic_feat_channels, in_channels, roi_feat_size, with_proj=True
        )
        self.instance_interactive_conv_dropout = nn.Dropout(dropout)
        self.instance_interactive_conv_norm = nn.LayerNorm(in_channels)
        self.ffn = FFN(in_channels, feedforward_channels, dropout)
        self.ffn_norm = nn.LayerNorm(in_channels)
        self.cls_fcs = fc_branch(in_channels, num_cls_fcs)
        self.fc_cls = nn.Linear(in_channels, num_classes)
        self.reg_fcs = fc_branch(in_channels, num_reg_fcs)
        self.fc_reg = nn.Linear(in_channels, 4)
        xavier_init(self)
        nn.init.constant_(self.fc_cls.bias, -math.log((1 - prior_prob) / prior_prob))

    def interact(self, proposal_feat: Tensor, num_frames: int) -> Tensor:
        """The query interaction of this stage: (F, N, C) -> (F, N, C)."""
        return query_interaction(
            proposal_feat,
            num_frames,
            self.interaction,
            self.attention,
            self.attention_norm,
            getattr(self, "temporal_attention", None),
            getattr(self, "temporal_attention_norm", None),
        )

    def dynamic_interaction(self, queries: Tensor, roi_feat: Tensor, num_frames: int) -> Tensor:
        """Sparse R-CNN's per-frame dynamic conv: (F, N, C) queries after the interaction and
        (F*N, C, S, S) their RoI features -> (F*N, C)."""
        return self.instance_interactive_conv(queries.flatten(0, 1), roi_feat)

    def forward(
        self, roi_feat: Tensor, proposal_feat: Tensor, num_frames: int
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """
        Args:
            roi_feat: (F*N, C, S, S) RoI features, query-major within each frame.
            proposal_feat: (F, N, C) queries from the previous stage.
            num_frames: T (F = B * T, clip-major).
        Returns:
            cls_score (F, N, K) logits, bbox_delta (F, N, 4), obj_feat (F, N, C) for the next
            stage, attn_feats (F, N, C) after the interaction (drives the mask head).
        """
        F_, N, C = proposal_feat.shape
        if roi_feat.shape[0] != F_ * N:
            raise ValueError(
                f"DIIHead: {roi_feat.shape[0]} RoI features for {F_} frames x {N} queries"
            )
        attn_feats = self.interact(proposal_feat, num_frames)  # (F, N, C)
        feats = attn_feats.reshape(F_ * N, C)
        dyn = self.dynamic_interaction(attn_feats, roi_feat, num_frames)  # (F*N, C)
        obj = self.instance_interactive_conv_norm(
            feats + self.instance_interactive_conv_dropout(dyn)
        )
        obj = self.ffn_norm(self.ffn(obj))  # (F*N, C)
        cls_feat, reg_feat = obj, obj
        for layer in self.cls_fcs:
            cls_feat = layer(cls_feat)
        for layer in self.reg_fcs:
            reg_feat = layer(reg_feat)
        cls_score = self.fc_cls(cls_feat).view(F_, N, self.num_classes)
        bbox_delta = self.fc_reg(reg_feat).view(F_, N, 4)
        return cls_score, bbox_delta, obj.view(F_, N, C), attn_feats


class _ConvBNReLU(nn.Module):
    """mmcv ``ConvModule`` with BN: ``conv`` (no bias) -> ``bn`` -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.bn(self.conv(x)))


class DynamicMaskHead(nn.Module):
    """QueryInst's dynamic mask head: per-class (2S x 2S) mask logits of each RoI."""

    def __init__(
        self,
        num_classes: int,
        *,
        in_channels: int = 256,
        conv_out_channels: int = 256,
        num_convs: int = 4,
        conv_kernel_size: int = 3,
        roi_feat_size: int = 14,
        dynamic_feat_channels: int = 64,
    ):
        """
        Args:
            num_classes: K mask channels (one per class).
            in_channels: C of queries and RoI features.
            conv_out_channels: channels of the convs and the deconv.
            num_convs: conv 3x3 + BN + ReLU blocks.
            conv_kernel_size: their kernel.
            roi_feat_size: S of the RoI features (output 2S).
            dynamic_feat_channels: C_f of the dynamic conv.
        """
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"DynamicMaskHead: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.roi_feat_size = roi_feat_size
        self.instance_interactive_conv = DynamicConv(
            in_channels, dynamic_feat_channels, in_channels, roi_feat_size, with_proj=False
        )
        channels = [in_channels] + [conv_out_channels] * num_convs
        self.convs = nn.ModuleList(
            _ConvBNReLU(channels[i], channels[i + 1], conv_kernel_size) for i in range(num_convs)
        )
        self.upsample = nn.ConvTranspose2d(channels[-1], conv_out_channels, 2, stride=2)
        self.relu = nn.ReLU(inplace=True)
        self.conv_logits = nn.Conv2d(conv_out_channels, num_classes, 1)
        xavier_init(self)
        nn.init.constant_(self.conv_logits.bias, 0.0)

    def forward(self, roi_feat: Tensor, proposal_feat: Tensor) -> Tensor:
        """
        Args:
            roi_feat: (R, C, S, S) RoI features.
            proposal_feat: (R, C) the interaction output (``attn_feats``) of each RoI's query.
        Returns:
            (R, K, 2S, 2S) mask logits.
        """
        R, C, S, _ = roi_feat.shape
        x = self.instance_interactive_conv(proposal_feat.reshape(R, C), roi_feat)  # (R, S*S, C)
        x = x.transpose(1, 2).reshape(R, C, S, S)
        for conv in self.convs:
            x = conv(x)
        x = self.relu(self.upsample(x))  # (R, C, 2S, 2S)
        return self.conv_logits(x)
