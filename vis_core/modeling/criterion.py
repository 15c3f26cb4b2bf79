"""The set criterion of query-based video instance segmentation (Mask2Former-VIS and its kin).

Legend: B clips, Q queries, K classes, T frames, H, W mask size, M ground-truth instances of a clip,
N matched instances of the batch, P sampled points.

Each query predicts one instance over the whole clip: class logits (K+1, the last "no object") and a
T x H x W mask tube. A matcher (``vis_core.matching``) assigns queries to ground-truth instances; the
criterion then computes

* ``loss_ce``: cross-entropy on the classes of all queries (unmatched ones -> "no object", whose
  weight is ``eos_coef``), averaged with those class weights;
* ``loss_mask`` and ``loss_dice``: sigmoid BCE and dice of each matched tube, frame by frame, on
  ``num_points`` points per frame chosen by uncertainty importance sampling (PointRend), summed over
  frames and divided by the number of ground-truth instances of the batch (all workers together);
* ``loss_bbox`` and ``loss_giou`` (with "boxes" in ``losses``; VisTR, GMP-VIS): L1 of the normalised
  (cx, cy, w, h) boxes and 1 - GIoU of each matched track in each frame where its target is present,
  summed and divided by the number of such (track, frame) pairs of the batch (all workers together);
* the same for every entry of ``outputs["aux_outputs"]`` (deep supervision), suffixed ``_<i>``.

Losses come back already multiplied by their weights; terms without a weight are dropped. An image
model is the case T = 1.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.utils.comm import get_world_size
from torch import Tensor, nn
from torchvision.ops import box_convert, generalized_box_iou_loss

from .losses import dice_loss, sigmoid_ce_loss
from .point_sampling import (
    calculate_uncertainty,
    get_uncertain_point_coords_with_randomness,
    point_sample,
)

__all__ = ["VideoSetCriterion"]


class VideoSetCriterion(nn.Module):
    """Hungarian-matched class + point-sampled mask losses for query-based video models."""

    def __init__(
        self,
        num_classes: int,
        *,
        matcher: Callable[
            [Dict[str, Tensor], List[Dict[str, Tensor]]], List[Tuple[Tensor, Tensor]]
        ],
        weight_dict: Dict[str, float],
        eos_coef: float = 0.1,
        losses: Sequence[str] = ("labels", "masks"),
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
    ):
        """
        Args:
            num_classes: K (without "no object").
            matcher: called as ``matcher(outputs, targets)`` with ``outputs`` {"pred_logits":
                (B, Q, K+1), "pred_masks": (B, Q, T, H, W)} and ``targets`` a list of B dicts
                {"labels": (M,), "masks": (M, T, H', W')}; returns B pairs (pred_idx, tgt_idx).
            weight_dict: weight of each loss name; "loss_ce", "loss_mask", "loss_dice" and the
                ``_<i>`` suffixed names of the auxiliary outputs. Names not listed are dropped.
            eos_coef: class weight of "no object" in the cross-entropy.
            losses: which of "labels", "masks" and "boxes" to compute ("boxes" needs
                ``pred_boxes`` (B, Q, T, 4) and targets' ``boxes`` (M, T, 4), both normalised
                (cx, cy, w, h), and ``valid`` (M, T)).
            num_points: P, points per frame for the mask losses.
            oversample_ratio, importance_sample_ratio: PointRend's importance sampling (3, 0.75).
        """
        super().__init__()
        unknown = set(losses) - {"labels", "masks", "boxes"}
        if unknown:
            raise ValueError(f"VideoSetCriterion: unknown losses {sorted(unknown)}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.eos_coef = eos_coef
        self.losses = tuple(losses)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    @staticmethod
    def aux_weight_dict(weight_dict: Dict[str, float], num_aux: int) -> Dict[str, float]:
        """``weight_dict`` extended with the ``_<i>`` names of ``num_aux`` auxiliary outputs."""
        out = dict(weight_dict)
        for i in range(num_aux):
            out.update({f"{k}_{i}": v for k, v in weight_dict.items()})
        return out

    def _check(self, outputs: Dict[str, Tensor], targets: List[Dict[str, Tensor]]) -> None:
        logits, masks = outputs["pred_logits"], outputs["pred_masks"]
        if logits.dim() != 3 or logits.shape[-1] != self.num_classes + 1:
            raise ValueError(
                f"VideoSetCriterion: pred_logits must be (B, Q, {self.num_classes + 1}), "
                f"got {tuple(logits.shape)}"
            )
        if masks.dim() != 5 or masks.shape[:2] != logits.shape[:2]:
            raise ValueError(
                f"VideoSetCriterion: pred_masks must be (B, Q, T, H, W) with (B, Q) = "
                f"{tuple(logits.shape[:2])}, got {tuple(masks.shape)}"
            )
        if len(targets) != logits.shape[0]:
            raise ValueError(
                f"VideoSetCriterion: {len(targets)} targets for {logits.shape[0]} clips"
            )
        T = masks.shape[2]
        for b, t in enumerate(targets):
            m = t["masks"]
            if m.dim() != 4 or m.shape[1] != T or m.shape[0] != t["labels"].shape[0]:
                raise ValueError(
                    f"VideoSetCriterion: target {b} masks must be (M, {T}, H, W) with M = "
                    f"{t['labels'].shape[0]} labels, got {tuple(m.shape)}"
                )
            if t["labels"].numel() and (
                t["labels"].min() < 0 or t["labels"].max() >= self.num_classes
            ):
                raise ValueError(
                    f"VideoSetCriterion: target {b} labels {t['labels'].tolist()} outside "
                    f"[0, {self.num_classes})"
                )
        if "boxes" in self.losses:
            boxes = outputs.get("pred_boxes")
            if boxes is None or boxes.shape != (*masks.shape[:3], 4):
                raise ValueError(
                    "VideoSetCriterion: the 'boxes' losses need pred_boxes (B, Q, T, 4) = "
                    f"{(*masks.shape[:3], 4)}, got "
                    f"{None if boxes is None else tuple(boxes.shape)}"
                )
            for b, t in enumerate(targets):
                M = t["labels"].shape[0]
                if "boxes" not in t or "valid" not in t:
                    raise KeyError(
                        f"VideoSetCriterion: target {b} needs 'boxes' and 'valid' for the box losses"
                    )
                if t["boxes"].shape != (M, T, 4) or t["valid"].shape != (M, T):
                    raise ValueError(
                        f"VideoSetCriterion: target {b} boxes must be ({M}, {T}, 4) and valid "
                        f"({M}, {T}), got {tuple(t['boxes'].shape)} and {tuple(t['valid'].shape)}"
                    )

    def loss_labels(self, outputs, targets, indices, num_masks) -> Dict[str, Tensor]:
        """Cross-entropy over the K+1 classes of every query."""
        logits = outputs["pred_logits"]  # (B, Q, K+1)
        target_classes = torch.full(
            logits.shape[:2], self.num_classes, dtype=torch.long, device=logits.device
        )
        batch_idx, src_idx = self._src_permutation(indices)
        target_classes[batch_idx, src_idx] = torch.cat(
            [t["labels"][j] for t, (_, j) in zip(targets, indices)]
        ).to(logits.device)
        loss = F.cross_entropy(
            logits.transpose(1, 2).float(), target_classes, self.empty_weight.to(logits.device)
        )
        return {"loss_ce": loss}

    def loss_masks(self, outputs, targets, indices, num_masks) -> Dict[str, Tensor]:
        """Point-sampled sigmoid BCE and dice of the matched mask tubes, frame by frame."""
        batch_idx, src_idx = self._src_permutation(indices)
        pred = outputs["pred_masks"]
        src = pred[batch_idx, src_idx]  # (N, T, H, W)
        if src.shape[0] == 0:  # no ground truth in the batch: zero losses that keep the graph
            zero = pred.sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero}
        tgt = torch.cat([t["masks"][j] for t, (_, j) in zip(targets, indices)]).to(src)
        src = src.flatten(0, 1)[:, None]  # (N, T, H, W) -> (N*T, 1, H, W)
        tgt = tgt.flatten(0, 1)[:, None]  # (N, T, H', W') -> (N*T, 1, H', W')
        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                src.float(),
                calculate_uncertainty,
                self.num_points,
                self.oversample_ratio,
                self.importance_sample_ratio,
            )  # (N*T, P, 2)
            labels = point_sample(tgt, coords, align_corners=False).squeeze(1)  # (N*T, P)
        logits = point_sample(src.float(), coords, align_corners=False).squeeze(1)  # (N*T, P)
        return {
            "loss_mask": sigmoid_ce_loss(logits, labels, num_masks),
            "loss_dice": dice_loss(logits, labels, num_masks),
        }

    def loss_boxes(self, outputs, targets, indices, num_masks) -> Dict[str, Tensor]:
        """L1 and 1 - GIoU of the matched tracks' boxes in the frames where the target is present."""
        batch_idx, src_idx = self._src_permutation(indices)
        pred = outputs["pred_boxes"][batch_idx, src_idx].float()  # (N, T, 4)
        tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(pred)
        valid = torch.cat([t["valid"][j] for t, (_, j) in zip(targets, indices)]).to(pred.device)
        pred, tgt = pred[valid], tgt[valid]  # (P, 4) present (track, frame) pairs
        num_boxes = self._count(float(valid.sum()), pred.device)
        if pred.shape[0] == 0:
            zero = outputs["pred_boxes"].sum() * 0.0
            return {"loss_bbox": zero, "loss_giou": zero}
        giou = generalized_box_iou_loss(
            box_convert(pred, "cxcywh", "xyxy"), box_convert(tgt, "cxcywh", "xyxy"), reduction="sum"
        )
        return {
            "loss_bbox": (pred - tgt).abs().sum() / num_boxes,
            "loss_giou": giou / num_boxes,
        }

    @staticmethod
    def _src_permutation(indices: List[Tuple[Tensor, Tensor]]) -> Tuple[Tensor, Tensor]:
        batch_idx = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)])
        src_idx = torch.cat([src for src, _ in indices])
        return batch_idx.long(), src_idx.long()

    def _num_masks(self, targets: List[Dict[str, Tensor]], device) -> float:
        return self._count(float(sum(len(t["labels"]) for t in targets)), device)

    @staticmethod
    def _count(value: float, device) -> float:
        """A normaliser: ``value`` averaged over the workers, at least 1."""
        num = torch.as_tensor([value], dtype=torch.float, device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(num)
        return torch.clamp(num / get_world_size(), min=1).item()

    def _losses_of(self, outputs, targets, num_masks) -> Dict[str, Tensor]:
        matched = {"pred_logits": outputs["pred_logits"], "pred_masks": outputs["pred_masks"]}
        if "pred_boxes" in outputs:
            matched["pred_boxes"] = outputs["pred_boxes"]
        indices = self.matcher(matched, targets)
        losses = {}
        if "labels" in self.losses:
            losses.update(self.loss_labels(outputs, targets, indices, num_masks))
        if "masks" in self.losses:
            losses.update(self.loss_masks(outputs, targets, indices, num_masks))
        if "boxes" in self.losses:
            losses.update(self.loss_boxes(outputs, targets, indices, num_masks))
        return losses, indices

    def forward(
        self,
        outputs: Dict[str, object],
        targets: List[Dict[str, Tensor]],
        return_indices: bool = False,
    ):
        """
        Args:
            outputs: "pred_logits" (B, Q, K+1), "pred_masks" (B, Q, T, H, W), optionally
                "pred_boxes" (B, Q, T, 4) and "aux_outputs", a list of dicts with the same keys.
            targets: B dicts {"labels": (M,) long in [0, K), "masks": (M, T, H', W') float/bool,
                with "boxes": "boxes" (M, T, 4) normalised (cx, cy, w, h) and "valid" (M, T)}.
            return_indices: also return the matching of the final output.
        Returns:
            dict of weighted scalar losses (and the B (pred_idx, tgt_idx) pairs of the matcher).
        """
        self._check(outputs, targets)
        num_masks = self._num_masks(targets, outputs["pred_logits"].device)
        losses, indices = self._losses_of(outputs, targets, num_masks)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            aux_losses, _ = self._losses_of(aux, targets, num_masks)
            losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
        losses = {k: v * self.weight_dict[k] for k, v in losses.items() if k in self.weight_dict}
        return (losses, indices) if return_indices else losses
