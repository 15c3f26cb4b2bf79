"""Mask and class losses shared by the criteria, and their pairwise forms used as matching costs.

Legend: N predictions, M targets, K points (or pixels) per mask, C classes.
Per-pair losses take (N, K) logits and (N, K) targets; pairwise costs take (N, K) logits and
(M, K) targets and return an (N, M) matrix whose entry (i, j) equals the loss of prediction i
against target j. Focal loss is fvcore's (the one detectron2 uses), re-exported here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.utils import comm
from fvcore.nn import sigmoid_focal_loss
from torch import Tensor

__all__ = [
    "dice_loss",
    "sigmoid_ce_loss",
    "sigmoid_focal_loss",
    "pairwise_dice_cost",
    "pairwise_knet_dice_cost",
    "pairwise_mask_agreement_cost",
    "pairwise_sigmoid_ce_cost",
    "pairwise_focal_class_cost",
    "vnet_dice_loss",
    "mean_over_workers",
]


def dice_loss(inputs: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Dice loss 1 - (2|p t| + 1) / (|p| + |t| + 1), summed over masks and divided by num_masks.

    Args:
        inputs: (N, K) mask logits.
        targets: (N, K) binary targets (float).
        num_masks: normaliser (e.g. the number of matched targets, averaged over workers).
    Returns:
        scalar loss.
    """
    probs = inputs.sigmoid().flatten(1)
    targets = targets.flatten(1)
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    loss = 1 - (numerator + 1) / (denominator + 1)
    return loss.sum() / num_masks


