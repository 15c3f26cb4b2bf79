"""The losses of one K-Net stage (official ``KernelUpdateHead.loss`` / ``ConvKernelHead.loss`` with
the VIS config's weights), shared by the kernel head, the per-frame stages and the tracker stages.

Legend: B samples (frames for the per-frame stages, clips for the tracker), N kernels, K classes,
L mask pixels (h * w of a frame; T * h * w of a clip's masks concatenated over its frames), M
ground-truth objects, P positive (matched) kernels.

Per stage: sigmoid focal loss (alpha 0.25, gamma 2) x2 over every kernel (unmatched ones are
background), divided by the positive count (mean over workers, at least 1); binary cross-entropy x1,
the mean over every pixel of the positives' masks; V-Net dice x4 (eps 1e-3 on each sum of squares),
the mean over the positives. Without positives the mask losses are 0 (with a graph).

The kernel head adds a semantic loss (official ``ConvKernelHeadVideo.loss``, ``loss_rpn_seg``): its
``conv_seg`` logits (B, K, H, W) against a class map per frame, background everywhere but the
pixels of the matched objects' masks (any non-zero target value, as the official ``.bool()``),
painted in the order of their kernels (a later kernel's object wins where masks overlap); sigmoid
focal loss summed over every pixel and class, divided by the number of labelled pixels of the whole
batch (at least 1; not averaged over workers, as there).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from vis_core.modeling.losses import mean_over_workers, sigmoid_focal_loss, vnet_dice_loss

__all__ = ["kernel_stage_losses", "semantic_seg_loss"]


def kernel_stage_losses(
    cls_logits: Optional[Tensor],
    mask_logits: Tensor,
    indices: Sequence[Tuple[Tensor, Tensor]],
    labels: List[Tensor],
    masks: List[Tensor],
    *,
    class_weight: float = 2.0,
    mask_weight: float = 1.0,
    dice_weight: float = 4.0,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    dice_eps: float = 1e-3,
) -> Dict[str, Tensor]:
    """
    Args:
        cls_logits: (B, N, K) or None (no class loss: the kernel head, the tracker's last stage).
        mask_logits: (B, N, L) the stage's mask logits at the targets' resolution.
        indices: B pairs (kernels (m,), objects (m,)) of the assignment.
        labels: B tensors (M,) of the objects' classes.
        masks: B tensors (M, L) float mask targets (soft where resized).
    Returns:
        ``loss_cls`` (with ``cls_logits``), ``loss_mask``, ``loss_dice``, weighted.
    """
    B, N, L = mask_logits.shape
    device = mask_logits.device
    if not (len(indices) == len(labels) == len(masks) == B):
        raise ValueError(
            f"kernel_stage_losses: {B} samples of masks, {len(indices)} assignments, "
            f"{len(labels)} label and {len(masks)} mask targets"
        )
    pos_masks, pos_targets, pos_labels, pos_rows = [], [], [], []
    for b, (rows, cols) in enumerate(indices):
        rows, cols = rows.to(device), cols.to(device)
        pos_rows.append(b * N + rows)
        pos_masks.append(mask_logits[b, rows])
        pos_targets.append(masks[b][cols].to(mask_logits.dtype))
        pos_labels.append(labels[b][cols].to(device))
    rows = torch.cat(pos_rows)
    num_pos = rows.numel()
    avg = max(mean_over_workers(float(num_pos), device), 1.0)
    losses = {}
    if cls_logits is not None:
        K = cls_logits.shape[-1]
        target = torch.full((B * N,), K, dtype=torch.long, device=device)
        target[rows] = torch.cat(pos_labels)
        onehot = F.one_hot(target, K + 1)[:, :K].to(cls_logits.dtype)
        loss_cls = sigmoid_focal_loss(
            cls_logits.reshape(B * N, K), onehot, focal_alpha, focal_gamma, reduction="sum"
        )
        losses["loss_cls"] = class_weight * loss_cls / avg
    if num_pos == 0:
        zero = mask_logits.sum() * 0.0
        losses["loss_mask"], losses["loss_dice"] = zero, zero
        return losses
    pred, tgt = torch.cat(pos_masks), torch.cat(pos_targets)  # (P, L)
    losses["loss_mask"] = mask_weight * F.binary_cross_entropy_with_logits(pred, tgt)
    losses["loss_dice"] = dice_weight * vnet_dice_loss(pred.sigmoid(), tgt, num_pos, dice_eps)
    return losses


def semantic_seg_loss(
    seg_logits: Tensor,
    indices: Sequence[Tuple[Tensor, Tensor]],
    labels: List[Tensor],
    masks: List[Tensor],
    *,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
) -> Tensor:
    """The kernel head's semantic loss (module docstring), unweighted.

    Args:
        seg_logits: (B, K, H, W) semantic logits at the targets' resolution.
        indices: B pairs (kernels (m,), objects (m,)) of the kernel head's assignment.
        labels: B tensors (M,) of the objects' classes.
        masks: B tensors (M, H, W) of the objects' mask targets (soft where resized).
    """
    B, K, H, W = seg_logits.shape
    if not (len(indices) == len(labels) == len(masks) == B):
        raise ValueError(
            f"semantic_seg_loss: {B} frames of logits, {len(indices)} assignments, "
            f"{len(labels)} label and {len(masks)} mask targets"
        )
    target = torch.full((B, H, W), K, dtype=torch.long, device=seg_logits.device)
    for b, (rows, cols) in enumerate(indices):
        if masks[b].shape[-2:] != (H, W):
            raise ValueError(
                f"semantic_seg_loss: frame {b}'s masks are {tuple(masks[b].shape[-2:])}, the "
                f"logits {(H, W)}"
            )
        for col in cols[torch.argsort(rows)].tolist():  # in kernel order
            target[b][masks[b][col] > 0] = int(labels[b][col])
    onehot = F.one_hot(target.flatten(), K + 1)[:, :K].to(seg_logits.dtype)
    flat = seg_logits.permute(0, 2, 3, 1).reshape(-1, K)
    loss = sigmoid_focal_loss(flat, onehot, focal_alpha, focal_gamma, reduction="sum")
    return loss / (target < K).sum().clamp(min=1).to(loss.dtype)
