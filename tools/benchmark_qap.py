#!/usr/bin/env python
"""Benchmark of vis_core.matching.solve_qap (QAP graph matching, GMP-VIS).

1. Planted permutations: a random weighted undirected graph on n nodes with node features; graph 2
   is graph 1 permuted, with Gaussian noise of standard deviation sigma added to its edge weights
   (symmetrised) and noise of standard deviation --feat-noise added to its node features; B is the
   feature affinity (negative squared distance per dimension). Reports, by sigma, the fraction of
   nodes sent to their planted match by solve_qap, by the relaxed solution rounded alone (no
   refinement, no B-only candidate) and by Hungarian matching on B alone, and how often solve_qap's
   quadratic objective is at least that of the B-only assignment.
2. Brute force, n <= 7: random uniform symmetric A1, A2 and B; how often solve_qap reaches the
   optimum of tr(A1 P A2 P^T) + tr(B^T P) over all n! permutations, the mean and minimum ratio of
   its objective to the optimum, the same ratio for the relaxed rounding alone and for Hungarian on
   B alone, and how often solve_qap is at least as good as B alone.
3. Time per solve, batched: (batch, n, n) problems in one call; the soft output alone
   (relaxed_qap, forward and forward + backward) and the hard output (solve_qap).

    python tools/benchmark_qap.py [--n 20] [--trials 50] [--device cpu] [--threads 1]
"""

import argparse

import numpy as np
import torch
from benchmark_ms_deform_attn import timed  # tools/ is on sys.path when run as a script
from scipy.optimize import linear_sum_assignment

from vis_core.matching import (
    brute_force_qap,
    permutation_matrix,
    qap_objective,
    relaxed_qap,
    solve_qap,
)


def b_only(B: torch.Tensor) -> torch.Tensor:
    """Hungarian on the node affinities alone: (b, n, n) -> (b, n)."""
    out = []
    for b in B.detach().cpu().numpy():
        rows, cols = linear_sum_assignment(b, maximize=True)
        out.append(cols[np.argsort(rows)])
    return torch.as_tensor(np.stack(out))


def objective(A1, A2, B, perm):
    """(b,) objective of (b, n) assignments."""
    P = permutation_matrix(perm.to(A1.device), A2.shape[-1]).to(A1)
    return qap_objective(A1, A2, B, P)


def planted_problems(b, n, sigma, feat_dim, feat_noise, gen):
    """(A1, A2, B, perm) with A2 ~ P^T A1 P, features of graph 2 ~ P^T features of graph 1."""
    A = torch.rand(b, n, n, generator=gen)
    A1 = (A + A.transpose(1, 2)) / 2 * (1 - torch.eye(n))
    perm = torch.stack([torch.randperm(n, generator=gen) for _ in range(b)])  # i -> perm[i]
    P = permutation_matrix(perm, n)
    noise = torch.randn(b, n, n, generator=gen) * sigma
    A2 = P.transpose(1, 2) @ A1 @ P + (noise + noise.transpose(1, 2)) / 2
    X1 = torch.randn(b, n, feat_dim, generator=gen)
    X2 = P.transpose(1, 2) @ X1 + torch.randn(b, n, feat_dim, generator=gen) * feat_noise
    B = -torch.cdist(X1, X2) ** 2 / feat_dim
    return A1, A2, B, perm


def planted(n, trials, sigmas, feat_dim, feat_noise, device, gen):
    print(
        f"\n== planted permutation recovery: n={n}, {trials} graphs per edge-noise level, "
        f"feature noise {feat_noise} ({feat_dim}-d features) =="
    )
    print(
        f"{'sigma':>6} {'solve_qap acc':>14} {'relaxed-only acc':>17} {'B-only acc':>11} "
        f"{'obj >= B-only':>14} {'obj B-only/solve_qap':>21}"
    )
    for sigma in sigmas:
        A1, A2, B, perm = planted_problems(trials, n, sigma, feat_dim, feat_noise, gen)
        A1, A2, B = (t.to(device) for t in (A1, A2, B))
        pred, soft = solve_qap(A1, A2, B, return_soft=True)
        pred = pred.cpu()
        relaxed = b_only(soft)
        from_b = b_only(B)
        v, v_b = objective(A1, A2, B, pred), objective(A1, A2, B, from_b)
        not_worse = (v >= v_b - 1e-4 * v_b.abs().clamp_min(1)).float().mean().item()
        print(
            f"{sigma:>6.2f} {(pred == perm).float().mean().item():>14.3f} "
            f"{(relaxed == perm).float().mean().item():>17.3f} "
            f"{(from_b == perm).float().mean().item():>11.3f} {not_worse:>14.3f} "
            f"{(v_b / v).mean().item():>21.4f}"
        )