def sigmoid_ce_loss(inputs: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Binary cross-entropy on logits, averaged over the K points, summed over masks / num_masks.

    Args:
        inputs: (N, K) mask logits.
        targets: (N, K) binary targets (float).
    Returns:
        scalar loss.
    """
    loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    return loss.flatten(1).mean(1).sum() / num_masks


def pairwise_dice_cost(inputs: Tensor, targets: Tensor) -> Tensor:
    """Dice loss between every prediction and every target.

    Args:
        inputs: (N, K) mask logits.
        targets: (M, K) binary targets.
    Returns:
        (N, M) costs; entry (i, j) equals ``dice_loss(inputs[i:i+1], targets[j:j+1], 1)``.
    """
    probs = inputs.sigmoid().flatten(1)
    targets = targets.flatten(1).to(probs.dtype)
    numerator = 2 * torch.einsum("nk,mk->nm", probs, targets)
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def pairwise_sigmoid_ce_cost(inputs: Tensor, targets: Tensor) -> Tensor:
    """Mean binary cross-entropy between every prediction and every target.

    BCE(x, t) = t * softplus(-x) + (1 - t) * softplus(x), so the pairwise mean over K points is two
    matrix products.

    Args:
        inputs: (N, K) mask logits.
        targets: (M, K) binary targets.
    Returns:
        (N, M) costs; entry (i, j) equals ``sigmoid_ce_loss(inputs[i:i+1], targets[j:j+1], 1)``.
    """
    inputs = inputs.flatten(1)
    targets = targets.flatten(1).to(inputs.dtype)
    K = inputs.shape[1]
    pos = F.softplus(-inputs)  # -log(sigmoid(x))
    neg = F.softplus(inputs)  # -log(1 - sigmoid(x))
    cost = torch.einsum("nk,mk->nm", pos, targets) + torch.einsum("nk,mk->nm", neg, 1 - targets)
    return cost / max(K, 1)


def pairwise_knet_dice_cost(inputs: Tensor, targets: Tensor, eps: float = 1e-3) -> Tensor:
    """Video K-Net's ``DiceCost`` (``pred_act=True``, ``knet_vis/det/mask_hungarian_assigner.py``, the
    one its VIS config imports) between every prediction and every target:
    -2 sum(p t) / (sum(p^2) + eps + sum(t^2) + eps), p = sigmoid(x) (image K-Net's copy clamps p to
    [0.001, 1]; the VIS one does not; the constant 1 of a dice loss is left out, as there; it does
    not change a matching).

    Args:
        inputs: (N, K) mask logits.
        targets: (M, K) binary targets.
    Returns:
        (N, M) costs.
    """
    probs = inputs.float().flatten(1).sigmoid()
    targets = targets.flatten(1).to(probs.dtype)
    numerator = 2 * torch.einsum("nk,mk->nm", probs, targets)
    denominator = ((probs * probs).sum(-1) + eps)[:, None] + ((targets * targets).sum(-1) + eps)[
        None
    ]
    return -numerator / denominator


def pairwise_mask_agreement_cost(inputs: Tensor, targets: Tensor) -> Tensor:
    """Video K-Net's ``MaskCost`` (``pred_act=True``, ``knet_vis/det/mask_hungarian_assigner.py``)
    between every prediction and every target: minus the mean agreement p t + (1 - p)(1 - t) over
    the K pixels, p = sigmoid(x) (image K-Net's copy clamps p to [0.01, 1]; the VIS one does not).

    Args:
        inputs: (N, K) mask logits.
        targets: (M, K) binary targets.
    Returns:
        (N, M) costs.
    """
    probs = inputs.float().flatten(1).sigmoid()
    targets = targets.flatten(1).to(probs.dtype)
    pos = torch.einsum("nk,mk->nm", probs, targets)
    neg = torch.einsum("nk,mk->nm", 1 - probs, 1 - targets)
    return -(pos + neg) / max(probs.shape[1], 1)


def pairwise_focal_class_cost(
    logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Focal classification cost of assigning each prediction to each target's class (Deformable
    DETR): the focal loss of the target class being positive minus that of it being negative.

    Args:
        logits: (N, C) per-class sigmoid logits.
        labels: (M,) class indices in [0, C).
    Returns:
        (N, M) costs.
    """
    probs = logits.sigmoid()[:, labels]  # (N, M)
    neg_cost = (1 - alpha) * probs.pow(gamma) * F.softplus(logits[:, labels])
    pos_cost = alpha * (1 - probs).pow(gamma) * F.softplus(-logits[:, labels])
    return pos_cost - neg_cost


def vnet_dice_loss(probs: Tensor, targets: Tensor, avg_factor: float, eps: float = 1e-3) -> Tensor:
    """mmdet's ``DiceLoss`` (V-Net form) on probabilities: 1 - 2 sum(p t) / (sum(p^2) + sum(t^2) +
    2 eps) per mask, summed and divided by ``avg_factor`` + float32 epsilon (mmdet's reduction).

    Args:
        probs: (N, ...) mask probabilities (already activated, e.g. a sigmoid).
        targets: (N, ...) binary targets, same shape.
        avg_factor: normaliser (TeViT: the number of positive (query, frame) pairs, at least 1).
        eps: added to each of the two sums of squares (TeViT 1e-5, Video K-Net 1e-3).
    Returns:
        scalar loss.
    """
    if probs.shape != targets.shape:
        raise ValueError(
            f"vnet_dice_loss: probs {tuple(probs.shape)} and targets {tuple(targets.shape)} differ"
        )
    if probs.shape[0] == 0:
        return probs.sum() * 0.0
    probs = probs.flatten(1)
    targets = targets.flatten(1).to(probs.dtype)
    numerator = 2 * (probs * targets).sum(1)
    denominator = (probs * probs).sum(1) + eps + (targets * targets).sum(1) + eps
    loss = 1 - numerator / denominator
    return loss.sum() / (avg_factor + float(torch.finfo(torch.float32).eps))


def mean_over_workers(value: float, device: torch.device) -> float:
    """mmdet's ``reduce_mean`` of a count (e.g. the positives that normalise a loss): its mean over
    the training processes (the value itself in one process)."""
    world = comm.get_world_size()
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return float(t) / world
