"""The query RoI head of QueryInst-style video methods (TeViT, EfficientVIS): learned proposals
refined by stages of RoIAlign + query interaction + dynamic conv, with a dynamic mask head.

Legend: B clips, T frames, F = B * T frames (clip-major), N queries, C channels, K classes,
M ground-truth tracks of a clip, P positive (query, frame) pairs, S RoI size.

Training (official TeViT ``TeViTRoIHead.forward_train``): at every stage the detached class scores and
refined boxes of each clip are matched to its ground-truth tracks once (costs averaged over each
track's present frames); a matched query is a positive in the frames where its track is present
and background elsewhere. Losses per stage: sigmoid focal (all F * N pairs), L1 on boxes divided by
the frame size and GIoU (positives), V-Net dice of the label channel of the mask head run on the
positives' detached boxes; all normalised by the number of positive pairs (averaged over workers).
Boxes feed the next stage detached; the first stage's refinement reaches the learned proposals.
A method may fix part of the assignment (EfficientVIS' correspondence learning: the second clip of a
pair keeps the first clip's query for each track) and swap the stage head class (its temporal
dynamic convolution).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.layers import paste_masks_in_image
from detectron2.structures import BitMasks, Boxes
from torch import Tensor, nn
from torchvision.ops import box_convert

from vis_core.layers import MultiLevelRoIAlign
from vis_core.matching import VideoHungarianMatcher
from vis_core.modeling.box_coder import DeltaXYWHBoxCoder
from vis_core.modeling.box_losses import AVG_FACTOR_EPS, box_giou_loss, box_l1_loss
from vis_core.modeling.losses import mean_over_workers, sigmoid_focal_loss, vnet_dice_loss
from vis_core.modeling.query_inst import DIIHead, DynamicMaskHead

__all__ = [
    "FixedAssignment",
    "QueryRoIHead",
    "build_query_roi_head",
    "check_query_head_features",
]

# Per clip: (queries (m,), tracks (m,)) pairs kept as given, and queries (r,) that no other track
# may take; ``None`` for a clip assigned by the matcher alone.
FixedAssignment = Optional[Tuple[Tensor, Tensor, Tensor]]


class QueryRoIHead(nn.Module):
    """``bbox_head.{0..S-1}`` (:class:`DIIHead` or a subclass) and ``mask_head.{0..S-1}``
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
        bbox_head_class: type = DIIHead,
        bbox_head_kwargs: Optional[dict] = None,
    ):
        """See TeViT's ``tevit/config.py`` for the meaning of each argument (``MODEL.TEVIT.*``);
        ``bbox_head_class`` builds each stage (a :class:`DIIHead` subclass) with the common
        arguments plus ``bbox_head_kwargs``."""
        super().__init__()
        if num_stages < 1 or len(stage_loss_weights) != num_stages:
            raise ValueError(
                f"query head: NUM_STAGES ({num_stages}) must be >= 1 and STAGE_LOSS_WEIGHTS "
                f"({list(stage_loss_weights)}) have one entry per stage"
            )
        if matcher.cost_mask > 0 or matcher.cost_dice > 0:
            raise ValueError(
                "query head: the matcher uses class and box costs only (no mask costs)"
            )
        self.num_classes = num_classes
        self.num_stages = num_stages
        self.hidden_dim = hidden_dim
        self.bbox_head = nn.ModuleList(
            bbox_head_class(
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
                **(bbox_head_kwargs or {}),
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

    def masks_at_size(
        self,
        features: List[Tensor],
        boxes: Tensor,
        attn: Tensor,
        classes: Tensor,
        image_sizes: Sequence[Tuple[int, int]],
        out_size: Tuple[int, int],
        threshold: float,
    ) -> Tensor:
        """The last stage's masks of k queries in every frame, pasted at the original size.

        Args:
            features: FPN maps (T, C, H_l, W_l) of one clip.
            boxes: (T, k, 4) the queries' last-stage boxes in each frame's input pixels.
            attn: (T, k, C) their interaction outputs.
            classes: (k,) the class channel of each query's mask.
            image_sizes: T (h, w) of the resized, unpadded frames.
            out_size: (H, W) the original size.
            threshold: mask probability threshold.
        Returns:
            (k, T, H, W) bool.
        """
        T, k = boxes.shape[:2]
        H, W = out_size
        if k == 0:
            return torch.zeros((0, T, H, W), dtype=torch.bool, device=boxes.device)
        logits = self.mask_logits(-1, features, list(boxes), attn.flatten(0, 1))
        logits = logits.view(T, k, *logits.shape[1:])[:, torch.arange(k), classes]  # (T, k, 2S, 2S)
        scale = torch.tensor(
            [[W / w, H / h, W / w, H / h] for h, w in image_sizes], device=boxes.device
        )  # (T, 4)
        probs = logits.sigmoid().flatten(0, 1)  # (T*k, 2S, 2S)
        boxes = (boxes * scale[:, None]).flatten(0, 1)  # (T*k, 4) at the original size
        # a box wholly outside the frame pastes nothing (detectron2's CPU paste, which
        # crops to the boxes' union, cannot take it)
        inside = (boxes[:, 0] < W) & (boxes[:, 1] < H) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        pasted = torch.zeros((T * k, H, W), dtype=torch.bool, device=probs.device)
        if inside.any():
            pasted[inside] = paste_masks_in_image(
                probs[inside], Boxes(boxes[inside]), (H, W), threshold=threshold
            )
        return pasted.view(T, k, H, W).transpose(0, 1)

    # ---------------------------------------------------------------- training
    def forward_train(
        self,
        features: List[Tensor],
        boxes: Tensor,
        queries: Tensor,
        image_whwh: Tensor,
        num_frames: int,
        targets: List[Dict[str, Tensor]],
        fixed: Optional[Sequence[FixedAssignment]] = None,
        return_state: bool = False,
    ):
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
            fixed: per clip, a part of the assignment kept at every stage (see
                :data:`FixedAssignment`); the matcher assigns the other tracks to the free queries.
            return_state: also return the last stage's outputs and assignment.
        Returns:
            ``stage{s}_loss_{cls,bbox,iou,mask}`` for every stage, weighted; with
            ``return_state``, (losses, the last stage's :meth:`run_stage` outputs, its assignment:
            per clip (queries (m,), tracks (m,))).
        """
        F_, N, _ = boxes.shape
        if F_ != len(targets) * num_frames:
            raise ValueError(
                f"query head: {F_} frames for {len(targets)} clips of {num_frames} frames"
            )
        if fixed is not None and len(fixed) != len(targets):
            raise ValueError(f"query head: {len(fixed)} fixed assignments for {len(targets)} clips")
        losses, out, indices = {}, {}, []
        for stage in range(self.num_stages):
            out = self.run_stage(stage, features, boxes, queries, num_frames)
            indices = self.assign(out, image_whwh, num_frames, targets, fixed)
            stage_losses = self.stage_losses(
                stage, features, out, image_whwh, num_frames, targets, indices
            )
            weight = self.stage_loss_weights[stage]
            losses.update({f"stage{stage}_{k}": v * weight for k, v in stage_losses.items()})
            boxes, queries = out["boxes"].detach(), out["queries"]
        return (losses, out, indices) if return_state else losses

    def assign(
        self,
        out: Dict[str, Tensor],
        image_whwh: Tensor,
        num_frames: int,
        targets: List[Dict[str, Tensor]],
        fixed: Optional[Sequence[FixedAssignment]] = None,
    ) -> List[Tuple[Tensor, Tensor]]:
        """One assignment per clip on the detached outputs: the fixed pairs of ``fixed`` as given,
        the other tracks matched (Hungarian) to the queries neither fixed nor reserved.

        Returns:
            per clip (queries (m,), tracks (m,)) int64 on the host.
        """
        F_, N, K = out["cls"].shape
        T = num_frames
        B = F_ // T
        logits = out["cls"].detach().view(B, T, N, K).transpose(1, 2)  # (B, N, T, K)
        norm = out["boxes"].detach() / image_whwh[:, None]  # (F, N, 4) normalised xyxy
        pred_boxes = box_convert(norm, "xyxy", "cxcywh").view(B, T, N, 4).transpose(1, 2)
        indices = []
        for b, t in enumerate(targets):
            tgt = box_convert(t["boxes"].to(norm) / image_whwh[b * T], "xyxy", "cxcywh")
            fix = fixed[b] if fixed is not None else None
            if fix is None:
                free_q = torch.arange(N)
                free_m = torch.arange(len(t["labels"]))
            else:
                taken = torch.zeros(N, dtype=torch.bool)
                taken[fix[0]] = True
                taken[fix[2]] = True
                done = torch.zeros(len(t["labels"]), dtype=torch.bool)
                done[fix[1]] = True
                free_q, free_m = (~taken).nonzero()[:, 0], (~done).nonzero()[:, 0]
            rows = cols = torch.zeros(0, dtype=torch.long)
            if len(free_q) and len(free_m):
                fm = free_m.to(t["labels"].device)
                rows, cols = self.matcher(
                    {
                        "pred_logits": logits[b : b + 1, free_q.to(logits.device)],
                        "pred_boxes": pred_boxes[b : b + 1, free_q.to(logits.device)],
                    },
                    [{"labels": t["labels"][fm], "boxes": tgt[fm], "valid": t["valid"][fm]}],
                )[0]
                rows, cols = free_q[rows.cpu()], free_m[cols.cpu()]
            if fix is not None:
                rows, cols = torch.cat([fix[0].cpu(), rows]), torch.cat([fix[1].cpu(), cols])
            indices.append((rows.long(), cols.long()))
        return indices

    def _positives(
        self, indices: List[Tuple[Tensor, Tensor]], num_frames: int, num_queries: int, targets
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """(frame, query, clip, track) indices of the positive pairs of an assignment (a matched
        query in the frames where its track is present), in frame order."""
        T, N = num_frames, num_queries
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
        indices: List[Tuple[Tensor, Tensor]],
    ) -> Dict[str, Tensor]:
        """Unweighted-by-stage losses of one stage under the assignment ``indices`` (see
        :meth:`assign` and the module docstring)."""
        cls = out["cls"]
        F_, N, K = cls.shape
        device = cls.device
        frames, queries, clips, tracks = self._positives(indices, num_frames, N, targets)
        frames_d, queries_d = frames.to(device), queries.to(device)
        num_pos = frames.numel()
        avg = mean_over_workers(float(num_pos), device)
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


def build_query_roi_head(node, strides: Sequence[int], **kwargs) -> QueryRoIHead:
    """A :class:`QueryRoIHead` and its class-and-box matcher from a method's config node (the keys
    TeViT's ``MODEL.TEVIT`` and EfficientVIS' ``MODEL.EFFICIENTVIS`` share); ``kwargs`` are passed on
    (``bbox_head_class``, ``bbox_head_kwargs``)."""
    matcher = VideoHungarianMatcher(
        cost_class=node.COST_CLASS,
        cost_mask=0.0,
        cost_dice=0.0,
        cost_box_l1=node.COST_BOX_L1,
        cost_giou=node.COST_GIOU,
        class_cost_type="focal",
        focal_alpha=node.FOCAL_ALPHA,
        focal_gamma=node.FOCAL_GAMMA,
        box_l1_format="xyxy",
    )
    return QueryRoIHead(
        num_classes=node.NUM_CLASSES,
        matcher=matcher,
        num_stages=node.NUM_STAGES,
        hidden_dim=node.HIDDEN_DIM,
        num_heads=node.NHEADS,
        dim_feedforward=node.DIM_FEEDFORWARD,
        dynamic_dim=node.DYNAMIC_DIM,
        num_cls_fcs=node.NUM_CLS_FCS,
        num_reg_fcs=node.NUM_REG_FCS,
        dropout=node.DROPOUT,
        interaction=node.INTERACTION,
        box_roi_size=node.BOX_ROI_SIZE,
        mask_roi_size=node.MASK_ROI_SIZE,
        roi_sampling_ratio=node.ROI_SAMPLING_RATIO,
        roi_finest_scale=node.ROI_FINEST_SCALE,
        roi_level_mapping=node.ROI_LEVEL_MAPPING,
        strides=tuple(strides),
        num_mask_convs=node.NUM_MASK_CONVS,
        delta_means=node.BOX_DELTA_MEANS,
        delta_stds=node.BOX_DELTA_STDS,
        class_weight=node.CLASS_WEIGHT,
        focal_alpha=node.FOCAL_ALPHA,
        focal_gamma=node.FOCAL_GAMMA,
        box_l1_weight=node.BOX_L1_WEIGHT,
        giou_weight=node.GIOU_WEIGHT,
        mask_weight=node.MASK_WEIGHT,
        dice_eps=node.DICE_EPS,
        stage_loss_weights=node.STAGE_LOSS_WEIGHTS,
        **kwargs,
    )


def check_query_head_features(
    shapes: Dict[str, object], in_features: Sequence[str], roi_head: QueryRoIHead, node: str
) -> None:
    """The backbone outputs ``in_features`` with ``roi_head``'s channels and RoI strides.

    Args:
        shapes: the backbone's ``output_shape()``.
        node: the method's config node, for the messages (e.g. "MODEL.TEVIT").
    """
    missing = [f for f in in_features if f not in shapes]
    if missing:
        raise ValueError(
            f"{node}.IN_FEATURES names {missing}, which the backbone does not output "
            f"(it has {sorted(shapes)}); use an FPN backbone (P2-P5)"
        )
    channels = sorted({shapes[f].channels for f in in_features})
    if channels != [roi_head.hidden_dim]:
        raise ValueError(
            f"backbone features {list(in_features)} have {channels} channels; {node}.HIDDEN_DIM is "
            f"{roi_head.hidden_dim} (set MODEL.FPN.OUT_CHANNELS to it)"
        )
    strides = tuple(shapes[f].stride for f in in_features)
    if strides != roi_head.bbox_roi_extractor.strides:
        raise ValueError(
            f"backbone features {list(in_features)} have strides {strides}, the RoI extractors "
            f"expect {roi_head.bbox_roi_extractor.strides}"
        )
