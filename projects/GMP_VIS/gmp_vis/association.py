"""GMP-VIS's association: the instances of the current clip and the active tracks form two graphs,
matched by the Koopmans-Beckmann QAP (``vis_core.matching.solve_qap``) or, as the bipartite
baseline, by Hungarian matching on the node affinities alone.

Legend: n1 current instances (graph 1), n2 tracks (graph 2), E embedding channels.

Nodes carry L2-normalised embeddings; the node affinity B is their cosine similarity. Edge weights A
of each graph are either "geometry", exp(-d^2 / (2 sigma^2)) of the distance d between two nodes'
box centres (normalised by the frame size: the relative layout of the instances), or "embedding",
the cosine affinity of the two nodes' embeddings (GMTracker's choice). A match stands only where
its node affinity reaches ``match_threshold``.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from vis_core.matching import solve_qap

from .config import ASSOCIATIONS, EDGE_TYPES

__all__ = ["GraphAssociation", "Tracker"]


class GraphAssociation:
    """Builds the two graphs and matches them (no parameters: the embeddings are learned upstream)."""

    def __init__(
        self,
        *,
        mode: str = "qap",
        edges: str = "geometry",
        edge_sigma: float = 0.2,
        edge_weight: float = 1.0,
        qap_iters: int = 30,
        qap_step: float = 3.0,
        qap_train_iters: int = 10,
        qap_train_step: float = 0.3,
        match_threshold: float = 0.3,
        size_correction: bool = True,
    ):
        """
        Args:
            mode: "qap" or "hungarian" (node affinities only).
            edges: "geometry" or "embedding" (see the module docstring).
            edge_sigma: sigma of the geometry edges, a fraction of the frame size.
            edge_weight: scale of A against B.
            qap_iters, qap_step: the unrolled solver at inference.
            qap_train_iters, qap_train_step: the solver of :meth:`soft_assignment` (training).
            match_threshold: minimum node affinity of a kept match.
            size_correction: for graphs of unequal sizes, charge each node of the larger graph
                the edge energy it brings into the match (see :meth:`solver_affinities`).
        """
        if mode not in ASSOCIATIONS:
            raise ValueError(
                f"MODEL.GMP_VIS.ASSOCIATION must be one of {ASSOCIATIONS}, got {mode!r}"
            )
        if edges not in EDGE_TYPES:
            raise ValueError(f"MODEL.GMP_VIS.EDGES must be one of {EDGE_TYPES}, got {edges!r}")
        if edge_sigma <= 0:
            raise ValueError(f"MODEL.GMP_VIS.EDGE_SIGMA must be > 0, got {edge_sigma}")
        self.mode = mode
        self.edges = edges
        self.edge_sigma = edge_sigma
        self.edge_weight = edge_weight
        self.qap_iters = qap_iters
        self.qap_step = qap_step
        self.qap_train_iters = qap_train_iters
        self.qap_train_step = qap_train_step
        self.match_threshold = match_threshold
        self.size_correction = size_correction

    def edge_weights(self, embeds: Tensor, centres: Tensor) -> Tensor:
        """(n, E) embeddings and (n, 2) normalised box centres -> (n, n) edge weights A (zero
        diagonal: the QAP centres each graph by its mean, which self-loops would shift by graph
        size)."""
        if self.edges == "geometry":
            d2 = torch.cdist(centres.float(), centres.float()).pow(2)
            A = torch.exp(-d2 / (2 * self.edge_sigma**2))
        else:
            e = F.normalize(embeds.float(), dim=-1)
            A = e @ e.T
        A = A * (1 - torch.eye(A.shape[0], device=A.device))  # no self-loops
        return self.edge_weight * A

    def graphs(
        self, embeds1: Tensor, embeds2: Tensor, centres1: Tensor, centres2: Tensor
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """A1 (n1, n1), A2 (n2, n2) and the node affinities B (n1, n2) of the two graphs."""
        for name, e, c in (("1", embeds1, centres1), ("2", embeds2, centres2)):
            if e.dim() != 2 or c.shape != (e.shape[0], 2):
                raise ValueError(
                    f"GraphAssociation: graph {name} needs embeds (n, E) and centres (n, 2), got "
                    f"{tuple(e.shape)} and {tuple(c.shape)}"
                )
        B = F.normalize(embeds1.float(), dim=-1) @ F.normalize(embeds2.float(), dim=-1).T
        return self.edge_weights(embeds1, centres1), self.edge_weights(embeds2, centres2), B

    def solver_affinities(self, A1: Tensor, A2: Tensor, B: Tensor) -> Tensor:
        """The node affinities handed to the QAP solver.

        The KB objective tr(A1 P A2 P^T) is - 1/2 ||A1 - P A2 P^T||^2 up to the graphs' total edge
        energies, which stop being constant when the sizes differ: some nodes of the larger graph
        stay unmatched, and the objective then prefers to match the nodes with the strongest
        (centred) edges, whatever their affinity. With ``size_correction``, each node j of the
        larger graph (n_big nodes, n_small matched) is charged (n_small / n_big) * sum_j' A[j, j']^2
        of the centred A (its expected share of the matched edge energy), so the objective compares
        the edges of the matched nodes only, as the partial-matching Frobenius objective does.
        """
        n1, n2 = B.shape
        if not self.size_correction or n1 == n2 or n1 == 0 or n2 == 0:
            return B
        if n1 < n2:
            A2c = A2 - A2.mean()
            return B - (n1 / n2) * A2c.pow(2).sum(1)[None, :]
        A1c = A1 - A1.mean()
        return B - (n2 / n1) * A1c.pow(2).sum(1)[:, None]

    def soft_assignment(
        self, embeds1: Tensor, embeds2: Tensor, centres1: Tensor, centres2: Tensor
    ) -> Tensor:
        """The relaxed QAP solution (n1, n2), differentiable in the embeddings (training)."""
        A1, A2, B = self.graphs(embeds1, embeds2, centres1, centres2)
        _, soft = solve_qap(
            A1,
            A2,
            self.solver_affinities(A1, A2, B),
            num_iters=self.qap_train_iters,
            step=self.qap_train_step,
            refine_iters=0,
            return_soft=True,
        )
        return soft

    @torch.no_grad()
    def assign(
        self, embeds1: Tensor, embeds2: Tensor, centres1: Tensor, centres2: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """Match graph 1 to graph 2.

        Returns:
            perm (n1,) int64: perm[i] = j sends node i to node j, -1 where unmatched (no partner
            or an affinity below the threshold); and the node affinities B (n1, n2).
        """
        n1, n2 = embeds1.shape[0], embeds2.shape[0]
        A1, A2, B = self.graphs(embeds1, embeds2, centres1, centres2)
        perm = torch.full((n1,), -1, dtype=torch.long)
        if n1 == 0 or n2 == 0:
            return perm, B
        if self.mode == "qap":
            perm = solve_qap(
                A1,
                A2,
                self.solver_affinities(A1, A2, B),
                num_iters=self.qap_iters,
                step=self.qap_step,
            ).cpu()
        else:
            rows, cols = linear_sum_assignment(B.cpu().numpy(), maximize=True)
            perm[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.long)
        matched = perm >= 0
        rows = matched.nonzero()[:, 0]
        weak = B.cpu()[rows, perm[rows]] < self.match_threshold
        perm[rows[weak]] = -1
        return perm, B


class Tracker:
    """Tracks built by associating each clip's (or frame's) instances with the active tracks.

    A track keeps an EMA of its embedding, the box centre where it was last seen and the step it
    was last seen; it leaves the graph of active tracks once it has gone unseen for more than
    ``max_inactive`` steps.
    """

    def __init__(self, association: GraphAssociation, momentum: float = 0.8, max_inactive: int = 3):
        self.association = association
        self.momentum = momentum
        self.max_inactive = max_inactive
        self.embeds: List[Tensor] = []
        self.centres: List[Tensor] = []
        self.last_seen: List[int] = []
        self.step = 0

    def __len__(self) -> int:
        return len(self.embeds)

    def update(
        self, embeds: Tensor, first_centres: Tensor, last_centres: Optional[Tensor] = None
    ) -> List[int]:
        """Associate one step's instances and update the tracks.

        Args:
            embeds: (n, E) node embeddings of the instances.
            first_centres: (n, 2) their box centres at the step's first frame (compared with the
                tracks' last centres).
            last_centres: (n, 2) at the step's last frame (kept for the next step; default the
                first).
        Returns:
            the track id of each instance (new ids for unmatched ones).
        """
        last_centres = first_centres if last_centres is None else last_centres
        missed = [self.step - s - 1 for s in self.last_seen]  # steps each track went unseen
        active = [k for k, m in enumerate(missed) if m <= self.max_inactive]
        ids: List[Optional[int]] = [None] * embeds.shape[0]
        if active and embeds.shape[0]:
            perm, _ = self.association.assign(
                embeds,
                torch.stack([self.embeds[k] for k in active]),
                first_centres,
                torch.stack([self.centres[k] for k in active]),
            )
            for i, j in enumerate(perm.tolist()):
                if j >= 0:
                    ids[i] = active[j]
        for i in range(embeds.shape[0]):
            e = F.normalize(embeds[i].detach().float(), dim=-1)
            if ids[i] is None:
                ids[i] = len(self.embeds)
                self.embeds.append(e)
                self.centres.append(last_centres[i].detach().float())
                self.last_seen.append(self.step)
                continue
            k = ids[i]
            self.embeds[k] = F.normalize(
                self.momentum * self.embeds[k] + (1 - self.momentum) * e, dim=-1
            )
            self.centres[k] = last_centres[i].detach().float()
            self.last_seen[k] = self.step
        self.step += 1
        return [int(i) for i in ids]
