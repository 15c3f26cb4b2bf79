"""GMP-VIS's transformer head: a Deformable-DETR decoder per frame, the global temporal aggregation
(GTA) over the instance embeddings of a clip, and the per-frame class, box, mask and node-embedding
heads.

Legend: B clips, T frames, F = B * T frames (clip-major), N queries per frame, C channels, K classes,
L levels, S keys of all levels, h, w the size of the mask features (stride 4), E embedding channels.

Query n of every frame of a clip is one instance sequence (VisTR's instance-sequence matching): the
N learned queries (content + position, as Deformable DETR splits one embedding) decode each frame's
multi-scale memory with deformable cross-attention around a reference point predicted from the query
position; the GTA layers then let the T * N embeddings of a clip attend to each other (with the
query position, so a sequence knows its own slot), and the heads read the result.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

from vis_core.layers import MSDeformAttn
from vis_core.modeling.transformer_layers import MLP, FFNLayer, SelfAttentionLayer

__all__ = ["DeformableDecoderLayer", "GMPVISDecoder", "inverse_sigmoid"]


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """log(x / (1 - x)) with x clamped to [eps, 1 - eps]."""
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class DeformableDecoderLayer(nn.Module):
    """Self-attention over the queries of a frame, deformable cross-attention to the frame's
    multi-scale memory, FFN; each with residual, dropout and post-norm (Deformable DETR)."""

    def __init__(
        self, d_model: int, nhead: int, d_ffn: int, dropout: float, n_levels: int, n_points: int
    ):
        super().__init__()
        self.self_attn = SelfAttentionLayer(d_model, nhead, dropout)
        self.cross_attn = MSDeformAttn(d_model, n_levels, nhead, n_points)
        self.cross_dropout = nn.Dropout(dropout)
        self.cross_norm = nn.LayerNorm(d_model)
        self.ffn = FFNLayer(d_model, d_ffn, dropout)

    def forward(
        self,
        tgt: Tensor,
        query_pos: Tensor,
        reference_points: Tensor,
        memory: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
    ) -> Tensor:
        """
        Args:
            tgt, query_pos: (F, N, C); reference_points: (F, N, L, 2) normalised (x, y);
            memory: (F, S, C); spatial_shapes (L, 2); level_start_index (L,).
        Returns:
            (F, N, C).
        """
        tgt = self.self_attn(tgt.transpose(0, 1), query_pos.transpose(0, 1)).transpose(0, 1)
        attn = self.cross_attn(
            tgt + query_pos, reference_points, memory, spatial_shapes, level_start_index
        )
        tgt = self.cross_norm(tgt + self.cross_dropout(attn))
        return self.ffn(tgt.transpose(0, 1)).transpose(0, 1)


class GMPVISDecoder(nn.Module):
    """Decoder, GTA and heads (see the module docstring).

    Outputs of :meth:`forward` (one dict): ``pred_logits`` (B, N, K+1) (the per-frame logits
    averaged over the clip), ``pred_frame_logits`` (B, N, T, K+1), ``pred_boxes`` (B, N, T, 4)
    normalised (cx, cy, w, h), ``pred_masks`` (B, N, T, h, w) logits, ``pred_embeds`` (B, N, E)
    node embeddings (time-averaged) and, with ``return_aux``, ``aux_outputs``: the same class, box
    and mask predictions of every earlier decoder layer (before the GTA).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        hidden_dim: int = 256,
        num_queries: int = 10,
        nheads: int = 8,
        dim_feedforward: int = 1024,
        dec_layers: int = 6,
        dec_n_points: int = 4,
        dropout: float = 0.1,
        gta_layers: int = 1,
        num_levels: int = 3,
        mask_dim: int = 256,
        embed_dim: int = 64,
    ):
        super().__init__()
        if dec_layers < 1 or gta_layers < 0:
            raise ValueError(
                f"GMPVISDecoder: DEC_LAYERS ({dec_layers}) must be >= 1 and GTA_LAYERS "
                f"({gta_layers}) >= 0"
            )
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.hidden_dim = hidden_dim
        self.num_levels = num_levels
        self.query_embed = nn.Embedding(num_queries, 2 * hidden_dim)  # position | content
        self.reference_points = nn.Linear(hidden_dim, 2)
        self.layers = nn.ModuleList(
            DeformableDecoderLayer(
                hidden_dim, nheads, dim_feedforward, dropout, num_levels, dec_n_points
            )
            for _ in range(dec_layers)
        )
        self.gta_attn = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, dropout) for _ in range(gta_layers)
        )
        self.gta_ffn = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, dropout) for _ in range(gta_layers)
        )
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.node_embed = nn.Linear(hidden_dim, embed_dim)
        nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
        nn.init.constant_(self.reference_points.bias, 0.0)
        nn.init.constant_(self.bbox_embed.layers[-1].weight, 0.0)  # start at the reference point
        nn.init.constant_(self.bbox_embed.layers[-1].bias, 0.0)
        for layer in self.layers:
            layer.cross_attn.reset_parameters()

    @staticmethod
    def flatten_memory(levels: List[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """L (F, C, H_l, W_l) maps -> memory (F, S, C), spatial_shapes (L, 2), level_start (L,)."""
        memory = torch.cat([x.flatten(2).transpose(1, 2) for x in levels], dim=1)  # (F, S, C)
        shapes = torch.as_tensor(
            [x.shape[-2:] for x in levels], dtype=torch.long, device=memory.device
        )
        start = torch.cat((shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]))
        return memory, shapes, start

    def _heads(
        self, hs: Tensor, reference: Tensor, mask_features: Tensor, B: int, T: int
    ) -> Dict[str, Tensor]:
        """(F, N, C) embeddings -> class, box and mask predictions of B clips of T frames."""
        N = hs.shape[1]
        logits = self.class_embed(hs).view(B, T, N, -1).transpose(1, 2)  # (B, N, T, K+1)
        delta = self.bbox_embed(hs)  # (F, N, 4)
        xy = (delta[..., :2] + inverse_sigmoid(reference)).sigmoid()
        boxes = torch.cat((xy, delta[..., 2:].sigmoid()), dim=-1)
        boxes = boxes.view(B, T, N, 4).transpose(1, 2)  # (B, N, T, 4)
        masks = torch.einsum("fnc,fchw->fnhw", self.mask_embed(hs), mask_features)
        masks = masks.view(B, T, N, *masks.shape[-2:]).transpose(1, 2)  # (B, N, T, h, w)
        return {
            "pred_logits": logits.mean(2),
            "pred_frame_logits": logits,
            "pred_boxes": boxes,
            "pred_masks": masks,
        }

    def aggregate(self, hs: Tensor, query_pos: Tensor, B: int, T: int) -> Tensor:
        """GTA: (F, N, C) -> (F, N, C), each clip's T * N embeddings attending to each other."""
        if not len(self.gta_attn):
            return hs
        N, C = hs.shape[1:]
        x = hs.reshape(B, T * N, C).transpose(0, 1)  # (F, N, C) -> (T*N, B, C)
        pos = query_pos.reshape(B, T * N, C).transpose(0, 1)
        for attn, ffn in zip(self.gta_attn, self.gta_ffn):
            x = ffn(attn(x, pos))
        return x.transpose(0, 1).reshape(B * T, N, C)

    def forward(
        self, levels: List[Tensor], mask_features: Tensor, num_frames: int, return_aux: bool = True
    ) -> Dict[str, object]:
        """
        Args:
            levels: L multi-scale maps (F, C, H_l, W_l), coarsest first, clip after clip.
            mask_features: (F, mask_dim, h, w).
            num_frames: T.
        Returns:
            see the class docstring.
        """
        if len(levels) != self.num_levels:
            raise ValueError(
                f"GMPVISDecoder: built for {self.num_levels} levels, got {len(levels)}"
            )
        Fr = mask_features.shape[0]
        if Fr % num_frames:
            raise ValueError(f"GMPVISDecoder: {Fr} frames do not split into clips of {num_frames}")
        B, T = Fr // num_frames, num_frames
        memory, shapes, start = self.flatten_memory(levels)
        query_pos, tgt = self.query_embed.weight.split(self.hidden_dim, dim=-1)  # (N, C) each
        query_pos = query_pos[None].expand(Fr, -1, -1)
        tgt = tgt[None].expand(Fr, -1, -1)
        reference = self.reference_points(query_pos).sigmoid()  # (F, N, 2)
        ref_levels = reference[:, :, None].expand(-1, -1, self.num_levels, -1)  # (F, N, L, 2)
        outs = []
        for layer in self.layers:
            tgt = layer(tgt, query_pos, ref_levels, memory, shapes, start)
            outs.append(tgt)
        hs = self.aggregate(outs[-1], query_pos, B, T)
        out = self._heads(hs, reference, mask_features, B, T)
        embeds = self.node_embed(hs).view(B, T, self.num_queries, -1).mean(1)  # (B, N, E)
        out["pred_embeds"] = embeds
        if return_aux:
            out["aux_outputs"] = [self._heads(h, reference, mask_features, B, T) for h in outs[:-1]]
        return out
