"""Transformer building blocks of the query decoders (Mask2Former-VIS's decoder, GMP-VIS's
deformable decoder): self- and cross-attention layers and an FFN, each with residual, dropout and
LayerNorm (post-norm, or pre-norm with ``normalize_before``), and an MLP head.

Legend: Q queries, B batch, S memory length, C channels. Module names follow Mask2Former's official
code (``self_attn``, ``multihead_attn``, ``linear1``/``linear2``, ``norm``, ``layers.<i>``), so its
checkpoints load without renaming.
"""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CrossAttentionLayer", "SelfAttentionLayer", "FFNLayer", "MLP"]


def _xavier_(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class SelfAttentionLayer(nn.Module):
    """Self-attention among the queries, residual and LayerNorm (post- or pre-norm)."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before=False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_(self)

    def forward(self, tgt: Tensor, query_pos: Optional[Tensor] = None) -> Tensor:
        """tgt, query_pos: (Q, B, C) -> (Q, B, C)."""
        x = self.norm(tgt) if self.normalize_before else tgt
        q = k = x if query_pos is None else x + query_pos
        tgt = tgt + self.dropout(self.self_attn(q, k, value=x)[0])
        return tgt if self.normalize_before else self.norm(tgt)


class CrossAttentionLayer(nn.Module):
    """Queries attend to a memory sequence under an optional attention mask."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before=False):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_(self)

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_mask: Optional[Tensor] = None,
        pos: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
    ) -> Tensor:
        """
        Args:
            tgt: (Q, B, C) queries; memory: (S, B, C); pos: (S, B, C) its position code;
            memory_mask: (B * heads, Q, S) bool, True where attention is forbidden.
        Returns:
            (Q, B, C).
        """
        x = self.norm(tgt) if self.normalize_before else tgt
        out = self.multihead_attn(
            query=x if query_pos is None else x + query_pos,
            key=memory if pos is None else memory + pos,
            value=memory,
            attn_mask=memory_mask,
        )[0]
        tgt = tgt + self.dropout(out)
        return tgt if self.normalize_before else self.norm(tgt)


class FFNLayer(nn.Module):
    """Two linear layers with ReLU, residual and LayerNorm."""

    def __init__(
        self, d_model: int, dim_feedforward: int = 2048, dropout=0.0, normalize_before=False
    ):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        _xavier_(self)

    def forward(self, tgt: Tensor) -> Tensor:
        """(Q, B, C) -> (Q, B, C)."""
        x = self.norm(tgt) if self.normalize_before else tgt
        tgt = tgt + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x)))))
        return tgt if self.normalize_before else self.norm(tgt)


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x
