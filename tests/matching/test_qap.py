"""solve_qap: planted permutations, brute-force optimum, never worse than B alone, unequal sizes,
batching, and gradients of the soft output (gradcheck in float64)."""

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from vis_core.matching import (
    brute_force_qap,
    permutation_matrix,
    qap_objective,
    relaxed_qap,
    solve_qap,
)


def planted_problem(b, n, edge_noise, feat_noise, seed, b_weight=0.1):
    g = torch.Generator().manual_seed(seed)
    A = torch.rand(b, n, n, generator=g, dtype=torch.float64)
    A1 = (A + A.transpose(1, 2)) / 2
    perm = torch.stack([torch.randperm(n, generator=g) for _ in range(b)])
    P = permutation_matrix(perm, n).double()
    noise = torch.randn(b, n, n, generator=g, dtype=torch.float64) * edge_noise
    A2 = P.transpose(1, 2) @ A1 @ P + (noise + noise.transpose(1, 2)) / 2
    X1 = torch.randn(b, n, 4, generator=g, dtype=torch.float64)
    X2 = (
        P.transpose(1, 2) @ X1 + torch.randn(b, n, 4, generator=g, dtype=torch.float64) * feat_noise
    )
    B = -b_weight * torch.cdist(X1, X2) ** 2 / 4
    return A1, A2, B, perm


def b_only(B):
    rows, cols = linear_sum_assignment(B.numpy(), maximize=True)
    return torch.as_tensor(cols[np.argsort(rows)])


def objective(A1, A2, B, perm):
    return float(qap_objective(A1, A2, B, permutation_matrix(perm, A2.shape[-1]).to(A1)))


def test_planted_permutation_recovered():
    # node features too noisy for B alone; the edges identify the permutation
    A1, A2, B, perm = planted_problem(b=8, n=12, edge_noise=0.05, feat_noise=1.0, seed=0)
    pred = solve_qap(A1, A2, B)
    assert pred.shape == (8, 12) and pred.dtype == torch.int64
    acc = (pred == perm).float().mean().item()
    acc_b = np.mean([(b_only(B[k]) == perm[k]).float().mean().item() for k in range(8)])
    assert acc == 1.0
    assert acc_b < 0.95  # the problem really needs the quadratic term


def test_relaxed_solution_alone_recovers_noise_free_planted():
    A1, A2, B, perm = planted_problem(b=4, n=10, edge_noise=0.0, feat_noise=1.0, seed=1)
    _, soft = solve_qap(A1, A2, B, return_soft=True)
    assert torch.equal(torch.stack([b_only(s) for s in soft]), perm)
    # Sinkhorn ends on a column normalisation; rows are within a few percent of 1
    torch.testing.assert_close(soft.sum(-2), torch.ones(4, 10, dtype=torch.float64))
    assert (soft.sum(-1) - 1).abs().max() < 0.05


