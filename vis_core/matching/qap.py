"""Koopmans-Beckmann quadratic assignment between two graphs (GMP-VIS's association step).

Legend: b problems in a batch, n1 / n2 nodes of graph 1 / graph 2, n = max(n1, n2).
A permutation matrix P (n1 x n2, P[i, j] = 1 sends node i of graph 1 to node j of graph 2) should
    maximise  tr(A1 P A2 P^T) + tr(B^T P)
(A1, A2 weighted adjacency matrices, B node affinities). As GMP-VIS does, we solve the convex
relaxation
    minimise  f(X) = 1/2 ||A1 X - X A2^T||_F^2 - tr(B^T X)   over doubly-stochastic X
(for undirected graphs A2^T = A2, the form GMP-VIS writes; with the transpose, f on every
permutation equals a constant minus the objective above for directed graphs too, since
tr(A1 P A2 P^T) = sum_{i,i'} A1[i, i'] A2[p(i'), p(i)])
with a fixed number of unrolled projected-gradient steps in the entropic geometry (exponentiated
gradient, each step projected back onto the doubly-stochastic matrices by Sinkhorn normalisation);
every step is a differentiable tensor operation, batched on the tensors' device. The
soft solution X is the training output; the hard output rounds X to a permutation with the
Hungarian algorithm and keeps, per problem, the best of that rounding, optionally a few
Frank-Wolfe steps on the original (indefinite) objective started from X with exact Hungarian
vertices (FAQ, Vogelstein et al. 2015), and the Hungarian assignment on B alone -- so the hard
result is never worse on the quadratic objective than matching node affinities only.
Unequal sizes are padded with dummy nodes whose edges carry the graph's mean weight and whose
affinities are zero (the edge weights are centred, then zero-padded); real nodes sent to a dummy
get -1 in ``perm``. The hard output is scored on these centred, padded matrices, which for equal
sizes ranks permutations exactly as the original objective does.
"""

from __future__ import annotations

import itertools
import math
from typing import Tuple, Union

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = [
    "solve_qap",
    "relaxed_qap",
    "brute_force_qap",
    "qap_objective",
    "sinkhorn",
    "log_sinkhorn",
    "permutation_matrix",
    "permutation_bce_loss",
]


def log_sinkhorn(log_alpha: Tensor, num_iters: int = 20) -> Tensor:
    """Sinkhorn normalisation in the log domain.

    Args:
        log_alpha: (..., n, n) log scores.
    Returns:
        (..., n, n) log of the approximately doubly-stochastic rescaling of exp(log_alpha)
        (the last operation normalises columns).
    """
    for _ in range(num_iters):
        log_alpha = log_alpha - torch.logsumexp(log_alpha, dim=-1, keepdim=True)
        log_alpha = log_alpha - torch.logsumexp(log_alpha, dim=-2, keepdim=True)
    return log_alpha


def sinkhorn(log_alpha: Tensor, num_iters: int = 20) -> Tensor:
    """exp(log_sinkhorn(log_alpha)): (..., n, n) approximately doubly-stochastic matrix."""
    return log_sinkhorn(log_alpha, num_iters).exp()


def permutation_matrix(perm: Tensor, n2: int) -> Tensor:
    """(..., n1) assignment (-1 = unmatched) -> (..., n1, n2) 0/1 float matrix."""
    valid = perm >= 0
    P = torch.zeros(*perm.shape, n2 + 1, device=perm.device)
    P.scatter_(-1, torch.where(valid, perm, n2)[..., None], 1.0)
    return P[..., :n2]


