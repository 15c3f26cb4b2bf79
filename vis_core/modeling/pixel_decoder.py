"""The multi-scale deformable-attention pixel decoder of Mask2Former, applied frame by frame
(Mask2Former-VIS; GMP-VIS reads its encoder memory as the Deformable-DETR encoder).

Legend: N images (clips x frames), C channels (``conv_dim``), L transformer levels, S keys of all
levels flattened, H, W heights and widths.

Module names follow the official implementation (``input_proj``, ``transformer.level_embed``,
``transformer.encoder.layers.*``, ``mask_features``, ``adapter_<i>``, ``layer_<i>``) so official
checkpoints load under ``sem_seg_head.pixel_decoder.`` without renaming.
"""

from __future__ import annotations

import logging
import math
from typing import Dict, List, Tuple

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import Tensor, nn

from vis_core.layers import MSDeformAttn
from vis_core.modeling.position_encoding import PositionEmbeddingSine

__all__ = [
    "MSDeformAttnPixelDecoder",
    "MSDeformAttnEncoder",
    "MSDeformAttnEncoderLayer",
    "build_pixel_decoder",
]

logger = logging.getLogger(__name__)


class MSDeformAttnEncoderLayer(nn.Module):
    """Deformable self-attention over all levels, then an FFN; post-norm, as Deformable DETR."""

    def __init__(
        self,
        d_model: int = 256,
        d_ffn: int = 1024,
        dropout: float = 0.0,
        n_levels: int = 3,
        n_heads: int = 8,
        n_points: int = 4,
        impl: str = "auto",
    ):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points, impl=impl)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: Tensor,
        pos: Tensor,
        reference_points: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
    ) -> Tensor:
        """
        Args:
            src: (N, S, C) features of all levels; pos: (N, S, C) their position + level codes.
            reference_points: (N, S, L, 2) normalised (x, y) of each key, per level.
            spatial_shapes: (L, 2) (H, W) per level; level_start_index: (L,).
        Returns:
            (N, S, C).
        """
        attn = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index)
        src = self.norm1(src + self.dropout1(attn))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class MSDeformAttnEncoder(nn.Module):
    """A stack of :class:`MSDeformAttnEncoderLayer` with a learned embedding per level."""

    def __init__(
        self,
        d_model: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        num_feature_levels: int = 3,
        enc_n_points: int = 4,
        impl: str = "auto",
    ):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(
            MSDeformAttnEncoderLayer(
                d_model, dim_feedforward, dropout, num_feature_levels, nhead, enc_n_points, impl
            )
            for _ in range(num_encoder_layers)
        )
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    @staticmethod
    def reference_points(spatial_shapes: List[Tuple[int, int]], device) -> Tensor:
        """(S, 2) normalised (x, y) centres of every key of every level."""
        points = []
        for h, w in spatial_shapes:
            ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
            xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            points.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=-1))
        return torch.cat(points, dim=0)

    def forward(
        self, srcs: List[Tensor], pos_embeds: List[Tensor]
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """
        Args:
            srcs: L tensors (N, C, H_l, W_l), coarsest first; pos_embeds: their (N, C, H_l, W_l) codes.
        Returns:
            memory (N, S, C), spatial_shapes (L, 2) long, level_start_index (L,) long.
        """
        shapes = [(s.shape[2], s.shape[3]) for s in srcs]
        src_flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], dim=1)  # (N, S, C)
        pos_flat = torch.cat(
            [
                p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
                for lvl, p in enumerate(pos_embeds)
            ],
            dim=1,
        )  # (N, S, C)
        device = src_flat.device
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=device)
        level_start_index = torch.cat(
            (spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1])
        )
        ref = self.reference_points(shapes, device)  # (S, 2)
        ref = ref[None, :, None, :].expand(src_flat.shape[0], -1, len(shapes), 2)  # (N, S, L, 2)
        out = src_flat
        for layer in self.encoder.layers:
            out = layer(out, pos_flat, ref, spatial_shapes, level_start_index)
        return out, spatial_shapes, level_start_index


