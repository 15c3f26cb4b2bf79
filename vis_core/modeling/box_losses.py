"""Box losses of query-based detectors on matched (query, frame) pairs (TeViT, EfficientVIS, GMP-VIS).

Legend: P positive (query, frame) pairs. Boxes are absolute (x1, y1, x2, y2) in the frame's input
(resized, unpadded) pixels; ``image_whwh`` holds that frame's (W, H, W, H).

As mmdet's ``DIIHead.loss``: the L1 term compares the boxes divided by the image size and sums the 4
coordinates; the GIoU term is 1 - GIoU of the absolute boxes; both are summed over the pairs and
divided by ``avg_factor`` (the number of positive pairs, averaged over the workers) plus float32's
machine epsilon, so that a batch without positives gives 0 and keeps the graph.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss

__all__ = ["box_l1_loss", "box_giou_loss", "box_losses", "AVG_FACTOR_EPS"]

# mmdet's weight_reduce_loss adds this to avg_factor (no division by zero without positives).
AVG_FACTOR_EPS = float(torch.finfo(torch.float32).eps)


def _check(pred: Tensor, target: Tensor, name: str) -> None:
    if pred.shape != target.shape or pred.dim() != 2 or pred.shape[1] != 4:
        raise ValueError(
            f"{name}: pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be (P, 4)"
        )


def box_l1_loss(pred: Tensor, target: Tensor, image_whwh: Tensor, avg_factor: float) -> Tensor:
    """L1 between boxes normalised by their frame's size.

    Args:
        pred: (P, 4) predicted boxes, absolute (x1, y1, x2, y2).
        target: (P, 4) ground-truth boxes, same format.
        image_whwh: (P, 4) or (4,) each pair's (W, H, W, H).
        avg_factor: normaliser (number of positive pairs).
    Returns:
        scalar: sum |pred / whwh - target / whwh| / (avg_factor + eps).
    """
    _check(pred, target, "box_l1_loss")
    if pred.numel() == 0:
        return pred.sum() * 0.0
    image_whwh = image_whwh.to(pred).expand_as(pred)
    diff = (pred / image_whwh - target / image_whwh).abs()
    return diff.sum() / (avg_factor + AVG_FACTOR_EPS)


def box_giou_loss(pred: Tensor, target: Tensor, avg_factor: float) -> Tensor:
    """1 - GIoU of matched boxes (torchvision's ``generalized_box_iou_loss``).

    Args:
        pred: (P, 4) predicted boxes (x1, y1, x2, y2).
        target: (P, 4) ground-truth boxes.
        avg_factor: normaliser (number of positive pairs).
    Returns:
        scalar: sum (1 - GIoU) / (avg_factor + eps).
    """
    _check(pred, target, "box_giou_loss")
    if pred.numel() == 0:
        return pred.sum() * 0.0
    loss = generalized_box_iou_loss(pred.float(), target.float(), reduction="sum")
    return loss / (avg_factor + AVG_FACTOR_EPS)


def box_losses(
    pred: Tensor, target: Tensor, image_whwh: Tensor, avg_factor: float
) -> Tuple[Tensor, Tensor]:
    """(L1, GIoU) losses of :func:`box_l1_loss` and :func:`box_giou_loss`."""
    return box_l1_loss(pred, target, image_whwh, avg_factor), box_giou_loss(
        pred, target, avg_factor
    )
