"""PVTv2 (Wang et al., "PVT v2: Improved Baselines with Pyramid Vision Transformer", 2022) with
optional messenger tokens: TeViT's MsgShifT backbone (Yang et al., CVPR 2022).

Legend: B clips, T frames, M messenger tokens per frame, C channels, H, W image height and width,
h, w a stage's token grid, L = h*w patch tokens.

Each of the four stages is an overlapping patch embedding (a strided conv + LayerNorm), a stack of
encoder layers (pre-norm spatial-reduction attention, then a "mix" FFN: 1x1 conv, depthwise 3x3
conv, GELU, 1x1 conv; each with a residual and stochastic depth) and a LayerNorm. The stages give
maps at strides 4, 8, 16, 32, named "res2".."res5" as detectron2's ResNet, so that detectron2's
``FPN`` wraps the backbone unchanged (``build_pvt_v2_fpn_backbone``).

Messenger tokens (``num_messenger_tokens`` M > 0): one learned set ``msg_tokens`` (1, M, 3) in the
RGB input space, given to every frame. They go through every module as tokens without a position:
each conv is reduced to the linear map it applies to a constant image (kernel summed over its
window, plus bias), the LayerNorms are shared with the patch tokens. In attention the messengers
are queries next to the patches; they are keys and values too in stages with spatial reduction
(SR ratio > 1) and are left out of the keys where the ratio is 1, as the official code does. After
every encoder layer the messengers of a clip are shifted cyclically along time: the M tokens (not
their channels: the official code chunks the token axis) are cut into ``len(shift_strides)`` equal
groups of whole tokens, group g rolled by ``shift_strides[g]`` frames (frame t receives frame t - s)
in even layers of a stage and by ``-shift_strides[g]`` in odd layers; the last layer of a stage with
an odd number of layers does not shift. This is the only place where frames
of a clip meet: with M = 0 the backbone is the plain per-image PVTv2.

Parameter names are the mmdet ones (``layers.{s}.0`` patch embed, ``layers.{s}.1.{l}`` encoder
layers with ``attn.attn`` a fused-q/k/v ``nn.MultiheadAttention``, ``ffn.layers.{0,1,4}``,
``layers.{s}.2`` stage norm), so that the official TeViT and mmdet PVTv2 checkpoints load by name;
``pvt_v2_imagenet_to_ours`` renames the original PVTv2 ImageNet release (whai362/PVT).
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from typing import Dict, Iterator, List, Mapping, MutableMapping, Optional, Sequence, Tuple

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone
from torch import Tensor, nn

__all__ = [
    "PVTv2",
    "build_pvt_v2_backbone",
    "build_pvt_v2_fpn_backbone",
    "frames_per_clip",
    "is_pvt_v2_imagenet_state_dict",
    "pvt_v2_imagenet_to_ours",
    "rename_pvt_v2_imagenet",
    "shift_messengers",
]


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth: zero whole samples (first axis) with probability ``p``, scale the others.

    Args:
        x: (N, ...) a residual branch's output.
    """
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


def _conv_as_linear(tokens: Tensor, conv: nn.Conv2d) -> Tensor:
    """What ``conv`` does to a constant input: its kernel summed over the window, plus its bias.

    Args:
        tokens: (N, M, C_in); a depthwise conv (groups = C_in = C_out) scales each channel.
    Returns:
        (N, M, C_out).
    """
    weight = conv.weight.sum((-1, -2))  # (C_out, C_in / groups)
    if conv.groups == 1:
        out = torch.einsum("nmc,oc->nmo", tokens, weight)
    elif conv.groups == conv.in_channels == conv.out_channels:
        out = tokens * weight[:, 0]
    else:
        raise ValueError(f"_conv_as_linear: grouped conv with groups={conv.groups} not supported")
    return out if conv.bias is None else out + conv.bias


def shift_messengers(msg: Tensor, num_frames: int, strides: Sequence[int]) -> Tensor:
    """Roll groups of messenger tokens cyclically along time.

    Args:
        msg: (B*T, M, C) messenger tokens, clip-major (the T frames of clip 0 first).
        num_frames: T.
        strides: one roll per group of tokens; the M tokens are cut as ``torch.chunk`` cuts them
            (tokens 0..M/G-1 form group 0, ..., G = len(strides)). Token m of frame t in group g
            receives token m of frame (t - strides[g]) mod T, all C channels.
    Returns:
        (B*T, M, C).
    """
    if msg.shape[0] % num_frames != 0:
        raise ValueError(
            f"shift_messengers: {msg.shape[0]} images are not a whole number of clips of "
            f"{num_frames} frames"
        )
    clips = msg.reshape(-1, num_frames, *msg.shape[1:])  # (B*T, M, C) -> (B, T, M, C)
    groups = clips.chunk(len(strides), dim=2)
    rolled = [torch.roll(g, s, dims=1) for g, s in zip(groups, strides)]
    return torch.cat(rolled, dim=2).flatten(0, 1)  # (B, T, M, C) -> (B*T, M, C)


