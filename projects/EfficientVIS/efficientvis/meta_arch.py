"""EfficientVIS: the meta-architecture (backbone + FPN per frame, tracklet queries and proposals, the
query head with FTSA and TDC, clip-by-clip training and inference with the hand-over).

Legend: B videos, T frames of a clip, F = B * T frames (clip-major), N tracklets, K classes,
C channels, H, W the original video size, M ground-truth tracks.

Training: each sample holds NUM_TRAIN_CLIPS consecutive clips of T frames of one video. The first
clip starts from the learned tracklet queries and proposals (repeated over its T frames) and is
assigned by the clip-level Hungarian matcher. With correspondence learning, each later clip starts
from the hand-over of the clip before: the last stage's output queries averaged over the clip's
frames (repeated over T) and the last frame's boxes; a track already assigned keeps its query
(the previous clip's last-stage assignment), a query whose track is absent from this clip stays
background and no new track may take it, and new tracks are matched to the free queries. Without
it, every clip starts from the learned initial queries and is matched on its own.

Inference: the video clip by clip. "e2e": the first clip from the learned initial queries, each
later one from the hand-over, so a tracklet is its query index over the whole video (no
association); "hand": every clip from the learned initial queries, tracklets linked to the previous
clip's by Hungarian matching on their time-averaged output queries (cosine similarity, a new track
below LINK_THRESHOLD). Masks are made and RLE-encoded clip by clip (memory bounded by one clip),
with each tracklet's class channel of that clip; a track's score is the mean over the video's
frames of its class probabilities (0 in the frames it does not cover), its category their argmax.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import ImageList
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from vis_core.data.clip_targets import clip_length, clip_track_targets, sub_clip_targets
from vis_core.inference.postprocess import encode_rle
from vis_core.modeling.query_inst import EmbeddingRPNHead
from vis_core.modeling.query_roi_head import (
    QueryRoIHead,
    build_query_roi_head,
    check_query_head_features,
)
from vis_core.modeling.video_inputs import (
    check_test_vis_args,
    frame_whwh,
    normalize_and_pad,
    register_pixel_stats,
    video_frames,
)

from .stage_head import EfficientVISStageHead

__all__ = ["EfficientVIS"]

logger = logging.getLogger(__name__)

LINKING_MODES = ("e2e", "hand")
HANDOVER_BOXES = ("last", "learned")


@META_ARCH_REGISTRY.register()
class EfficientVIS(nn.Module):
    """EfficientVIS for video instance segmentation (clip by clip, fully end to end).

    Training input: a list of samples as the video mapper gives them (``image``: NUM_TRAIN_CLIPS x T
    consecutive uint8 (3, H, W) frames, ``instances``: as many ``Instances`` with gt_classes,
    gt_boxes, gt_masks, gt_ids). Returns the weighted losses of every clip and stage
    (``clip{j}_stage{s}_loss_{cls,bbox,iou,mask}``).

    Inference input: one dict per video with every frame. Returns one dict per video with
    ``pred_scores`` (k,), ``pred_classes`` (k,) and ``pred_mask_rles`` (k lists of one COCO RLE or
    None per frame, at the original size).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        rpn_head: EmbeddingRPNHead,
        roi_head: QueryRoIHead,
        in_features: List[str],
        pixel_mean: Tuple[float, ...],
        pixel_std: Tuple[float, ...],
        size_divisibility: int = 32,
        clip_length: int = 36,
        num_train_clips: int = 2,
        correspondence_learning: bool = True,
        handover_detach: bool = False,
        handover_boxes: str = "last",
        linking: str = "e2e",
        link_threshold: float = 0.5,
        max_tracks: int = 10,
        mask_threshold: float = 0.5,
    ):
        """
        Args:
            backbone: detectron2 backbone giving ``in_features`` (FPN P2-P5).
            rpn_head: the learned tracklet queries and proposals.
            roi_head: :class:`QueryRoIHead` with :class:`EfficientVISStageHead` stages.
            in_features: backbone outputs read, finest first.
            pixel_mean, pixel_std: per-channel normalisation of the input frames.
            size_divisibility: frames are padded to a multiple of this.
            clip_length: T, frames of an inference clip (training clips come from the sampler).
            num_train_clips: consecutive clips in a training sample.
            correspondence_learning: training clips after the first start from the hand-over and
                keep the assignment (else each starts from the learned initial queries).
            handover_detach: cut the gradient through the hand-over in training.
            handover_boxes: "last" (the last frame's boxes) or "learned" (the initial proposals).
            linking: "e2e" (the hand-over) or "hand" (Hungarian on query similarity) at inference.
            link_threshold: "hand" linking's cosine-similarity threshold for a continued track.
            max_tracks: tracks kept per video (top scores).
            mask_threshold: mask probability threshold.
        """
        super().__init__()
        check_query_head_features(
            backbone.output_shape(), in_features, roi_head, "MODEL.EFFICIENTVIS"
        )
        if clip_length < 1 or num_train_clips < 1:
            raise ValueError(
                f"EfficientVIS: CLIP_LENGTH ({clip_length}) and NUM_TRAIN_CLIPS "
                f"({num_train_clips}) must be >= 1"
            )
        if linking not in LINKING_MODES:
            raise ValueError(
                f"MODEL.EFFICIENTVIS.LINKING must be one of {LINKING_MODES}, got {linking!r}"
            )
        if handover_boxes not in HANDOVER_BOXES:
            raise ValueError(
                f"MODEL.EFFICIENTVIS.HANDOVER_BOXES must be one of {HANDOVER_BOXES}, got "
                f"{handover_boxes!r}"
            )
        check_test_vis_args(mask_threshold, 0, max_tracks)  # clips: no WINDOW_SIZE
        self.backbone = backbone
        self.rpn_head = rpn_head
        self.roi_head = roi_head
        self.in_features = list(in_features)
        self.size_divisibility = size_divisibility
        self.clip_length = clip_length
        self.num_train_clips = num_train_clips
        self.correspondence_learning = correspondence_learning
        self.handover_detach = handover_detach
        self.handover_boxes = handover_boxes
        self.linking = linking
        self.link_threshold = link_threshold
        self.max_tracks = max_tracks
        self.mask_threshold = mask_threshold
        register_pixel_stats(self, pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        e = cfg.MODEL.EFFICIENTVIS
        sampled = cfg.INPUT.SAMPLING_FRAME_NUM
        if sampled != e.CLIP_LENGTH * e.NUM_TRAIN_CLIPS:
            raise ValueError(
                f"INPUT.SAMPLING_FRAME_NUM ({sampled}) must be MODEL.EFFICIENTVIS.CLIP_LENGTH "
                f"({e.CLIP_LENGTH}) x NUM_TRAIN_CLIPS ({e.NUM_TRAIN_CLIPS}) = "
                f"{e.CLIP_LENGTH * e.NUM_TRAIN_CLIPS}: a training sample is that many consecutive "
                "clips"
            )
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        strides = [shapes[f].stride for f in e.IN_FEATURES if f in shapes]
        if len(strides) != len(e.IN_FEATURES):  # the model's check names the missing ones
            strides = (4, 8, 16, 32)
        roi_head = build_query_roi_head(
            e,
            strides,
            bbox_head_class=EfficientVISStageHead,
            bbox_head_kwargs={
                "temporal_dynamic_conv": e.TEMPORAL_DYNAMIC_CONV,
                "tdc_radius": e.TDC_RADIUS,
                "time_shared": e.TIME_SHARED_QUERIES,
            },
        )
        return {
            "backbone": backbone,
            "rpn_head": EmbeddingRPNHead(e.NUM_PROPOSALS, e.HIDDEN_DIM),
            "roi_head": roi_head,
            "in_features": list(e.IN_FEATURES),
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "size_divisibility": e.SIZE_DIVISIBILITY,
            "clip_length": e.CLIP_LENGTH,
            "num_train_clips": e.NUM_TRAIN_CLIPS,
            "correspondence_learning": e.CORRESPONDENCE_LEARNING,
            "handover_detach": e.HANDOVER_DETACH,
            "handover_boxes": e.HANDOVER_BOXES,
            "linking": e.LINKING,
            "link_threshold": e.LINK_THRESHOLD,
            "max_tracks": cfg.TEST.VIS.MAX_TRACKS,
            "mask_threshold": cfg.TEST.VIS.MASK_THRESHOLD,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def num_classes(self) -> int:
        return self.roi_head.num_classes

    # ------------------------------------------------------------------ common
    def _images(self, frames: Sequence[Tensor]) -> ImageList:
        """Normalise and pad frames: F (3, H, W) uint8 -> ImageList (F, 3, H', W')."""
        return normalize_and_pad(
            list(frames), self.pixel_mean, self.pixel_std, self.size_divisibility, "EfficientVIS"
        )

    def _features(self, images: ImageList) -> List[Tensor]:
        features = self.backbone(images.tensor)
        return [features[f] for f in self.in_features]

    def _whwh(self, images: ImageList) -> Tensor:
        """(F, 4) each frame's (W, H, W, H) without padding."""
        return frame_whwh(images, self.device)

    def handover(self, out: Dict[str, Tensor], whwh: Tensor, num_frames: int):
        """The next clip's initial boxes and queries from a clip's last-stage outputs.

        Args:
            out: the last stage's outputs of B clips ("queries", "boxes": (B*T_prev, N, ...)).
            whwh: (B*T, 4) the next clip's frame sizes.
            num_frames: T of the next clip.
        Returns:
            boxes (B*T, N, 4) and queries (B*T, N, C): the queries averaged over the clip's frames
            and the last frame's boxes (or the learned proposals), repeated over T.
        """
        N, C = out["queries"].shape[1:]
        B = whwh.shape[0] // num_frames
        queries = out["queries"].view(B, -1, N, C).mean(1)  # (B, N, C)
        queries = queries[:, None].expand(-1, num_frames, -1, -1).reshape(-1, N, C)
        if self.handover_boxes == "learned":
            boxes = self.rpn_head(whwh)[0]
        else:
            last = out["boxes"].detach().view(B, -1, N, 4)[:, -1]  # (B, N, 4)
            boxes = last[:, None].expand(-1, num_frames, -1, -1).reshape(-1, N, 4)
        return boxes, queries

    # ---------------------------------------------------------------- training
    def forward(self, batched_inputs: List[Dict[str, object]]):
        """See the class docstring."""
        if not self.training:
            return [self.inference_video(video) for video in batched_inputs]
        total = clip_length(batched_inputs, "EfficientVIS")
        J = self.num_train_clips
        if total % J:
            raise ValueError(
                f"EfficientVIS: training samples of {total} frames do not split into "
                f"NUM_TRAIN_CLIPS={J} clips (set INPUT.SAMPLING_FRAME_NUM to CLIP_LENGTH x {J})"
            )
        T = total // J
        B = len(batched_inputs)
        images = self._images([f for v in batched_inputs for f in v["image"]])
        features = self._features(images)  # (B*J*T, C, h, w) per level
        whwh = self._whwh(images)
        tracks = clip_track_targets(
            batched_inputs, images.tensor.shape[-2:], self.device, with_boxes=True
        )
        losses: Dict[str, Tensor] = {}
        out, indices, previous = None, None, None
        for j in range(J):
            frames = torch.cat(
                [torch.arange(b * total + j * T, b * total + (j + 1) * T) for b in range(B)]
            ).to(self.device)
            clip_features = [f[frames] for f in features]
            clip_whwh = whwh[frames]
            clip_targets, objects = self._clip_targets(tracks, j, T)
            fixed = None
            if j == 0 or not self.correspondence_learning:
                boxes, queries = self.rpn_head(clip_whwh)
            else:
                boxes, queries = self.handover(out, clip_whwh, T)
                if self.handover_detach:
                    queries = queries.detach()
                fixed = [
                    self._kept_assignment(indices[b], previous[b], objects[b]) for b in range(B)
                ]
            clip_losses, out, indices = self.roi_head.forward_train(
                clip_features, boxes, queries, clip_whwh, T, clip_targets, fixed, return_state=True
            )
            previous = objects
            losses.update({f"clip{j}_{k}": v for k, v in clip_losses.items()})
        return losses

    @staticmethod
    def _clip_targets(tracks, j: int, T: int):
        """Clip j's targets (the tracks present in at least one of its frames) and, per video,
        the sample-level track index of each of them (``tracks``: per video, the
        ``clip_track_targets`` of the whole sample)."""
        pairs = [sub_clip_targets(target, j * T, (j + 1) * T) for target in tracks]
        return [t for t, _ in pairs], [keep for _, keep in pairs]

    @staticmethod
    def _kept_assignment(indices, previous: Tensor, current: Tensor):
        """The fixed part of a clip's assignment under correspondence learning.

        Args:
            indices: (queries, tracks) the previous clip's last-stage assignment (tracks index
                its clip targets).
            previous, current: sample-track index of each previous / current clip track.
        Returns:
            (queries, tracks) kept (the same track in this clip), and the queries whose track is
            not in this clip (reserved: background, free for no new track).
        """
        rows, cols = indices
        where = {int(s): c for c, s in enumerate(current.tolist())}
        kept_q, kept_m, reserved = [], [], []
        for q, m in zip(rows.tolist(), cols.tolist()):
            sample_track = int(previous[m])
            if sample_track in where:
                kept_q.append(q)
                kept_m.append(where[sample_track])
            else:
                reserved.append(q)
        as_long = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
        return as_long(kept_q), as_long(kept_m), as_long(reserved)

    # --------------------------------------------------------------- inference
    def run_clip(self, frames: Sequence[Tensor], state: Optional[Dict[str, Tensor]] = None):
        """One clip of one video through the whole model.

        Args:
            frames: T uint8 (3, H, W) frames.
            state: the previous clip's last-stage outputs for the hand-over, or None (the learned
                initial queries and proposals).
        Returns:
            (images, features, the last stage's outputs: "cls" (T, N, K), "boxes" (T, N, 4),
            "queries" and "attn" (T, N, C)).
        """
        images = self._images(frames)
        features = self._features(images)
        whwh = self._whwh(images)
        if state is None:
            boxes, queries = self.rpn_head(whwh)
        else:
            boxes, queries = self.handover(state, whwh, len(frames))
        out = self.roi_head.forward_inference(features, boxes, queries, len(frames))
        return images, features, out

    def inference_video(self, video: Dict[str, object]) -> Dict[str, object]:
        """One video, clip by clip (see the module docstring)."""
        frames, out_size = video_frames(video)
        total = len(frames)
        tracks: List[Dict[str, object]] = []  # "scores" (K,) summed over frames, "rles", "embed"
        active: List[int] = []  # track of each query slot of the previous clip
        state = None
        for start in range(0, total, self.clip_length):
            end = min(start + self.clip_length, total)
            images, features, out = self.run_clip(
                [frames[t] for t in range(start, end)], state if self.linking == "e2e" else None
            )
            scores = out["cls"].sigmoid()  # (T, N, K)
            classes = scores.mean(0).argmax(-1)  # (N,) each tracklet's class in this clip
            masks = self.roi_head.masks_at_size(
                features,
                out["boxes"],
                out["attn"],
                classes,
                images.image_sizes,
                out_size,
                self.mask_threshold,
            )  # (N, T, H, W)
            slots = self._link(tracks, active, out["queries"].mean(0), start)
            for n, k in enumerate(slots):
                track = tracks[k]
                track["scores"] = track["scores"] + scores[:, n].sum(0)
                track["rles"].extend(encode_rle(masks[n]))
            for track in tracks:  # tracks not continued: nothing in this clip's frames
                track["rles"].extend([None] * (end - len(track["rles"])))
            active, state = slots, {"queries": out["queries"], "boxes": out["boxes"]}
            del features, masks
        probs = torch.stack([t["scores"] for t in tracks]) / total  # (tracks, K)
        best, classes = probs.max(dim=-1)
        order = best.argsort(descending=True)[: self.max_tracks]
        return {
            "pred_scores": best[order],
            "pred_classes": classes[order],
            "pred_mask_rles": [tracks[int(k)]["rles"] for k in order],
        }

    def _link(self, tracks: List[dict], active: List[int], embeds: Tensor, start: int) -> List[int]:
        """The track of each query slot of the current clip (new tracks appended to ``tracks``).

        "e2e": slot n continues slot n's track. "hand": Hungarian matching of the slots to the
        tracks of the previous clip on the cosine similarity of their time-averaged queries; a
        pair below ``link_threshold`` (or a slot left over) starts a new track.
        """
        N = embeds.shape[0]
        slots: List[Optional[int]] = [None] * N
        if active and self.linking == "e2e":
            slots = list(active)
        elif active:
            reference = torch.stack([tracks[k]["embed"] for k in active])
            sim = F.normalize(reference.float(), dim=-1) @ F.normalize(embeds.float(), dim=-1).T
            rows, cols = linear_sum_assignment(-sim.cpu().numpy())
            for r, c in zip(rows, cols):
                if sim[r, c] >= self.link_threshold:
                    slots[int(c)] = active[int(r)]
        for n in range(N):
            if slots[n] is None:
                slots[n] = len(tracks)
                tracks.append(
                    {"scores": embeds.new_zeros(self.num_classes), "rles": [None] * start}
                )
            tracks[slots[n]]["embed"] = embeds[n]
        return [int(s) for s in slots]
