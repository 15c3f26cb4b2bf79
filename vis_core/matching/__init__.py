"""Matchers: video-level Hungarian matching of tracks, and QAP graph matching (GMP-VIS)."""

from .hungarian import VideoHungarianMatcher, video_box_costs
from .qap import (
    brute_force_qap,
    permutation_bce_loss,
    permutation_matrix,
    qap_objective,
    relaxed_qap,
    sinkhorn,
    solve_qap,
)

__all__ = [
    "VideoHungarianMatcher",
    "video_box_costs",
    "brute_force_qap",
    "permutation_bce_loss",
    "permutation_matrix",
    "qap_objective",
    "relaxed_qap",
    "sinkhorn",
    "solve_qap",
]