class OverlapPatchEmbed(nn.Module):
    """Strided conv with padding k // 2 (overlapping patches), then LayerNorm over channels."""

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int, stride: int, eps: float):
        super().__init__()
        self.projection = nn.Conv2d(
            in_channels, embed_dim, patch_size, stride=stride, padding=patch_size // 2
        )
        self.norm = nn.LayerNorm(embed_dim, eps=eps)

    def forward(
        self, x: Tensor, msg: Optional[Tensor]
    ) -> Tuple[Tensor, Tuple[int, int], Optional[Tensor]]:
        """
        Args:
            x: (N, C_in, H_in, W_in) images (N = B*T) or the previous stage's maps.
            msg: (N, M, C_in) messenger tokens, or None.
        Returns:
            (N, L, C) patch tokens, (h, w) with L = h*w, (N, M, C) messenger tokens or None.
        """
        x = self.projection(x)
        hw = (x.shape[2], x.shape[3])
        x = self.norm(x.flatten(2).transpose(1, 2))  # (N, C, h, w) -> (N, L, C)
        if msg is not None:
            msg = self.norm(_conv_as_linear(msg, self.projection))
        return x, hw, msg


class SpatialReductionAttention(nn.Module):
    """Multi-head attention whose keys and values are the token grid reduced by a strided conv
    (kernel = stride = ``sr_ratio``) and a LayerNorm; no reduction where ``sr_ratio`` is 1."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        sr_ratio: int,
        qkv_bias: bool,
        attn_drop: float,
        proj_drop: float,
        eps: float,
    ):
        super().__init__()
        self.attn = nn.MultiheadAttention(
            embed_dim, num_heads, dropout=attn_drop, bias=qkv_bias, batch_first=True
        )
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(embed_dim, embed_dim, sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(embed_dim, eps=eps)

    def forward(self, x: Tensor, hw: Tuple[int, int], msg: Optional[Tensor]) -> Tensor:
        """
        Args:
            x: (N, L, C) normalised patch tokens; msg: (N, M, C) normalised messengers or None.
        Returns:
            (N, L + M, C) the attention output of [patches; messengers] (no residual).
        """
        queries = x if msg is None else torch.cat([x, msg], dim=1)
        if self.sr_ratio > 1:
            grid = x.transpose(1, 2).unflatten(2, hw)  # (N, L, C) -> (N, C, h, w)
            kv = self.sr(grid).flatten(2).transpose(1, 2)  # (N, L / sr^2, C)
            if msg is not None:
                kv = torch.cat([kv, _conv_as_linear(msg, self.sr)], dim=1)
            kv = self.norm(kv)
        else:
            kv = x  # the official MsgShifT: messengers are no keys where nothing is reduced
        out = self.attn(queries, kv, kv, need_weights=False)[0]
        return self.proj_drop(out)


class MixFFN(nn.Module):
    """1x1 conv, depthwise 3x3 conv, GELU, dropout, 1x1 conv, dropout (``layers`` 0..5)."""

    def __init__(self, embed_dim: int, hidden_dim: int, drop: float):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(embed_dim, hidden_dim, 1),
            nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, groups=hidden_dim),
            nn.GELU(),
            nn.Dropout(drop),
            nn.Conv2d(hidden_dim, embed_dim, 1),
            nn.Dropout(drop),
        )

    def forward(self, x: Tensor, hw: Tuple[int, int], msg: Optional[Tensor]) -> Tensor:
        """
        Args:
            x: (N, L, C) normalised patch tokens; msg: (N, M, C) normalised messengers or None.
        Returns:
            (N, L + M, C) the FFN output of [patches; messengers] (no residual).
        """
        grid = x.transpose(1, 2).unflatten(2, hw)  # (N, L, C) -> (N, C, h, w)
        out = self.layers(grid).flatten(2).transpose(1, 2)  # (N, C, h, w) -> (N, L, C)
        if msg is None:
            return out
        fc1, dwconv, act, drop1, fc2, drop2 = self.layers
        m = act(_conv_as_linear(_conv_as_linear(msg, fc1), dwconv))
        m = drop2(_conv_as_linear(drop1(m), fc2))
        return torch.cat([out, m], dim=1)


class PVTv2EncoderLayer(nn.Module):
    """Pre-norm encoder layer: x + drop_path(SRA(norm1(x))), then x + drop_path(MixFFN(norm2(x))),
    on patches and messengers together (one drop-path draw per image for both)."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        mlp_ratio: float,
        sr_ratio: int,
        qkv_bias: bool,
        drop: float,
        attn_drop: float,
        drop_path: float,
        eps: float,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim, eps=eps)
        self.attn = SpatialReductionAttention(
            embed_dim, num_heads, sr_ratio, qkv_bias, attn_drop, drop, eps
        )
        self.norm2 = nn.LayerNorm(embed_dim, eps=eps)
        self.ffn = MixFFN(embed_dim, int(embed_dim * mlp_ratio), drop)
        self.drop_path = drop_path

    def _residual(
        self,
        branch: nn.Module,
        norm: nn.LayerNorm,
        x: Tensor,
        hw: Tuple[int, int],
        msg: Optional[Tensor],
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """[x; msg] + drop_path(branch(norm(x), norm(msg))), split back into (N, L, C), (N, M, C)."""
        tokens = x if msg is None else torch.cat([x, msg], dim=1)  # (N, L + M, C)
        out = tokens + drop_path(
            branch(norm(x), hw, None if msg is None else norm(msg)), self.drop_path, self.training
        )
        if msg is None:
            return out, None
        return out[:, : x.shape[1]], out[:, x.shape[1] :]

    def forward(
        self, x: Tensor, hw: Tuple[int, int], msg: Optional[Tensor]
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """
        Args:
            x: (N, L, C) patch tokens; msg: (N, M, C) messengers or None.
        Returns:
            (N, L, C), (N, M, C) or None.
        """
        x, msg = self._residual(self.attn, self.norm1, x, hw, msg)
        return self._residual(self.ffn, self.norm2, x, hw, msg)


class PVTv2Stage(nn.ModuleList):
    """[patch embed, encoder layers, LayerNorm]: a list, so that its parameters are named
    ``{0,1,2}.*`` as mmdet's."""

    @property
    def patch_embed(self) -> OverlapPatchEmbed:
        return self[0]

    @property
    def blocks(self) -> nn.ModuleList:
        return self[1]

    @property
    def norm(self) -> nn.LayerNorm:
        return self[2]


def _per_stage(name: str, values: Sequence, num_stages: int) -> List:
    values = list(values)
    if len(values) != num_stages:
        raise ValueError(
            f"PVTv2: {name} has {len(values)} entries {values}, expected one per stage "
            f"({num_stages}, as embed_dims)"
        )
    return values


class PVTv2(Backbone):
    """PVTv2 with optional messenger tokens (MsgShifT); defaults = PVTv2-B1.

    Input (N, 3, H, W) with N = B*T images laid out clip-major; with messengers, the frames per
    clip T come from ``num_frames`` (set by :func:`frames_per_clip` around the call). Output
    ``{"res2": (N, C_0, H/4, W/4), ..., "res5": (N, C_3, H/32, W/32)}`` (sizes rounded up).
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        depths: Sequence[int] = (2, 2, 2, 2),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        patch_sizes: Sequence[int] = (7, 3, 3, 3),
        strides: Sequence[int] = (4, 2, 2, 2),
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_eps: float = 1e-6,
        num_messenger_tokens: int = 0,
        shift_strides: Sequence[int] = (1, -1, 2, -2),
        out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
    ):
        """
        Args:
            embed_dims, num_heads, depths, sr_ratios, mlp_ratios, patch_sizes, strides: one entry
                per stage (channels C_s, attention heads, encoder layers, spatial-reduction ratio,
                FFN hidden / C_s, patch-embed kernel and stride; padding is kernel // 2).
            drop_path_rate: stochastic depth of the last layer; layer i of n gets rate * i / (n-1).
            norm_eps: epsilon of every LayerNorm.
            num_messenger_tokens: M messenger tokens per frame; 0 = plain PVTv2.
            shift_strides: the roll (frames) of each group of messenger tokens in even layers
                (M / len(shift_strides) tokens a group); odd layers roll by the negated strides.
            out_features: a subset of "res2".."res{num_stages+1}".
        """
        super().__init__()
        num_stages = len(embed_dims)
        embed_dims = [int(c) for c in embed_dims]
        num_heads = _per_stage("num_heads", num_heads, num_stages)
        depths = _per_stage("depths", depths, num_stages)
        sr_ratios = _per_stage("sr_ratios", sr_ratios, num_stages)
        mlp_ratios = _per_stage("mlp_ratios", mlp_ratios, num_stages)
        patch_sizes = _per_stage("patch_sizes", patch_sizes, num_stages)
        strides = _per_stage("strides", strides, num_stages)
        for c, h in zip(embed_dims, num_heads):
            if c % h != 0:
                raise ValueError(f"PVTv2: embed dim {c} is not divisible by its {h} heads")
        if num_messenger_tokens < 0:
            raise ValueError(
                f"PVTv2: num_messenger_tokens must be >= 0, got {num_messenger_tokens}"
            )
        self.num_messenger_tokens = int(num_messenger_tokens)
        self.shift_strides = [int(s) for s in shift_strides]
        if self.num_messenger_tokens and not self.shift_strides:
            raise ValueError("PVTv2: messenger tokens need at least one shift stride")
        if self.num_messenger_tokens % max(len(self.shift_strides), 1) != 0:
            raise ValueError(
                f"PVTv2: {self.num_messenger_tokens} messenger tokens cannot be cut into "
                f"{len(self.shift_strides)} equal groups for the shift {self.shift_strides}"
            )
        names = [f"res{i + 2}" for i in range(num_stages)]
        unknown = [f for f in out_features if f not in names]
        if unknown or not out_features:
            raise ValueError(
                f"PVTv2: out_features {list(out_features)} must be a subset of {names}"
            )
        self._out_features = [f for f in names if f in out_features]
        self.num_frames: Optional[int] = None

        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        self._out_feature_strides, self._out_feature_channels = {}, {}
        channels, stride, first = in_channels, 1, 0
        for s in range(num_stages):
            patch_embed = OverlapPatchEmbed(
                channels, embed_dims[s], patch_sizes[s], strides[s], norm_eps
            )
            blocks = nn.ModuleList(
                PVTv2EncoderLayer(
                    embed_dims[s],
                    num_heads[s],
                    mlp_ratios[s],
                    sr_ratios[s],
                    qkv_bias,
                    drop_rate,
                    attn_drop_rate,
                    rates[first + i],
                    norm_eps,
                )
                for i in range(depths[s])
            )
            norm = nn.LayerNorm(embed_dims[s], eps=norm_eps)
            self.layers.append(PVTv2Stage([patch_embed, blocks, norm]))
            channels, stride, first = embed_dims[s], stride * strides[s], first + depths[s]
            self._out_feature_strides[names[s]] = stride
            self._out_feature_channels[names[s]] = channels
        if self.num_messenger_tokens:
            self.msg_tokens = nn.Parameter(torch.zeros(1, self.num_messenger_tokens, in_channels))
        self._init_weights()

    def _init_weights(self) -> None:
        """The official initialisation from scratch (a checkpoint normally replaces it)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(m.bias)
        if self.num_messenger_tokens:
            nn.init.trunc_normal_(self.msg_tokens, std=0.02)

    def layer_shifts(self, stage: int) -> List[Optional[List[int]]]:
        """The messenger roll after each encoder layer of ``stage`` (None: no shift)."""
        depth = len(self.layers[stage].blocks)
        shifts = [
            list(self.shift_strides) if i % 2 == 0 else [-s for s in self.shift_strides]
            for i in range(depth)
        ]
        if depth % 2 == 1:
            shifts[-1] = None
        return shifts

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """
        Args:
            x: (B*T, C_in, H, W) normalised images, clip-major.
        Returns:
            {"res{s+2}": (B*T, C_s, h_s, w_s)} for the stages in ``out_features``.
        """
        if x.dim() != 4:
            raise ValueError(f"PVTv2 takes (B*T, C, H, W) images, got shape {tuple(x.shape)}")
        msg = None
        if self.num_messenger_tokens:
            num_frames = self.num_frames
            if num_frames is None:
                raise ValueError(
                    "PVTv2 with messenger tokens needs the frames per clip: call it inside "
                    "`with frames_per_clip(model, T):` (vis_core.modeling.backbone)"
                )
            if num_frames < 1 or x.shape[0] % num_frames != 0:
                raise ValueError(
                    f"PVTv2: a batch of {x.shape[0]} images is not a whole number of clips of "
                    f"{num_frames} frames (images must be laid out clip-major, B*T)"
                )
            msg = self.msg_tokens.expand(x.shape[0], -1, -1)  # (1, M, 3) -> (B*T, M, 3)
        outputs = {}
        for s, stage in enumerate(self.layers):
            x, hw, msg = stage.patch_embed(x, msg)
            for block, shift in zip(stage.blocks, self.layer_shifts(s)):
                x, msg = block(x, hw, msg)
                if msg is not None and shift is not None:
                    msg = shift_messengers(msg, num_frames, shift)
            x = stage.norm(x)
            if msg is not None:
                msg = stage.norm(msg)
            x = x.transpose(1, 2).unflatten(2, hw).contiguous()  # (N, L, C) -> (N, C, h, w)
            name = f"res{s + 2}"
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }


@contextmanager
def frames_per_clip(model: nn.Module, num_frames: int) -> Iterator[None]:
    """Within the block, every PVTv2 inside ``model`` (the backbone itself, or an FPN around it)
    reads its (B*T, 3, H, W) batch as clips of ``num_frames`` frames; restored on exit.

    Example: ``with frames_per_clip(self.backbone, T): features = self.backbone(images)``.
    """
    if int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"frames_per_clip: num_frames must be a positive int, got {num_frames!r}")
    backbones = [m for m in model.modules() if isinstance(m, PVTv2)]
    previous = [m.num_frames for m in backbones]
    for m in backbones:
        m.num_frames = int(num_frames)
    try:
        yield
    finally:
        for m, value in zip(backbones, previous):
            m.num_frames = value


def _pvt_v2_kwargs(cfg) -> dict:
    p = cfg.MODEL.PVT_V2
    return dict(
        embed_dims=p.EMBED_DIMS,
        num_heads=p.NUM_HEADS,
        depths=p.DEPTHS,
        sr_ratios=p.SR_RATIOS,
        mlp_ratios=p.MLP_RATIOS,
        patch_sizes=p.PATCH_SIZES,
        strides=p.STRIDES,
        qkv_bias=p.QKV_BIAS,
        drop_rate=p.DROP_RATE,
        attn_drop_rate=p.ATTN_DROP_RATE,
        drop_path_rate=p.DROP_PATH_RATE,
        norm_eps=p.NORM_EPS,
        num_messenger_tokens=p.NUM_MESSENGER_TOKENS,
        shift_strides=p.SHIFT_STRIDES,
        out_features=p.OUT_FEATURES,
    )


@BACKBONE_REGISTRY.register()
def build_pvt_v2_backbone(cfg, input_shape: ShapeSpec) -> PVTv2:
    """PVTv2 (with messengers where MODEL.PVT_V2.NUM_MESSENGER_TOKENS > 0) from MODEL.PVT_V2.*."""
    return PVTv2(in_channels=input_shape.channels, **_pvt_v2_kwargs(cfg))


@BACKBONE_REGISTRY.register()
def build_pvt_v2_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """PVTv2 + detectron2's FPN on MODEL.FPN.IN_FEATURES, without extra levels (top_block None):
    mmdet's FPN with ``num_outs`` = the number of inputs, "p2".."p5" for TeViT."""
    bottom_up = build_pvt_v2_backbone(cfg, input_shape)
    in_features = list(cfg.MODEL.FPN.IN_FEATURES)
    if not in_features or any(f not in bottom_up.output_shape() for f in in_features):
        raise ValueError(
            f"build_pvt_v2_fpn_backbone: MODEL.FPN.IN_FEATURES {in_features} must be a non-empty "
            f"list of MODEL.PVT_V2.OUT_FEATURES {list(bottom_up.output_shape())}, e.g. "
            '["res2", "res3", "res4", "res5"]'
        )
    return FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=None,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


# ---- the original PVTv2 ImageNet release (whai362/PVT, classification/pvt_v2.py) ----
_IMAGENET_PATTERNS = [
    (re.compile(r"patch_embed(\d)\.proj\.(weight|bias)$"), "layers.{s}.0.projection.{1}"),
    (re.compile(r"patch_embed(\d)\.norm\.(weight|bias)$"), "layers.{s}.0.norm.{1}"),
    (re.compile(r"norm(\d)\.(weight|bias)$"), "layers.{s}.2.{1}"),
    (re.compile(r"block(\d)\.(\d+)\.(norm1|norm2)\.(weight|bias)$"), "layers.{s}.1.{1}.{2}.{3}"),
    (
        re.compile(r"block(\d)\.(\d+)\.attn\.proj\.(weight|bias)$"),
        "layers.{s}.1.{1}.attn.attn.out_proj.{2}",
    ),
    (
        re.compile(r"block(\d)\.(\d+)\.attn\.(sr|norm)\.(weight|bias)$"),
        "layers.{s}.1.{1}.attn.{2}.{3}",
    ),
    (
        re.compile(r"block(\d)\.(\d+)\.mlp\.fc1\.(weight|bias)$"),
        "layers.{s}.1.{1}.ffn.layers.0.{2}",
    ),
    (
        re.compile(r"block(\d)\.(\d+)\.mlp\.dwconv\.dwconv\.(weight|bias)$"),
        "layers.{s}.1.{1}.ffn.layers.1.{2}",
    ),
    (
        re.compile(r"block(\d)\.(\d+)\.mlp\.fc2\.(weight|bias)$"),
        "layers.{s}.1.{1}.ffn.layers.4.{2}",
    ),
]
_IMAGENET_QKV = re.compile(r"block(\d)\.(\d+)\.attn\.(q|kv)\.(weight|bias)$")


def is_pvt_v2_imagenet_state_dict(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether the keys are the original PVTv2 release's (``patch_embed1.proj.weight``, ...)."""
    return "patch_embed1.proj.weight" in state_dict


def pvt_v2_imagenet_to_ours(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Rename an original PVTv2 ImageNet state dict (whai362/PVT) to :class:`PVTv2`'s names.

    ``block{s}.{l}.attn.q`` + ``kv`` become the fused ``attn.attn.in_proj_*`` (rows q, k, v);
    ``mlp.fc1``/``fc2`` (Linear) become 1x1 convs; the classifier ``head.*`` is dropped.

    Raises:
        ValueError: a key that PVTv2 has no place for (e.g. the "linear" PVTv2-li variants), or a
            ``q`` without its ``kv``.
    """
    out: Dict[str, Tensor] = {}
    qkv: Dict[Tuple[str, str, str], Dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        if key.startswith("head."):
            continue
        match = _IMAGENET_QKV.match(key)
        if match:
            s, layer, part, kind = match.groups()
            qkv.setdefault((s, layer, kind), {})[part] = value
            continue
        for pattern, template in _IMAGENET_PATTERNS:
            match = pattern.match(key)
            if match:
                groups = match.groups()
                name = template.format(*groups, s=int(groups[0]) - 1)
                if ".ffn.layers.0." in name or ".ffn.layers.4." in name:
                    if name.endswith("weight") and value.dim() == 2:
                        value = value[:, :, None, None]  # Linear (out, in) -> 1x1 conv
                out[name] = value
                break
        else:
            raise ValueError(f"PVTv2 ImageNet weights: no counterpart for {key!r} in PVTv2")
    for (s, layer, kind), parts in qkv.items():
        if set(parts) != {"q", "kv"}:
            raise ValueError(
                f"PVTv2 ImageNet weights: block{s}.{layer}.attn has {sorted(parts)}, needs q and kv"
            )
        name = f"layers.{int(s) - 1}.1.{layer}.attn.attn.in_proj_{kind}"
        out[name] = torch.cat([parts["q"], parts["kv"]], dim=0)
    return out


def rename_pvt_v2_imagenet(
    state_dict: MutableMapping, prefix: str = "", bottom_up: str = "backbone.bottom_up."
) -> int:
    """In place: the original ImageNet keys under ``prefix`` (a whole ``pvt_v2_b*.pth`` given as
    MODEL.WEIGHTS) become ``{prefix}{bottom_up}<PVTv2 name>`` (:func:`pvt_v2_imagenet_to_ours`);
    returns how many tensors the model gets. For a meta-architecture's ``_load_from_state_dict``
    whose backbone is an FPN around :class:`PVTv2` (``bottom_up``)."""
    keys = [k for k in state_dict if k.startswith(prefix)]
    original = {k[len(prefix) :]: state_dict.pop(k) for k in keys}
    converted = pvt_v2_imagenet_to_ours(original)
    state_dict.update({prefix + bottom_up + k: v for k, v in converted.items()})
    return len(converted)