class MSDeformAttnPixelDecoder(nn.Module):
    """Deformable-attention encoder on the coarse levels, FPN-style top-down fusion down to
    ``common_stride``, and a 1x1 conv giving the per-pixel mask features.

    Every image (frame) is processed independently: no temporal mixing here.
    """

    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        transformer_in_features: List[str],
        conv_dim: int = 256,
        mask_dim: int = 256,
        norm: str = "GN",
        transformer_dropout: float = 0.0,
        transformer_nheads: int = 8,
        transformer_dim_feedforward: int = 1024,
        transformer_enc_layers: int = 6,
        transformer_n_points: int = 4,
        common_stride: int = 4,
        num_output_levels: int = 3,
        deform_attn_impl: str = "auto",
    ):
        """
        Args:
            input_shape: backbone features used (e.g. res2..res5) with channels and strides.
            transformer_in_features: the subset the deformable encoder reads (e.g. res3..res5).
            conv_dim: channels C of the encoder and FPN convs.
            mask_dim: channels of the mask features.
            norm: normalisation of the FPN convs ("GN", "" for none, any detectron2 norm name).
            transformer_*: encoder dropout, heads, FFN width, layers and sampling points.
            common_stride: stride of the mask features (4).
            num_output_levels: how many multi-scale outputs (coarsest first) feed the decoder.
            deform_attn_impl: "auto", "cuda" or "pytorch" (see ``vis_core.layers.ms_deform_attn``).
        """
        super().__init__()
        missing = [f for f in transformer_in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"MSDeformAttnPixelDecoder: transformer_in_features {missing} are not among the "
                f"input features {sorted(input_shape)}"
            )
        shapes = sorted(input_shape.items(), key=lambda kv: kv[1].stride)  # finest first
        self.in_features = [k for k, _ in shapes]
        self.transformer_in_features = [k for k, _ in shapes if k in transformer_in_features]
        t_channels = [input_shape[k].channels for k in self.transformer_in_features]
        t_strides = [input_shape[k].stride for k in self.transformer_in_features]
        self.transformer_num_feature_levels = len(self.transformer_in_features)

        # coarsest first (res5 -> res3)
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim))
            for c in t_channels[::-1]
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)

        self.transformer = MSDeformAttnEncoder(
            d_model=conv_dim,
            nhead=transformer_nheads,
            num_encoder_layers=transformer_enc_layers,
            dim_feedforward=transformer_dim_feedforward,
            dropout=transformer_dropout,
            num_feature_levels=self.transformer_num_feature_levels,
            enc_n_points=transformer_n_points,
            impl=deform_attn_impl,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)

        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=1)
        weight_init.c2_xavier_fill(self.mask_features)

        self.num_output_levels = num_output_levels
        self.common_stride = common_stride
        self.num_fpn_levels = int(math.log2(min(t_strides)) - math.log2(common_stride))
        if self.num_fpn_levels < 0:
            raise ValueError(
                f"MSDeformAttnPixelDecoder: common_stride={common_stride} is coarser than the finest "
                f"transformer feature (stride {min(t_strides)})"
            )
        use_bias = norm == ""
        lateral, output = [], []
        for idx, name in enumerate(self.in_features[: self.num_fpn_levels]):
            lateral_conv = Conv2d(
                input_shape[name].channels,
                conv_dim,
                kernel_size=1,
                bias=use_bias,
                norm=get_norm(norm, conv_dim),
            )
            output_conv = Conv2d(
                conv_dim,
                conv_dim,
                kernel_size=3,
                padding=1,
                bias=use_bias,
                norm=get_norm(norm, conv_dim),
                activation=F.relu,
            )
            weight_init.c2_xavier_fill(lateral_conv)
            weight_init.c2_xavier_fill(output_conv)
            # official names: adapter_1 / layer_1 belong to the finest level
            self.add_module(f"adapter_{idx + 1}", lateral_conv)
            self.add_module(f"layer_{idx + 1}", output_conv)
            lateral.append(f"adapter_{idx + 1}")
            output.append(f"layer_{idx + 1}")
        # top-down order (coarse to fine)
        self._lateral_names = lateral[::-1]
        self._output_names = output[::-1]

    def forward_features(self, features: Dict[str, Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """
        Args:
            features: backbone outputs, name -> (N, C_in, H_name, W_name).
        Returns:
            mask_features (N, mask_dim, H/common_stride, W/common_stride) and the multi-scale
            features: ``num_output_levels`` tensors (N, C, H_l, W_l), coarsest first.
        """
        device_type = next(iter(features.values())).device.type
        # deformable attention runs in float32 (the compiled op has no half kernels)
        with torch.autocast(device_type=device_type, enabled=False):
            srcs, pos = [], []
            for idx, name in enumerate(self.transformer_in_features[::-1]):
                x = features[name].float()
                srcs.append(self.input_proj[idx](x))
                pos.append(self.pe_layer(x))
            memory, spatial_shapes, _ = self.transformer(srcs, pos)
            N = memory.shape[0]
            sizes = [int(h) * int(w) for h, w in spatial_shapes.tolist()]
            outs = [
                z.transpose(1, 2).reshape(N, -1, int(h), int(w))  # (N, S_l, C) -> (N, C, H_l, W_l)
                for z, (h, w) in zip(memory.split(sizes, dim=1), spatial_shapes.tolist())
            ]
            for idx, name in enumerate(self.in_features[: self.num_fpn_levels][::-1]):
                lateral = getattr(self, self._lateral_names[idx])(features[name].float())
                top_down = F.interpolate(
                    outs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False
                )
                outs.append(getattr(self, self._output_names[idx])(lateral + top_down))
            return self.mask_features(outs[-1]), outs[: self.num_output_levels]


def build_pixel_decoder(
    pd, input_shape: Dict[str, ShapeSpec], key: str, num_output_levels: int = 3
) -> MSDeformAttnPixelDecoder:
    """The pixel decoder of a config node made by ``vis_core.config.add_pixel_decoder_config``.

    Args:
        pd: the ``PIXEL_DECODER`` node.
        input_shape: the backbone's output shapes.
        key: the node's full name, for error messages (e.g. "MODEL.MASK2FORMER_VIS.PIXEL_DECODER").
        num_output_levels: multi-scale outputs returned, coarsest first.
    """
    unknown = [f for f in pd.IN_FEATURES if f not in input_shape]
    if unknown:
        raise ValueError(
            f"{key}.IN_FEATURES names {unknown}, which the backbone does not output (it has "
            f"{sorted(input_shape)}); set MODEL.RESNETS.OUT_FEATURES"
        )
    return MSDeformAttnPixelDecoder(
        {k: input_shape[k] for k in pd.IN_FEATURES},
        transformer_in_features=list(pd.TRANSFORMER_IN_FEATURES),
        conv_dim=pd.CONVS_DIM,
        mask_dim=pd.MASK_DIM,
        norm=pd.NORM,
        transformer_dropout=pd.DROPOUT,
        transformer_nheads=pd.ENC_NHEADS,
        transformer_dim_feedforward=pd.ENC_DIM_FEEDFORWARD,
        transformer_enc_layers=pd.ENC_LAYERS,
        transformer_n_points=pd.ENC_N_POINTS,
        common_stride=pd.COMMON_STRIDE,
        num_output_levels=num_output_levels,
        deform_attn_impl=pd.DEFORM_ATTN_IMPL,
    )
