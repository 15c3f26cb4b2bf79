"""Video-level Hungarian matching between predicted tracks and ground-truth tracks of a clip.

Legend: B clips, Q predicted tracks (queries), M ground-truth tracks, T frames, K classes,
P points. A track covers the T frames of a clip; an image is the case T = 1.

The cost of assigning prediction q to target m is
    cost_class * C_class + cost_mask * C_bce + cost_dice * C_dice
    + cost_box_l1 * C_l1 + cost_giou * C_giou,
where the mask costs compare the two (T, H, W) mask stacks at P random points shared by all frames
(Mask2Former-VIS: sigmoid BCE and dice) or whole, concatenated over the frames (Video K-Net's tracker:
``mask_cost_type="knet"``, K-Net's mask-agreement and dice costs), and the box costs are per-frame L1 / -GIoU averaged over the frames in which the
target is present (clip-level query methods such as EfficientVIS). L1 compares normalised
(cx, cy, w, h) or, as mmdet's ``BBoxL1Cost`` (TeViT), normalised (x1, y1, x2, y2). Class logits
come per track (Q, K) or per frame (Q, T, K); per-frame class costs are averaged over the frames
where the target is present, as TeViT's assigner averages each frame's whole cost.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn
from torchvision.ops import box_convert, generalized_box_iou

from vis_core.modeling.losses import (
    pairwise_dice_cost,
    pairwise_focal_class_cost,
    pairwise_knet_dice_cost,
    pairwise_mask_agreement_cost,
    pairwise_sigmoid_ce_cost,
)
from vis_core.modeling.point_sampling import sample_video_points

logger = logging.getLogger(__name__)

__all__ = ["VideoHungarianMatcher", "video_box_costs"]

_CLASS_COST_TYPES = ("softmax", "focal")


_L1_FORMATS = ("cxcywh", "xyxy")

_MASK_COST_TYPES = ("mask2former", "knet")


def _frame_average(cost: Tensor, valid: Tensor) -> Tensor:
    """(Q, M, T) per-frame costs -> (Q, M), averaged over the frames where the target is present."""
    weights = valid.float()  # (M, T)
    return (cost * weights[None]).sum(-1) / weights.sum(1).clamp_min(1.0)[None]


def video_box_costs(
    pred_boxes: Tensor, tgt_boxes: Tensor, valid: Tensor, l1_format: str = "cxcywh"
) -> Tuple[Tensor, Tensor]:
    """Per-frame L1 and -GIoU box costs, averaged over the frames where each target is present.

    Args:
        pred_boxes: (Q, T, 4) normalised (cx, cy, w, h).
        tgt_boxes: (M, T, 4) normalised (cx, cy, w, h); values in absent frames are ignored.
        valid: (M, T) bool, True where the target is present.
        l1_format: the coordinates L1 compares, "cxcywh" or "xyxy" (mmdet ``BBoxL1Cost``).
    Returns:
        l1 (Q, M) and giou (Q, M) costs (giou cost = -GIoU). A target present in no frame costs 0.
    """
    if l1_format not in _L1_FORMATS:
        raise ValueError(
            f"video_box_costs: l1_format must be one of {_L1_FORMATS}, got {l1_format!r}"
        )
    Q, T, _ = pred_boxes.shape
    M = tgt_boxes.shape[0]
    pred_boxes = pred_boxes.float()
    tgt_boxes = tgt_boxes.float()
    pred_xyxy = box_convert(pred_boxes.transpose(0, 1), "cxcywh", "xyxy")  # (T, Q, 4)
    tgt_xyxy = box_convert(tgt_boxes.transpose(0, 1), "cxcywh", "xyxy")  # (T, M, 4)
    if l1_format == "cxcywh":
        l1 = (pred_boxes[:, None] - tgt_boxes[None]).abs().sum(-1)  # (Q, M, T)
    else:
        l1 = (pred_xyxy.transpose(0, 1)[:, None] - tgt_xyxy.transpose(0, 1)[None]).abs().sum(-1)
    # absent frames may hold degenerate boxes; give them a valid unit box so GIoU stays finite
    unit = tgt_xyxy.new_tensor([0.0, 0.0, 1.0, 1.0])
    tgt_xyxy = torch.where(valid.t()[..., None], tgt_xyxy, unit)
    giou = torch.stack([generalized_box_iou(pred_xyxy[t], tgt_xyxy[t]) for t in range(T)], -1)
    return _frame_average(l1, valid), -_frame_average(giou.reshape(Q, M, T), valid)


class VideoHungarianMatcher(nn.Module):
    """One-to-one assignment of predicted tracks to ground-truth tracks, clip by clip.

    No gradient flows through the matcher. Used by every query-based method (Mask2Former-VIS,
    EfficientVIS, TeViT, Video K-Net); each builds it from its own config node (see ``from_config``).
    """

    @configurable
    def __init__(
        self,
        *,
        cost_class: float = 1.0,
        cost_mask: float = 1.0,
        cost_dice: float = 1.0,
        cost_box_l1: float = 0.0,
        cost_giou: float = 0.0,
        num_points: int = 12544,
        class_cost_type: str = "softmax",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        box_l1_format: str = "cxcywh",
        mask_cost_type: str = "mask2former",
    ):
        """
        Args:
            cost_class: weight of the classification cost.
            cost_mask: weight of the point-sampled sigmoid binary cross-entropy mask cost.
            cost_dice: weight of the point-sampled dice mask cost.
            cost_box_l1: weight of the frame-averaged L1 box cost (needs "pred_boxes" and "boxes").
            cost_giou: weight of the frame-averaged -GIoU box cost (same inputs).
            num_points: P, points sampled per clip, shared by all frames, predictions and targets;
                0 compares whole masks (the targets are resized to the predictions' size).
            class_cost_type: "softmax" (-p(class), logits carry a trailing no-object class) or
                "focal" (sigmoid focal cost as Deformable DETR, logits have K columns).
            focal_alpha, focal_gamma: focal cost parameters.
            box_l1_format: "cxcywh" (DETR) or "xyxy" (mmdet's ``BBoxL1Cost``, TeViT), both
                normalised by the image size.
            mask_cost_type: "mask2former" (``cost_mask`` = mean sigmoid BCE, ``cost_dice`` = dice
                with +1 smoothing) or "knet" (K-Net's ``MaskCost`` and ``DiceCost`` with
                ``pred_act``: minus the mean pixel agreement, minus the V-Net dice ratio; whole
                masks only, ``num_points`` 0).
        """
        super().__init__()
        if class_cost_type not in _CLASS_COST_TYPES:
            raise ValueError(
                f"VideoHungarianMatcher: class_cost_type must be one of {_CLASS_COST_TYPES}, "
                f"got {class_cost_type!r}"
            )
        weights = dict(
            cost_class=cost_class,
            cost_mask=cost_mask,
            cost_dice=cost_dice,
            cost_box_l1=cost_box_l1,
            cost_giou=cost_giou,
        )
        if any(w < 0 for w in weights.values()) or all(w == 0 for w in weights.values()):
            raise ValueError(f"VideoHungarianMatcher: weights must be >= 0, not all 0: {weights}")
        if box_l1_format not in _L1_FORMATS:
            raise ValueError(
                f"VideoHungarianMatcher: box_l1_format must be one of {_L1_FORMATS}, "
                f"got {box_l1_format!r}"
            )
        if num_points < 0:
            raise ValueError(f"VideoHungarianMatcher: num_points must be >= 0, got {num_points}")
        if mask_cost_type not in _MASK_COST_TYPES:
            raise ValueError(
                f"VideoHungarianMatcher: mask_cost_type must be one of {_MASK_COST_TYPES}, "
                f"got {mask_cost_type!r}"
            )
        if mask_cost_type == "knet" and num_points > 0:
            raise ValueError(
                "VideoHungarianMatcher: mask_cost_type 'knet' compares whole masks: num_points "
                f"must be 0, got {num_points}"
            )
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.cost_box_l1 = cost_box_l1
        self.cost_giou = cost_giou
        self.num_points = num_points
        self.class_cost_type = class_cost_type
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.box_l1_format = box_l1_format
        self.mask_cost_type = mask_cost_type

    @classmethod
    def from_config(cls, cfg, node: str = "MODEL.MASK_FORMER"):
        """Reads Mask2Former's key names under ``node``: CLASS_WEIGHT, MASK_WEIGHT, DICE_WEIGHT,
        TRAIN_NUM_POINTS, and where present BOX_L1_WEIGHT, GIOU_WEIGHT, CLASS_COST_TYPE,
        FOCAL_ALPHA, FOCAL_GAMMA, BOX_L1_FORMAT, MASK_COST_TYPE. Call as ``VideoHungarianMatcher(cfg, node="MODEL.MY_METHOD")``.
        """
        section = cfg
        for part in node.split("."):
            if part not in section:
                raise KeyError(
                    f"VideoHungarianMatcher.from_config: config has no node {node!r} "
                    f"(missing {part!r}); add the method's config first or pass node=..."
                )
            section = section[part]
        required = ("CLASS_WEIGHT", "MASK_WEIGHT", "DICE_WEIGHT", "TRAIN_NUM_POINTS")
        missing = [k for k in required if k not in section]
        if missing:
            raise KeyError(f"VideoHungarianMatcher.from_config: {node} lacks keys {missing}")
        return {
            "cost_class": section.CLASS_WEIGHT,
            "cost_mask": section.MASK_WEIGHT,
            "cost_dice": section.DICE_WEIGHT,
            "cost_box_l1": section.get("BOX_L1_WEIGHT", 0.0),
            "cost_giou": section.get("GIOU_WEIGHT", 0.0),
            "num_points": section.TRAIN_NUM_POINTS,
            "class_cost_type": section.get("CLASS_COST_TYPE", "softmax"),
            "focal_alpha": section.get("FOCAL_ALPHA", 0.25),
            "focal_gamma": section.get("FOCAL_GAMMA", 2.0),
            "box_l1_format": section.get("BOX_L1_FORMAT", "cxcywh"),
            "mask_cost_type": section.get("MASK_COST_TYPE", "mask2former"),
        }

    @property
    def uses_boxes(self) -> bool:
        return self.cost_box_l1 > 0 or self.cost_giou > 0

    def _class_cost(self, logits: Tensor, labels: Tensor) -> Tensor:
        """(Q, K[+1]) logits, (M,) labels -> (Q, M) class cost."""
        logits = logits.float()
        if self.class_cost_type == "softmax":
            return -logits.softmax(-1)[:, labels]
        return pairwise_focal_class_cost(logits, labels, self.focal_alpha, self.focal_gamma)

    @staticmethod
    def _valid(target: Dict[str, Tensor], M: int, T: int, device, clip_index: int) -> Tensor:
        """(M, T) bool presence of the targets: "valid", else non-empty masks, else all True."""
        valid = target.get("valid")
        if valid is None and "masks" in target:
            valid = target["masks"].flatten(2).any(-1)
        if valid is None:
            valid = torch.ones((M, T), dtype=torch.bool)
        if tuple(valid.shape) != (M, T):
            raise ValueError(
                f"VideoHungarianMatcher: targets[{clip_index}]['valid'] must be (M, T) = ({M}, {T}), "
                f"got {tuple(valid.shape)}"
            )
        return valid.to(device=device, dtype=torch.bool)

    @torch.no_grad()
    def cost_matrix(
        self,
        pred_logits: Tensor,
        pred_masks: Optional[Tensor],
        target: Dict[str, Tensor],
        pred_boxes: Optional[Tensor] = None,
        *,
        clip_index: int = 0,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """The (Q, M) cost matrix of one clip.

        Args:
            pred_logits: (Q, K + 1) for "softmax", (Q, K) for "focal"; or per frame (Q, T, K + 1)
                / (Q, T, K), whose class costs are averaged over the target's present frames.
            pred_masks: (Q, T, H, W) mask logits.
            target: {"labels": (M,), "masks": (M, T, H', W'), optional "boxes": (M, T, 4),
                optional "valid": (M, T) bool}.
            pred_boxes: optional (Q, T, 4) normalised (cx, cy, w, h).
            clip_index: used in error messages.
            generator: optional generator for the random points (CPU).
        Returns:
            (Q, M) float32 costs.
        """
        labels = target["labels"]
        Q = pred_logits.shape[0]
        M = labels.shape[0]
        cost = pred_logits.new_zeros(Q, M, dtype=torch.float32)
        if M == 0:
            return cost
        if (
            labels.dtype not in (torch.int64, torch.int32)
            or int(labels.max())
            >= (pred_logits.shape[-1] - (1 if self.class_cost_type == "softmax" else 0))
            or int(labels.min()) < 0
        ):
            raise ValueError(
                f"VideoHungarianMatcher: targets[{clip_index}]['labels'] must be integer classes in "
                f"[0, K) for pred_logits of shape {tuple(pred_logits.shape)} "
                f"({self.class_cost_type}); got {labels.tolist()}"
            )
        if pred_logits.dim() not in (2, 3):
            raise ValueError(
                f"VideoHungarianMatcher: pred_logits of clip {clip_index} must be (Q, K) or "
                f"(Q, T, K), got {tuple(pred_logits.shape)}"
            )
        if self.cost_class > 0:
            if pred_logits.dim() == 2:
                cost = cost + self.cost_class * self._class_cost(pred_logits, labels)
            else:
                T = pred_logits.shape[1]
                valid = self._valid(target, M, T, pred_logits.device, clip_index)
                frame_costs = torch.stack(
                    [self._class_cost(pred_logits[:, t], labels) for t in range(T)], -1
                )  # (Q, M, T)
                cost = cost + self.cost_class * _frame_average(frame_costs, valid)

        if self.cost_mask > 0 or self.cost_dice > 0:
            if pred_masks is None or "masks" not in target:
                raise KeyError(
                    f"VideoHungarianMatcher: mask costs need outputs['pred_masks'] and "
                    f"targets[{clip_index}]['masks']"
                )
            tgt_masks = target["masks"].to(device=pred_masks.device, dtype=torch.float32)
            if tgt_masks.dim() != 4 or tgt_masks.shape[:2] != (M, pred_masks.shape[1]):
                raise ValueError(
                    f"VideoHungarianMatcher: targets[{clip_index}]['masks'] must be (M, T, H, W) = "
                    f"({M}, {pred_masks.shape[1]}, H, W) to match pred_masks "
                    f"{tuple(pred_masks.shape)}, got {tuple(tgt_masks.shape)}"
                )
            if self.num_points > 0:
                coords = torch.rand(1, self.num_points, 2, generator=generator)
                coords = coords.to(pred_masks.device)
                pred_pts = sample_video_points(pred_masks.float(), coords)  # (Q, T*P)
                tgt_pts = sample_video_points(tgt_masks, coords)  # (M, T*P)
            else:
                size = pred_masks.shape[-2:]
                tgt_pts = F.interpolate(tgt_masks, size=size, mode="nearest").flatten(1)
                pred_pts = pred_masks.float().flatten(1)
            knet = self.mask_cost_type == "knet"
            if self.cost_mask > 0:
                mask_cost = pairwise_mask_agreement_cost if knet else pairwise_sigmoid_ce_cost
                cost = cost + self.cost_mask * mask_cost(pred_pts, tgt_pts)
            if self.cost_dice > 0:
                dice_cost = pairwise_knet_dice_cost if knet else pairwise_dice_cost
                cost = cost + self.cost_dice * dice_cost(pred_pts, tgt_pts)

        if self.uses_boxes:
            if pred_boxes is None or "boxes" not in target:
                raise KeyError(
                    "VideoHungarianMatcher: cost_box_l1/cost_giou > 0 need outputs['pred_boxes'] "
                    f"and targets[{clip_index}]['boxes'] (normalised cx, cy, w, h)"
                )
            tgt_boxes = target["boxes"].to(pred_boxes.device)
            if tgt_boxes.shape != (M, pred_boxes.shape[1], 4):
                raise ValueError(
                    f"VideoHungarianMatcher: targets[{clip_index}]['boxes'] must be (M, T, 4) with "
                    f"M={M}, T={pred_boxes.shape[1]}; got {tuple(tgt_boxes.shape)}"
                )
            valid = self._valid(target, M, pred_boxes.shape[1], pred_boxes.device, clip_index)
            cost_l1, cost_giou = video_box_costs(pred_boxes, tgt_boxes, valid, self.box_l1_format)
            cost = cost + self.cost_box_l1 * cost_l1 + self.cost_giou * cost_giou

        if not torch.isfinite(cost).all():
            raise FloatingPointError(
                f"VideoHungarianMatcher: non-finite matching cost for clip {clip_index} "
                "(NaN/inf in the predictions?)"
            )
        return cost

    @torch.no_grad()
    def forward(
        self,
        outputs: Dict[str, Tensor],
        targets: Sequence[Dict[str, Tensor]],
        *,
        generator: Optional[torch.Generator] = None,
    ) -> List[Tuple[Tensor, Tensor]]:
        """
        Args:
            outputs: {"pred_logits": (B, Q, K + 1) or (B, Q, K) (or per frame (B, Q, T, K[+1])),
                "pred_masks": (B, Q, T, H, W),
                optional "pred_boxes": (B, Q, T, 4) normalised (cx, cy, w, h)}.
            targets: B dicts with "labels" (M,), "masks" (M, T, H', W'), optional "boxes"
                (M, T, 4) and "valid" (M, T) bool (default: mask not empty in that frame).
            generator: optional CPU generator for the random points (reproducible matching).
        Returns:
            B pairs (pred_idx, tgt_idx) of int64 tensors of length min(Q, M), pred_idx ascending:
            prediction pred_idx[k] is assigned to target tgt_idx[k].
        """
        pred_logits = outputs["pred_logits"]
        pred_masks = outputs.get("pred_masks")
        pred_boxes = outputs.get("pred_boxes")
        B = pred_logits.shape[0]
        if len(targets) != B:
            raise ValueError(
                f"VideoHungarianMatcher: {len(targets)} targets for {B} clips of predictions"
            )
        indices = []
        for b, target in enumerate(targets):
            cost = self.cost_matrix(
                pred_logits[b],
                None if pred_masks is None else pred_masks[b],
                target,
                None if pred_boxes is None else pred_boxes[b],
                clip_index=b,
                generator=generator,
            )
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            indices.append(
                (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
            )
        return indices

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, cost_dice={self.cost_dice}, "
            f"cost_box_l1={self.cost_box_l1}, cost_giou={self.cost_giou}, "
            f"num_points={self.num_points}, class_cost_type={self.class_cost_type!r}, "
            f"box_l1_format={self.box_l1_format!r}"
        )
