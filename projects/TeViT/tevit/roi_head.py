"""TeViT's query head: learned proposals refined by 6 stages of RoIAlign + STQI + dynamic conv.

Legend: B clips, T frames, F = B * T frames (clip-major), N queries, C channels, K classes,
M ground-truth tracks of a clip, P positive (query, frame) pairs, S RoI size.

Training (official ``TeViTRoIHead.forward_train``): at every stage the detached class scores and
refined boxes of each clip are matched to its ground-truth tracks once (costs averaged over each
track's present frames); a matched query is a positive in the frames where its track is present
and background elsewhere. Losses per stage: sigmoid focal (all F * N pairs), L1 on boxes divided by
the frame size and GIoU (positives), V-Net dice of the label channel of the mask head run on the
positives' detached boxes; all normalised by the number of positive pairs (averaged over workers).
Boxes feed the next stage detached; the first stage's refinement reaches the learned proposals.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.structures import BitMasks
from detectron2.utils import comm
from torch import Tensor, nn
from torchvision.ops import box_convert

from vis_core.layers import MultiLevelRoIAlign
from vis_core.matching import VideoHungarianMatcher
from vis_core.modeling.box_coder import DeltaXYWHBoxCoder
from vis_core.modeling.box_losses import AVG_FACTOR_EPS, box_giou_loss, box_l1_loss
from vis_core.modeling.losses import sigmoid_focal_loss, vnet_dice_loss
from vis_core.modeling.query_inst import DIIHead, DynamicMaskHead

__all__ = ["TeViTRoIHead"]


def _mean_over_workers(value: float, device: torch.device) -> float:
    """mmdet's ``reduce_mean`` of a count: its mean over the training processes."""
    world = comm.get_world_size()
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return float(t) / world