def brute_force(ns, trials, gen):
    print(f"\n== comparison with the brute-force optimum, {trials} random problems per n ==")
    print(
        f"{'n':>3} {'optimum reached':>16} {'mean ratio':>11} {'min ratio':>10} "
        f"{'relaxed-only ratio':>19} {'B-only ratio':>13} {'>= B-only':>10}"
    )
    for n in ns:
        hits, not_worse, ratios, ratios_relaxed, ratios_b = 0, 0, [], [], []
        for _ in range(trials):
            A1 = torch.rand(n, n, generator=gen, dtype=torch.float64)
            A1 = (A1 + A1.T) / 2
            A2 = torch.rand(n, n, generator=gen, dtype=torch.float64)
            A2 = (A2 + A2.T) / 2
            B = torch.rand(n, n, generator=gen, dtype=torch.float64)
            best = float(brute_force_qap(A1, A2, B)[1])
            pred, soft = solve_qap(A1, A2, B, return_soft=True)
            v = float(objective(A1[None], A2[None], B[None], pred[None]))
            v_relaxed = float(objective(A1[None], A2[None], B[None], b_only(soft[None])))
            v_b = float(objective(A1[None], A2[None], B[None], b_only(B[None])))
            hits += v >= best - 1e-9
            not_worse += v >= v_b - 1e-9
            ratios.append(v / best)
            ratios_relaxed.append(v_relaxed / best)
            ratios_b.append(v_b / best)
        print(
            f"{n:>3} {hits / trials:>16.3f} {np.mean(ratios):>11.4f} {np.min(ratios):>10.4f} "
            f"{np.mean(ratios_relaxed):>19.4f} {np.mean(ratios_b):>13.4f} "
            f"{not_worse / trials:>10.3f}"
        )


def timing(sizes, batches, device, repeats, gen):
    print(f"\n== time per solve on {device} (median of {repeats} calls, one call per batch) ==")
    print(
        f"{'n':>4} {'batch':>6} {'soft fwd ms':>12} {'soft fwd+bwd ms':>16} {'solve_qap ms':>13} "
        f"{'solve_qap ms/problem':>21}"
    )
    for n in sizes:
        for b in batches:
            A1, A2, B, _ = planted_problems(b, n, 0.1, 8, 1.0, gen)
            A1, A2, B = (t.to(device) for t in (A1, A2, B))

            def soft_forward():
                with torch.no_grad():
                    relaxed_qap(A1, A2, B)

            def soft_backward():
                inputs = [t.clone().requires_grad_() for t in (A1, A2, B)]
                relaxed_qap(*inputs).diagonal(dim1=-2, dim2=-1).sum().backward()

            def hard():
                solve_qap(A1, A2, B)

            times = [timed(fn, device, repeats) for fn in (soft_forward, soft_backward, hard)]
            print(
                f"{n:>4} {b:>6} {times[0]:>12.2f} {times[1]:>16.2f} {times[2]:>13.2f} "
                f"{times[2] / b:>21.2f}"
            )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20, help="nodes of the planted-permutation graphs")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--feat-dim", type=int, default=8)
    parser.add_argument("--feat-noise", type=float, default=1.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per configuration")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 50], help="timing: n")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64], help="timing: batch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} thread(s)")
    planted(
        args.n,
        args.trials,
        [0.0, 0.05, 0.1, 0.2, 0.3, 0.5],
        args.feat_dim,
        args.feat_noise,
        args.device,
        gen,
    )
    brute_force([4, 5, 6, 7], args.trials, gen)
    timing(args.sizes, args.batches, args.device, args.repeats, gen)


if __name__ == "__main__":
    main()