def permutation_bce_loss(soft: Tensor, target: Tensor, balanced: bool = True) -> Tensor:
    """Binary cross-entropy between a relaxed assignment and the true one (GMP-VIS's matching loss).

    Args:
        soft: (n1, n2) relaxed assignment with entries in [0, 1] (``solve_qap(...,
            return_soft=True)``).
        target: (n1, n2) 0/1 true assignment (a partial permutation: rows or columns may be empty).
        balanced: average the matched and the unmatched entries separately and add the two means
            (class-balanced, as GMP-VIS's code weights its matching loss); else one mean.
    Returns:
        scalar loss (0 with the graph kept when ``soft`` is empty).
    """
    if soft.shape != target.shape or soft.dim() != 2:
        raise ValueError(
            f"permutation_bce_loss: soft {tuple(soft.shape)} and target {tuple(target.shape)} must "
            "both be (n1, n2)"
        )
    if soft.numel() == 0:
        return soft.sum() * 0.0
    target = target.to(soft)
    loss = torch.nn.functional.binary_cross_entropy(
        soft.clamp(1e-6, 1 - 1e-6), target, reduction="none"
    )
    if not balanced:
        return loss.mean()
    positive = target > 0.5
    terms = [loss[mask].mean() for mask in (positive, ~positive) if mask.any()]
    return torch.stack(terms).sum()


def qap_objective(A1: Tensor, A2: Tensor, B: Tensor, P: Tensor) -> Tensor:
    """tr(A1 P A2 P^T) + tr(B^T P).

    Args:
        A1: (..., n1, n1); A2: (..., n2, n2); B: (..., n1, n2); P: (..., n1, n2).
    Returns:
        (...) objective values.
    """
    quad = torch.einsum("...ij,...jk,...kl,...il->...", A1, P, A2, P)
    return quad + (B * P).sum(dim=(-2, -1))


def _relaxed_gradient(A1: Tensor, A2: Tensor, B: Tensor, X: Tensor) -> Tuple[Tensor, Tensor]:
    """Residual R = A1 X - X A2^T and gradient of f: A1^T R - R A2 - B."""
    R = A1 @ X - X @ A2.transpose(-1, -2)
    return R, A1.transpose(-1, -2) @ R - R @ A2 - B


