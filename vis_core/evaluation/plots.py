"""Plots of an evaluation: precision-recall curves per IoU threshold, per-category AP bars."""

import os
from typing import List

import numpy as np

from .ytvis_eval import IOU_THRESHOLDS, RECALL_THRESHOLDS, YTVISEvalResult

__all__ = ["save_plots"]


def save_plots(result: YTVISEvalResult, out_dir: str) -> List[str]:
    """Write ``pr_curves.png`` (one curve per IoU threshold, precision averaged over the categories
    that have ground truth; area "all", 100 detections) and ``per_category_ap.png``.

    Returns:
        the paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    prec = result.precision[:, :, :, 0, -1]  # (T, R, K)
    fig, ax = plt.subplots(figsize=(7, 5))
    cmap = plt.get_cmap("viridis")
    for t, thr in enumerate(IOU_THRESHOLDS):
        p = prec[t]
        valid = (p > -1).all(axis=0)
        curve = p[:, valid].mean(axis=1) if valid.any() else np.zeros(len(RECALL_THRESHOLDS))
        ax.plot(
            RECALL_THRESHOLDS, curve, color=cmap(t / len(IOU_THRESHOLDS)), label=f"IoU {thr:.2f}"
        )
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (mean over categories)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Precision-recall, AP = {result.metrics_percent()['AP']:.2f}")
    ax.legend(fontsize=7, ncol=2)
    path = os.path.join(out_dir, "pr_curves.png")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)

    per_cat = result.per_category_percent()
    names = list(per_cat)
    values = [0.0 if np.isnan(v) else v for v in per_cat.values()]
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(names) + 2), 4))
    bars = ax.bar(range(len(names)), values, color="tab:blue")
    for bar, v in zip(bars, per_cat.values()):
        if np.isnan(v):
            bar.set_color("lightgray")  # no ground truth: AP undefined
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylabel("AP (%)")
    ax.set_title("Per-category AP (gray: no ground truth)")
    path = os.path.join(out_dir, "per_category_ap.png")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)
    return paths