def test_brute_force_reference():
    g = torch.Generator().manual_seed(1)
    A1, A2, B = (torch.rand(4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    perm, best = brute_force_qap(A1, A2, B)
    assert float(best) == pytest.approx(objective(A1, A2, B, perm), abs=1e-12)
    for p in itertools.permutations(range(4)):
        assert objective(A1, A2, B, torch.tensor(p)) <= float(best) + 1e-12


def test_brute_force_and_never_worse_than_b_only():
    g = torch.Generator().manual_seed(0)
    for n in (3, 5, 7):
        hits, ratios = 0, []
        for _ in range(12):
            A1 = torch.rand(n, n, generator=g, dtype=torch.float64)
            A1 = (A1 + A1.T) / 2
            A2 = torch.rand(n, n, generator=g, dtype=torch.float64)
            A2 = (A2 + A2.T) / 2
            B = torch.rand(n, n, generator=g, dtype=torch.float64)
            best = float(brute_force_qap(A1, A2, B)[1])
            v = objective(A1, A2, B, solve_qap(A1, A2, B))
            assert v <= best + 1e-9
            assert v >= objective(A1, A2, B, b_only(B)) - 1e-9
            hits += v >= best - 1e-9
            ratios.append(v / best)
        # measured with this seed: 12/12, 9/12, 9/12 optima for n = 3, 5, 7; mean ratio >= 0.998
        assert hits >= 8, (n, hits)
        assert np.mean(ratios) > 0.99, (n, np.mean(ratios))


@pytest.mark.parametrize("n1,n2", [(4, 6), (6, 4)])
def test_unequal_sizes(n1, n2):
    # graph 2 (or 1) is a permuted sub-graph of the other: the real nodes are still recovered
    n = max(n1, n2)
    A1, A2, B, perm = planted_problem(b=1, n=n, edge_noise=0.0, feat_noise=0.3, seed=2)
    A1, A2, B, perm = A1[0], A2[0], B[0], perm[0]
    if n1 < n:  # keep the first n1 nodes of graph 1
        A1, B = A1[:n1, :n1], B[:n1]
        expected = perm[:n1]
    else:  # keep the nodes of graph 2 that are images of nodes 0..n2-1 (relabelled)
        keep = perm[:n2]
        A2, B = A2[keep][:, keep], B[:, keep]
        expected = torch.full((n1,), -1, dtype=torch.long)
        expected[:n2] = torch.arange(n2)
    pred, soft = solve_qap(A1, A2, B, return_soft=True)
    assert pred.shape == (n1,) and soft.shape == (n1, n2)
    assert torch.equal(pred, expected)
    matched = pred[pred >= 0]
    assert len(set(matched.tolist())) == len(matched) == min(n1, n2)


def test_batched_equals_unbatched_and_checks():
    A1, A2, B, _ = planted_problem(b=3, n=7, edge_noise=0.2, feat_noise=0.5, seed=4)
    batched = solve_qap(A1.float(), A2.float(), B.float())
    single = torch.stack([solve_qap(A1[k].float(), A2[k].float(), B[k].float()) for k in range(3)])
    assert torch.equal(batched, single)
    with pytest.raises(ValueError, match="B \\(.., n1, n2\\)"):
        solve_qap(A1, A2, B[:, :, :3])
    with pytest.raises(ValueError, match="must all be"):
        solve_qap(A1[0], A2, B)
    empty = solve_qap(torch.zeros(0, 0), torch.zeros(3, 3), torch.zeros(0, 3))
    assert empty.shape == (0,)


def test_gradients_flow_gradcheck():
    g = torch.Generator().manual_seed(5)
    n = 3
    A1 = torch.rand(1, n, n, generator=g, dtype=torch.float64)
    A2 = torch.rand(1, n, n, generator=g, dtype=torch.float64)
    B = torch.rand(1, n, n, generator=g, dtype=torch.float64)
    A1, A2, B = ((t + t.transpose(1, 2)) / 2 for t in (A1, A2, B))
    inputs = tuple(t.clone().requires_grad_() for t in (A1, A2, B))

    def soft(a1, a2, b):
        return relaxed_qap(a1, a2, b, num_iters=5, sinkhorn_iters=10, step=1.0)

    assert torch.autograd.gradcheck(soft, inputs, eps=1e-6, atol=1e-5)
    # and through the public entry point with its defaults
    _, X = solve_qap(*inputs, return_soft=True)
    loss = -(X * torch.eye(n, dtype=torch.float64)).sum()
    loss.backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in inputs)
    assert inputs[2].grad.abs().sum() > 0


def test_relaxation_ranks_permutations_as_objective_directed_graphs():
    # f(P) = 1/2 ||A1 P - P A2^T||^2 - tr(B^T P) is a constant minus the QAP objective on every
    # permutation, also for asymmetric (directed) A1, A2
    from vis_core.matching.qap import _relaxed_gradient

    g = torch.Generator().manual_seed(8)
    n = 5
    A1, A2, B = (torch.rand(n, n, generator=g, dtype=torch.float64) for _ in range(3))
    perms = [torch.randperm(n, generator=g) for _ in range(6)]
    sums = []
    for p in perms:
        P = permutation_matrix(p, n).double()
        R, _ = _relaxed_gradient(A1, A2, B, P)
        f = 0.5 * R.pow(2).sum() - (B * P).sum()
        sums.append(float(f) + objective(A1, A2, B, p))
    np.testing.assert_allclose(sums, sums[0], rtol=1e-12)


def test_brute_force_directed_graphs():
    # asymmetric A1, A2: the hard output is still never worse than B alone and mostly optimal
    g = torch.Generator().manual_seed(9)
    hits = 0
    for _ in range(12):
        A1, A2, B = (torch.rand(6, 6, generator=g, dtype=torch.float64) for _ in range(3))
        best = float(brute_force_qap(A1, A2, B)[1])
        v = objective(A1, A2, B, solve_qap(A1, A2, B))
        assert objective(A1, A2, B, b_only(B)) - 1e-9 <= v <= best + 1e-9
        hits += v >= best - 1e-9
    assert hits >= 6, hits  # measured with this seed: 9/12


def test_permutation_bce_loss_balances_matched_and_unmatched_entries():
    from vis_core.matching import permutation_bce_loss

    target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # node 1 of graph 2 unmatched
    perfect = permutation_bce_loss(target.clone(), target)
    assert perfect.item() < 1e-4
    soft = torch.full((2, 3), 0.5, requires_grad=True)
    loss = permutation_bce_loss(soft, target)
    bce = -torch.log(torch.tensor(0.5))
    torch.testing.assert_close(loss, 2 * bce)  # mean over positives + mean over negatives
    torch.testing.assert_close(permutation_bce_loss(soft, target, balanced=False), bce)
    loss.backward()
    assert (soft.grad[target > 0] < 0).all() and (soft.grad[target == 0] > 0).all()
    # solved assignments are differentiable end to end (a soft solver: few, short steps keep X
    # inside the polytope; long ones saturate it to a vertex, where the gradient vanishes)
    g = torch.Generator().manual_seed(0)
    B = torch.randn(3, 3, generator=g).requires_grad_(True)
    A = torch.rand(3, 3, generator=g)
    _, X = solve_qap(A, A, B, return_soft=True, num_iters=10, step=0.3)
    assert X.min() > 1e-6
    permutation_bce_loss(X, torch.eye(3)).backward()
    assert B.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="must"):
        permutation_bce_loss(soft, target[:1])
    assert permutation_bce_loss(torch.zeros(0, 2), torch.zeros(0, 2)).item() == 0.0