def _pad(A1: Tensor, A2: Tensor, B: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    n1, n2 = A1.shape[-1], A2.shape[-1]
    n = max(n1, n2)
    if n1 < n:
        A1 = torch.nn.functional.pad(A1, (0, n - n1, 0, n - n1))
    if n2 < n:
        A2 = torch.nn.functional.pad(A2, (0, n - n2, 0, n - n2))
    B = torch.nn.functional.pad(B, (0, n - n2, 0, n - n1))
    return A1, A2, B


def _check(A1: Tensor, A2: Tensor, B: Tensor) -> None:
    if A1.dim() not in (2, 3) or A1.dim() != A2.dim() or A1.dim() != B.dim():
        raise ValueError(
            "solve_qap: A1, A2, B must all be (n, n) or all (batch, n, n); got "
            f"{tuple(A1.shape)}, {tuple(A2.shape)}, {tuple(B.shape)}"
        )
    n1, n2 = A1.shape[-1], A2.shape[-1]
    if A1.shape[-2] != n1 or A2.shape[-2] != n2 or B.shape[-2:] != (n1, n2):
        raise ValueError(
            f"solve_qap: expected A1 (.., n1, n1), A2 (.., n2, n2), B (.., n1, n2); got "
            f"{tuple(A1.shape)}, {tuple(A2.shape)}, {tuple(B.shape)}"
        )
    if A1.dim() == 3 and not (A1.shape[0] == A2.shape[0] == B.shape[0]):
        raise ValueError(
            f"solve_qap: batch sizes differ: {A1.shape[0]}, {A2.shape[0]}, {B.shape[0]}"
        )
    if not (A1.is_floating_point() and A2.is_floating_point() and B.is_floating_point()):
        raise TypeError("solve_qap: A1, A2 and B must be floating-point tensors")


def relaxed_qap(
    A1: Tensor,
    A2: Tensor,
    B: Tensor,
    *,
    num_iters: int = 30,
    sinkhorn_iters: int = 20,
    step: float = 3.0,
) -> Tensor:
    """Differentiable solution of the convex relaxation: unrolled projected gradient descent in the
    entropic (KL) geometry, X <- Sinkhorn(X * exp(-step * grad f(X) / rms(grad f(X)))), i.e.
    exponentiated-gradient steps each projected onto the doubly-stochastic matrices by Sinkhorn.

    Args:
        A1: (b, n, n), A2: (b, n, n), B: (b, n, n), already padded to a common n.
        num_iters: gradient steps.
        sinkhorn_iters: Sinkhorn iterations of each projection.
        step: step length relative to the root mean square of the gradient (scale-free).
    Returns:
        (b, n, n) doubly-stochastic X (differentiable in A1, A2 and B).
    """
    n = A1.shape[-1]
    log_X = torch.full_like(B, -math.log(n))  # barycentre of the Birkhoff polytope
    X = log_X.exp()
    for _ in range(num_iters):
        _, G = _relaxed_gradient(A1, A2, B, X)
        rms = G.pow(2).mean(dim=(-2, -1), keepdim=True).add(1e-24).sqrt()
        log_X = log_sinkhorn(log_X - step * G / rms, sinkhorn_iters)
        X = log_X.exp()
    return X


def brute_force_qap(A1: Tensor, A2: Tensor, B: Tensor) -> Tuple[Tensor, Tensor]:
    """The exact optimum of tr(A1 P A2 P^T) + tr(B^T P) over all n! permutations (small n only;
    a reference for tests and benchmarks).

    Args:
        A1, A2, B: (n, n) each, n <= 9.
    Returns:
        perm (n,) int64 with perm[i] = j, and the optimal value (scalar, dtype of the inputs).
    """
    n = A1.shape[-1]
    if A1.dim() != 2 or A2.shape != (n, n) or B.shape != (n, n) or n > 9:
        raise ValueError(
            "brute_force_qap: expected (n, n) A1, A2, B with n <= 9, got "
            f"{tuple(A1.shape)}, {tuple(A2.shape)}, {tuple(B.shape)}"
        )
    perms = torch.tensor(list(itertools.permutations(range(n))), device=A1.device)  # (n!, n)
    # sum_{i,i'} A1[i, i'] A2[p(i'), p(i)] + sum_i B[i, p(i)], for every permutation p
    values = (A1[None] * A2[perms[:, None, :], perms[:, :, None]]).sum((1, 2))
    values = values + B[torch.arange(n, device=B.device)[None], perms].sum(1)  # (n!,)
    best = int(values.argmax())
    return perms[best], values[best]


def _hungarian(score: np.ndarray) -> np.ndarray:
    """Maximum-score assignment of a square matrix: perm[i] = j."""
    rows, cols = linear_sum_assignment(score, maximize=True)
    perm = np.empty(score.shape[0], dtype=np.int64)
    perm[rows] = cols
    return perm


def _objective_np(A1: np.ndarray, A2: np.ndarray, B: np.ndarray, perm: np.ndarray) -> float:
    # tr(A1 P A2 P^T) = sum_{i,i'} A1[i, i'] A2[p(i'), p(i)]
    return float(
        (A1 * A2[perm[None, :], perm[:, None]]).sum() + B[np.arange(len(perm)), perm].sum()
    )


def _faq_refine(
    A1: np.ndarray, A2: np.ndarray, B: np.ndarray, X: np.ndarray, num_iters: int
) -> np.ndarray:
    """Frank-Wolfe on the original objective g(X) = tr(A1 X A2 X^T) + tr(B^T X) (maximised) from
    X, with exact Hungarian vertices and exact line search; returns X rounded to a permutation."""
    for _ in range(num_iters):
        grad = A1.T @ X @ A2.T + A1 @ X @ A2 + B  # d/dX tr(A1 X A2 X^T) + tr(B^T X)
        perm = _hungarian(grad)
        S = np.zeros_like(X)
        S[np.arange(len(perm)), perm] = 1.0
        D = S - X
        a = float(np.sum(A1.T * (D @ A2 @ D.T)))  # tr(A1 D A2 D^T): quadratic coefficient
        b = float(np.sum(grad * D))  # linear coefficient
        if b <= 1e-12 and a <= 0:
            break
        if a < 0:
            t = min(max(-b / (2 * a), 0.0), 1.0)
        else:
            t = 1.0 if a + b > 0 else 0.0
        if t == 0.0:
            break
        X = X + t * D
    return _hungarian(X)


def solve_qap(
    A1: Tensor,
    A2: Tensor,
    B: Tensor,
    *,
    num_iters: int = 30,
    sinkhorn_iters: int = 20,
    step: float = 3.0,
    refine_iters: int = 20,
    return_soft: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Match graph 1 to graph 2 by the Koopmans-Beckmann QAP.

    Args:
        A1: (n1, n1) or (batch, n1, n1) weighted adjacency of graph 1.
        A2: (n2, n2) or (batch, n2, n2) weighted adjacency of graph 2. The objective pairs
            A1[i, i'] with A2[p(i'), p(i)]: for directed graphs in which edge (i, i') of graph 1
            should meet edge (p(i), p(i')) of graph 2, pass A2 transposed.
        B: (n1, n2) or (batch, n1, n2) node affinities (higher = more alike).
        num_iters, sinkhorn_iters, step: the unrolled relaxed solver (see :func:`relaxed_qap`).
        refine_iters: Frank-Wolfe steps on the original objective before rounding (hard output
            only; 0 disables).
        return_soft: also return the differentiable doubly-stochastic solution.
    Returns:
        perm: int64 (n1,) or (batch, n1); perm[i] = j sends node i of graph 1 to node j of graph 2,
            -1 where node i is left unmatched (n1 > n2). On the device of the inputs.
        soft (if return_soft): (n1, n2) or (batch, n1, n2) relaxed assignment, differentiable in
            A1, A2 and B (the rows of nodes matched to dummies sum to less than 1).
    """
    _check(A1, A2, B)
    batched = A1.dim() == 3
    if not batched:
        A1, A2, B = A1[None], A2[None], B[None]
    n1, n2 = A1.shape[-1], A2.shape[-1]
    dtype = torch.promote_types(torch.promote_types(A1.dtype, A2.dtype), B.dtype)
    # Centre the edge weights so that the dummy nodes' zero edges are the graphs' mean weight
    # (neutral padding, Fishkind et al. 2019). For equal sizes this changes the objective only by
    # a constant on permutations (and the relaxed one by a constant on doubly-stochastic matrices).
    A1c = A1.to(dtype) - A1.to(dtype).mean(dim=(-2, -1), keepdim=True) if n1 > 0 else A1.to(dtype)
    A2c = A2.to(dtype) - A2.to(dtype).mean(dim=(-2, -1), keepdim=True) if n2 > 0 else A2.to(dtype)
    A1p, A2p, Bp = _pad(A1c, A2c, B.to(dtype))
    if n1 == 0 or n2 == 0:
        X = Bp.new_zeros(Bp.shape)
    else:
        X = relaxed_qap(A1p, A2p, Bp, num_iters=num_iters, sinkhorn_iters=sinkhorn_iters, step=step)
    soft = X[:, :n1, :n2]

    perms = []
    A1n, A2n, Bn, Xn = (t.detach().double().cpu().numpy() for t in (A1p, A2p, Bp, X))
    for k in range(A1n.shape[0]):
        candidates = [_hungarian(Xn[k]), _hungarian(Bn[k])]
        if refine_iters > 0:
            candidates.append(_faq_refine(A1n[k], A2n[k], Bn[k], Xn[k], refine_iters))
        scores = [_objective_np(A1n[k], A2n[k], Bn[k], p) for p in candidates]
        perms.append(candidates[int(np.argmax(scores))][:n1])
    perm = torch.as_tensor(np.stack(perms), dtype=torch.int64, device=A1.device)
    perm = torch.where(perm < n2, perm, torch.full_like(perm, -1))
    if not batched:
        perm, soft = perm[0], soft[0]
    return (perm, soft) if return_soft else perm
