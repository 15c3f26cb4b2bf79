"""VISOLO's memory matching (grid similarity), temporal aggregation and score-reweighting weights.

Legend: B images, E channels, M memory frames, S_h x S_w the grid, G = S_h * S_w cells.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .heads import conv_block, init_msra

__all__ = ["MemoryMatching", "TemporalAggregation", "reweighting_weights"]


class MemoryMatching(nn.Module):
    """Grid similarity Sim between key maps: query embeddings of one frame, reference embeddings of another.

    A shared stem (ReLU, 2x conv) feeds a query head (for the frame being processed) and a separate
    reference head (for memory frames); Sim(g, g') = <q_g, r_g'> is a raw inner product (a logit).
    """

    def __init__(self, dim: int, track_dim: int, norm: str = "GN"):
        super().__init__()
        self.stem = nn.Sequential(
            conv_block(dim, dim, 3, norm, True), conv_block(dim, dim, 3, norm, True)
        )
        self.query_head = nn.Sequential(
            conv_block(dim, dim, 3, norm, False), conv_block(dim, track_dim, 1, norm, False)
        )
        self.ref_head = nn.Sequential(
            conv_block(dim, dim, 3, norm, False), conv_block(dim, track_dim, 1, norm, False)
        )
        init_msra(self)

    def embed_query(self, key: torch.Tensor) -> torch.Tensor:
        """(B, E, S_h, S_w) key map -> (B, G, D) query embeddings."""
        return self.query_head(self.stem(F.relu(key))).flatten(2).transpose(1, 2)

    def embed_reference(self, key: torch.Tensor) -> torch.Tensor:
        """(B, E, S_h, S_w) key map -> (B, D, G) reference embeddings."""
        return self.ref_head(self.stem(F.relu(key))).flatten(2)

    def embed(self, key: torch.Tensor):
        """Both embeddings of a key map (the stem runs once): (B, G, D) query and (B, D, G) reference."""
        x = self.stem(F.relu(key))
        return self.query_head(x).flatten(2).transpose(1, 2), self.ref_head(x).flatten(2)

    @staticmethod
    def similarity(query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """(B, G, D) x (B, D, G') -> (B, G, G') logits."""
        return torch.bmm(query, reference)

    def forward(self, query_key: torch.Tensor, ref_key: torch.Tensor) -> torch.Tensor:
        """Sim between a query frame's and a reference frame's key maps, (B, E, S_h, S_w) each -> (B, G, G)."""
        return self.similarity(self.embed_query(query_key), self.embed_reference(ref_key))


class TemporalAggregation(nn.Module):
    """F'_t = F_t + sum over memory cells of softmax(Sim) * conv(F_mem).

    The softmax runs jointly over all M * G memory cells. One conv serves both the category and the
    mask (kernel) features, as in the official code.
    """

    def __init__(self, dim: int, norm: str = "GN"):
        super().__init__()
        self.conv = conv_block(dim, dim, 3, norm, relu=False)
        init_msra(self)

    def transform(self, mem_feat: torch.Tensor) -> torch.Tensor:
        """The conv applied to memory features, (B, M, E, S_h, S_w) -> the same shape.

        Each frame is transformed on its own (GN normalises per frame), so streaming inference stores a
        frame's transformed features once, when it enters the memory, instead of recomputing them for
        every later frame.
        """
        b, m, e, sh, sw = mem_feat.shape
        return self.conv(mem_feat.reshape(b * m, e, sh, sw)).reshape(b, m, e, sh, sw)

    def read(self, sim: torch.Tensor, feat: torch.Tensor, mem_value: torch.Tensor) -> torch.Tensor:
        """F_t + softmax(Sim) * value, with the memory's already transformed features.

        Args:
            sim: (B, G, M*G) similarity logits of the current cells to the memory cells, memory frame-major.
            feat: (B, E, S_h, S_w) the current frame's feature.
            mem_value: (B, M, E, S_h, S_w) :meth:`transform` of the memory frames' features.
        Returns:
            (B, E, S_h, S_w).
        """
        b, m, e, sh, sw = mem_value.shape
        if sim.shape != (b, sh * sw, m * sh * sw):
            raise ValueError(
                f"TemporalAggregation: sim has shape {tuple(sim.shape)}, expected {(b, sh * sw, m * sh * sw)}"
            )
        value = mem_value.reshape(b, m, e, sh * sw).permute(0, 1, 3, 2)  # (B, M, G, E)
        read = torch.bmm(F.softmax(sim, dim=2), value.reshape(b, m * sh * sw, e))  # (B, G, E)
        return feat + read.transpose(1, 2).reshape(b, e, sh, sw)

    def forward(
        self, sim: torch.Tensor, feat: torch.Tensor, mem_feat: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`read` of the :meth:`transform` of ``mem_feat`` (B, M, E, S_h, S_w)."""
        return self.read(sim, feat, self.transform(mem_feat))


def reweighting_weights(sims: list) -> torch.Tensor:
    """Score-reweighting weights AVG(Sim~_1, Sim~_2), Sim~(g) = max_g' sigmoid(Sim(g, g')).

    Args:
        sims: list of (B, G, G') similarity logits of the current frame (query) to reference frames.
    Returns:
        (B, G) weights in [0, 1].
    """
    if not sims:
        raise ValueError("reweighting_weights: needs at least one similarity map")
    return torch.stack([s.sigmoid().amax(dim=2) for s in sims]).mean(dim=0)
