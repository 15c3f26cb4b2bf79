"""Point sampling shared by the video matchers and mask criteria (Mask2Former-style point losses).

Masks are compared on P points instead of every pixel. For a video, the same P points are used in
all T frames of a clip (as Mask2Former-VIS does), so a (Q, T, H, W) mask stack becomes (Q, T * P)
point values. The sampling itself is detectron2's PointRend code (``point_sample`` and
``get_uncertain_point_coords_with_randomness``), re-exported here so every method imports it from
one place.
"""

from __future__ import annotations

from typing import Optional

import torch
from detectron2.projects.point_rend.point_features import (
    get_uncertain_point_coords_with_randomness,
    point_sample,
)
from torch import Tensor

__all__ = [
    "point_sample",
    "get_uncertain_point_coords_with_randomness",
    "calculate_uncertainty",
    "random_point_coords",
    "sample_video_points",
    "uncertain_video_point_coords",
]


def calculate_uncertainty(logits: Tensor) -> Tensor:
    """Uncertainty of mask logits: -|logit|, highest on the decision boundary.

    Args:
        logits: (R, 1, ...) class-agnostic mask logits.
    Returns:
        (R, 1, ...) uncertainty scores.
    """
    if logits.shape[1] != 1:
        raise ValueError(
            f"calculate_uncertainty expects (R, 1, ...) logits, got {tuple(logits.shape)}"
        )
    return -logits.abs()


def random_point_coords(
    num_masks: int,
    num_points: int,
    *,
    device: torch.device | str = "cpu",
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Uniform random points, the same for every mask when ``num_masks == 1`` is expanded.

    Returns:
        (num_masks, num_points, 2) normalised (x, y) coordinates in [0, 1].
    """
    coords = torch.rand(num_masks, num_points, 2, generator=generator)
    return coords.to(device)


def sample_video_points(masks: Tensor, point_coords: Tensor) -> Tensor:
    """Sample (Q, T, H, W) video masks at the same points in every frame.

    Args:
        masks: (Q, T, H, W) logits or {0, 1} masks; any float dtype.
        point_coords: (Q, P, 2) or (1, P, 2) normalised (x, y) in [0, 1] (align_corners=False).
    Returns:
        (Q, T * P) sampled values, frame after frame.
    """
    if masks.dim() != 4:
        raise ValueError(
            f"sample_video_points expects (Q, T, H, W) masks, got {tuple(masks.shape)}"
        )
    Q, T = masks.shape[:2]
    if point_coords.shape[0] == 1 and Q != 1:
        point_coords = point_coords.expand(Q, -1, -1)
    values = point_sample(masks, point_coords.to(masks.dtype), align_corners=False)  # (Q, T, P)
    return values.flatten(1)  # (Q, T, P) -> (Q, T*P)


def uncertain_video_point_coords(
    mask_logits: Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
) -> Tensor:
    """PointRend importance sampling for video masks: one point set per mask, shared by its frames.

    The uncertainty of a candidate point is that of the most uncertain frame (the T frames are
    sampled as channels and reduced by max).

    Args:
        mask_logits: (Q, T, H, W).
        num_points, oversample_ratio, importance_sample_ratio: as in PointRend.
    Returns:
        (Q, num_points, 2) normalised (x, y) coordinates.
    """

    def video_uncertainty(logits: Tensor) -> Tensor:  # (Q, T, P) -> (Q, 1, P)
        return -logits.abs().amin(dim=1, keepdim=True)

    return get_uncertain_point_coords_with_randomness(
        mask_logits, video_uncertainty, num_points, oversample_ratio, importance_sample_ratio
    )
