"""VISOLO's losses: category focal loss, dice mask loss and the tracking (grid similarity) focal loss."""

from typing import List

import torch
from fvcore.nn import sigmoid_focal_loss

__all__ = ["category_loss", "dice_mask_loss", "tracking_loss"]


def category_loss(
    logits: torch.Tensor, targets: torch.Tensor, *, alpha: float, gamma: float
) -> torch.Tensor:
    """Sigmoid focal loss per frame, divided by the frame's positive cells, averaged over frames.

    Args:
        logits: (F, K, G) class logits of F frames.
        targets: (F, K, G) one-hot targets (all zero for a background cell).
    """
    loss = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="none")
    num_pos = targets.sum(dim=(1, 2)).clamp(min=1.0)  # (F,)
    return (loss.sum(dim=(1, 2)) / num_pos).mean()


def dice_mask_loss(
    pred_probs: List[torch.Tensor],
    gt_masks: List[torch.Tensor],
    frame_in_clip: List[int],
    *,
    eps: float,
    anchor: torch.Tensor,
) -> torch.Tensor:
    """Dice loss 1 - 2|P∩G| / (|P|^2 + |G|^2) over the positive cells, averaged as the official code:
    over cells in a frame, over clips for each clip position, then over clip positions.

    Args:
        pred_probs: per frame, (P_f, H, W) mask probabilities of its P_f positive cells.
        gt_masks: per frame, (P_f, H, W) the owning instances' masks.
        frame_in_clip: the position t within its clip of each frame.
        anchor: a tensor of the graph, used to return a connected zero when no cell is positive.
    """
    per_position = {}
    for probs, gt, t in zip(pred_probs, gt_masks, frame_in_clip):
        if probs.shape[0] == 0:
            continue
        inter = (probs * gt).sum(dim=(1, 2))
        denom = (probs**2).sum(dim=(1, 2)) + (gt**2).sum(dim=(1, 2))
        per_position.setdefault(t, []).append((1 - 2 * inter / (denom + eps)).mean())
    if not per_position:
        return anchor.sum() * 0.0
    return torch.stack([torch.stack(v).mean() for v in per_position.values()]).mean()


def tracking_loss(
    sim_logits: torch.Tensor, targets: torch.Tensor, *, alpha: float, gamma: float
) -> torch.Tensor:
    """Focal loss on the grid similarity, over the rows (query cells) that hold an instance.

    Args:
        sim_logits: (P, G, G) Sim of P frame pairs (query frame cells x reference frame cells).
        targets: (P, G, G) 1 where both cells belong to the same instance.
    Returns:
        The loss summed over the columns of a valid row, averaged over valid rows of a pair, then
        averaged over the pairs having a valid row (a connected zero when none has).
    """
    loss = sigmoid_focal_loss(sim_logits, targets, alpha=alpha, gamma=gamma, reduction="none")
    valid = (targets.sum(dim=2) > 0).float()  # (P, G)
    num_rows = valid.sum(dim=1)  # (P,)
    per_pair = (loss.sum(dim=2) * valid).sum(dim=1) / num_rows.clamp(min=1.0)
    num_pairs = (num_rows > 0).sum()
    if num_pairs == 0:
        return sim_logits.sum() * 0.0
    return per_pair.sum() / num_pairs