class TeViTRoIHead(nn.Module):
    """``bbox_head.{0..S-1}`` (:class:`DIIHead`) and ``mask_head.{0..S-1}``
    (:class:`DynamicMaskHead`), with their RoI extractors, box coder and matcher."""

    def __init__(
        self,
        *,
        num_classes: int,
        matcher: VideoHungarianMatcher,
        num_stages: int = 6,
        hidden_dim: int = 256,
        num_heads: int = 8,
        dim_feedforward: int = 2048,
        dynamic_dim: int = 64,
        num_cls_fcs: int = 1,
        num_reg_fcs: int = 3,
        dropout: float = 0.0,
        interaction: str = "stqi",
        box_roi_size: int = 7,
        mask_roi_size: int = 14,
        roi_sampling_ratio: int = 2,
        roi_finest_scale: float = 56.0,
        roi_level_mapping: str = "mmdet",
        strides: Sequence[int] = (4, 8, 16, 32),
        num_mask_convs: int = 4,
        delta_means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
        delta_stds: Sequence[float] = (0.5, 0.5, 1.0, 1.0),
        class_weight: float = 2.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        box_l1_weight: float = 5.0,
        giou_weight: float = 2.0,
        mask_weight: float = 8.0,
        dice_eps: float = 1e-5,
        stage_loss_weights: Sequence[float] = (1.0,) * 6,
    ):
        """See ``tevit/config.py`` for the meaning of each argument (``MODEL.TEVIT.*``)."""
        super().__init__()
        if num_stages < 1 or len(stage_loss_weights) != num_stages:
            raise ValueError(
                f"TeViT: NUM_STAGES ({num_stages}) must be >= 1 and STAGE_LOSS_WEIGHTS "
                f"({list(stage_loss_weights)}) have one entry per stage"
            )
        if matcher.cost_mask > 0 or matcher.cost_dice > 0:
            raise ValueError("TeViT: the matcher uses class and box costs only (no mask costs)")
        self.num_classes = num_classes
        self.num_stages = num_stages
        self.hidden_dim = hidden_dim
        self.bbox_head = nn.ModuleList(
            DIIHead(
                num_classes,
                in_channels=hidden_dim,
                num_heads=num_heads,
                feedforward_channels=dim_feedforward,
                num_cls_fcs=num_cls_fcs,
                num_reg_fcs=num_reg_fcs,
                dynamic_feat_channels=dynamic_dim,
                roi_feat_size=box_roi_size,
                dropout=dropout,
                interaction=interaction,
            )
            for _ in range(num_stages)
        )
        self.mask_head = nn.ModuleList(
            DynamicMaskHead(
                num_classes,
                in_channels=hidden_dim,
                conv_out_channels=hidden_dim,
                num_convs=num_mask_convs,
                roi_feat_size=mask_roi_size,
                dynamic_feat_channels=dynamic_dim,
            )
            for _ in range(num_stages)
        )
        self.bbox_roi_extractor = MultiLevelRoIAlign(
            box_roi_size, strides, roi_sampling_ratio, roi_finest_scale, roi_level_mapping
        )
        self.mask_roi_extractor = MultiLevelRoIAlign(
            mask_roi_size, strides, roi_sampling_ratio, roi_finest_scale, roi_level_mapping
        )
        self.box_coder = DeltaXYWHBoxCoder(delta_means, delta_stds)
        self.matcher = matcher
        self.mask_size = 2 * mask_roi_size
        self.class_weight = class_weight
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.box_l1_weight = box_l1_weight
        self.giou_weight = giou_weight
        self.mask_weight = mask_weight
        self.dice_eps = dice_eps
        self.stage_loss_weights = tuple(float(w) for w in stage_loss_weights)

    # ------------------------------------------------------------------ stages
    def run_stage(
        self, stage: int, features: List[Tensor], boxes: Tensor, queries: Tensor, num_frames: int
    ) -> Dict[str, Tensor]:
        """One refinement stage.

        Args:
            features: FPN maps (F, C, H_l, W_l), finest first.
            boxes: (F, N, 4) absolute (x1, y1, x2, y2) in each frame's input pixels.
            queries: (F, N, C).
            num_frames: T.
        Returns:
            {"cls": (F, N, K) logits, "boxes": (F, N, 4) refined (differentiable in the deltas and
            ``boxes``), "queries": (F, N, C) for the next stage, "attn": (F, N, C) after the query
            interaction (drives the mask head)}.
        """
        rois = self.bbox_roi_extractor(features, list(boxes.detach()))  # (F*N, C, S, S)
        cls, delta, obj, attn = self.bbox_head[stage](rois, queries, num_frames)
        refined = self.box_coder.decode(boxes, delta)
        return {"cls": cls, "boxes": refined, "queries": obj, "attn": attn}

    def mask_logits(
        self, stage: int, features: List[Tensor], boxes: List[Tensor], attn: Tensor
    ) -> Tensor:
        """Mask head of ``stage`` on RoIs.

        Args:
            boxes: F tensors (R_f, 4), the RoIs of each frame.
            attn: (R, C) the interaction output of each RoI's query, frames in order.
        Returns:
            (R, K, 2S, 2S) logits.
        """
        rois = self.mask_roi_extractor(features, [b.detach() for b in boxes])
        return self.mask_head[stage](rois, attn)

    def forward_inference(
        self, features: List[Tensor], boxes: Tensor, queries: Tensor, num_frames: int
    ) -> Dict[str, Tensor]:
        """All stages without losses; returns the last stage's outputs (see :meth:`run_stage`)."""
        out = {}
        for stage in range(self.num_stages):
            out = self.run_stage(stage, features, boxes, queries, num_frames)
            boxes, queries = out["boxes"].detach(), out["queries"]
        return out

    # ---------------------------------------------------------------- training
    def forward_train(
        self,
        features: List[Tensor],
        boxes: Tensor,
        queries: Tensor,
        image_whwh: Tensor,
        num_frames: int,
        targets: List[Dict[str, Tensor]],
    ) -> Dict[str, Tensor]:
        """
        Args:
            features: FPN maps (F, C, H_l, W_l).
            boxes: (F, N, 4) the learned proposals in each frame's input pixels.
            queries: (F, N, C) the proposal features.
            image_whwh: (F, 4) each frame's (W, H, W, H).
            num_frames: T.
            targets: B dicts: "labels" (M,), "boxes" (M, T, 4) absolute (x1, y1, x2, y2), "valid"
                (M, T) bool, "masks" (M, T, H, W) bool at the padded input size (zeros in the
                padding, as mmdet pads the masks with the images).
        Returns:
            ``stage{s}_loss_{cls,bbox,iou,mask}`` for every stage, weighted.
        """
        F_, N, _ = boxes.shape
        if F_ != len(targets) * num_frames:
            raise ValueError(f"TeViT: {F_} frames for {len(targets)} clips of {num_frames} frames")
        losses = {}
        for stage in range(self.num_stages):
            out = self.run_stage(stage, features, boxes, queries, num_frames)
            stage_losses = self.stage_losses(stage, features, out, image_whwh, num_frames, targets)
            weight = self.stage_loss_weights[stage]
            losses.update({f"stage{stage}_{k}": v * weight for k, v in stage_losses.items()})
            boxes, queries = out["boxes"].detach(), out["queries"]
        return losses

    def _positives(
        self, out: Dict[str, Tensor], image_whwh: Tensor, num_frames: int, targets
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Match each clip once; (frame, query, clip, track) indices of the positive pairs, in
        frame order."""
        F_, N, K = out["cls"].shape
        T = num_frames
        B = F_ // T
        logits = out["cls"].detach().view(B, T, N, K).transpose(1, 2)  # (B, N, T, K)
        norm = out["boxes"].detach() / image_whwh[:, None]  # (F, N, 4) normalised xyxy
        pred_boxes = box_convert(norm, "xyxy", "cxcywh").view(B, T, N, 4).transpose(1, 2)
        match_targets = []
        for b, t in enumerate(targets):
            tgt = box_convert(t["boxes"].to(norm) / image_whwh[b * T], "xyxy", "cxcywh")
            match_targets.append({"labels": t["labels"], "boxes": tgt, "valid": t["valid"]})
        indices = self.matcher({"pred_logits": logits, "pred_boxes": pred_boxes}, match_targets)
        frames, queries, clips, tracks = [], [], [], []
        for b, (rows, cols) in enumerate(indices):
            if rows.numel() == 0:
                continue
            valid = targets[b]["valid"][cols.to(targets[b]["valid"].device)].cpu()  # (m, T)
            m_idx, t_idx = valid.nonzero(as_tuple=True)
            frames.append(b * T + t_idx)
            queries.append(rows[m_idx])
            clips.append(torch.full_like(t_idx, b))
            tracks.append(cols[m_idx])
        if not frames:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty, empty, empty
        frames, queries, clips, tracks = (torch.cat(x) for x in (frames, queries, clips, tracks))
        order = torch.argsort(frames * N + queries)
        return frames[order], queries[order], clips[order], tracks[order]

    def stage_losses(
        self,
        stage: int,
        features: List[Tensor],
        out: Dict[str, Tensor],
        image_whwh: Tensor,
        num_frames: int,
        targets: List[Dict[str, Tensor]],
    ) -> Dict[str, Tensor]:
        """Unweighted-by-stage losses of one stage (see the module docstring)."""
        cls = out["cls"]
        F_, N, K = cls.shape
        device = cls.device
        frames, queries, clips, tracks = self._positives(out, image_whwh, num_frames, targets)
        frames_d, queries_d = frames.to(device), queries.to(device)
        num_pos = frames.numel()
        avg = _mean_over_workers(float(num_pos), device)
        labels = torch.full((F_, N), K, dtype=torch.long, device=device)
        pos_labels = (
            torch.stack(
                [targets[c]["labels"][m] for c, m in zip(clips.tolist(), tracks.tolist())]
            ).to(device)
            if num_pos
            else torch.zeros(0, dtype=torch.long, device=device)
        )
        labels[frames_d, queries_d] = pos_labels
        onehot = F.one_hot(labels.flatten(), K + 1)[:, :K].to(cls.dtype)
        loss_cls = sigmoid_focal_loss(
            cls.flatten(0, 1), onehot, self.focal_alpha, self.focal_gamma, reduction="sum"
        ) / (avg + AVG_FACTOR_EPS)

        pred_boxes = out["boxes"][frames_d, queries_d]  # (P, 4)
        if num_pos:
            tgt_boxes = torch.stack(
                [
                    targets[c]["boxes"][m, f % num_frames]
                    for c, m, f in zip(clips.tolist(), tracks.tolist(), frames.tolist())
                ]
            ).to(pred_boxes)
        else:
            tgt_boxes = pred_boxes.new_zeros((0, 4))
        loss_l1 = box_l1_loss(pred_boxes, tgt_boxes, image_whwh[frames_d], avg)
        loss_giou = box_giou_loss(pred_boxes, tgt_boxes, avg)

        # mask head on the positives' detached refined boxes, driven by their interaction output
        rois = pred_boxes.detach()
        per_frame = [rois[frames_d == f] for f in range(F_)]
        logits = self.mask_logits(stage, features, per_frame, out["attn"][frames_d, queries_d])
        logits = logits[torch.arange(num_pos, device=device), pos_labels]  # (P, 2S, 2S)
        mask_targets = self._mask_targets(targets, clips, tracks, frames % num_frames, rois)
        loss_mask = vnet_dice_loss(logits.sigmoid(), mask_targets, max(avg, 1.0), self.dice_eps)
        return {
            "loss_cls": loss_cls * self.class_weight,
            "loss_bbox": loss_l1 * self.box_l1_weight,
            "loss_iou": loss_giou * self.giou_weight,
            "loss_mask": loss_mask * self.mask_weight,
        }

    def _mask_targets(self, targets, clips: Tensor, tracks: Tensor, times: Tensor, rois: Tensor):
        """(P, 2S, 2S) float: each positive's ground-truth mask cropped to its box and resized
        (RoIAlign, aligned, threshold 0.5: detectron2's ``BitMasks.crop_and_resize`` = mmdet's
        ``mask_target``, which first clips the boxes to the (padded) mask, as here)."""
        S2 = self.mask_size
        out = rois.new_zeros((rois.shape[0], S2, S2))
        for c in clips.unique().tolist():
            sel = (clips == c).nonzero(as_tuple=True)[0]
            masks = targets[c]["masks"][tracks[sel], times[sel]]  # (p, H, W)
            H, W = masks.shape[-2:]
            boxes = rois[sel.to(rois.device)].clone()
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, H)
            cropped = BitMasks(masks.to(rois.device)).crop_and_resize(boxes, S2)
            out[sel.to(rois.device)] = cropped.to(out.dtype)
        return out
