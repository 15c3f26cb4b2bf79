"""TeViT: the meta-architecture (backbone + FPN per frame, learned proposals, the query head).

Legend: B clips, T frames, F = B * T frames (clip-major), N queries, K classes, k kept tracks,
C channels, H, W the original video size.

Module names are the official checkpoint's where it has them: ``rpn_head.init_proposal_*``,
``roi_head.bbox_head.{i}.*``, ``roi_head.mask_head.{i}.*``; the backbone and neck are detectron2's
FPN (``backbone.bottom_up.*``, ``backbone.fpn_lateral{l}``, ``backbone.fpn_output{l}``), to which
an mmdet checkpoint's ``backbone.*`` / ``neck.*`` are renamed at load
(:func:`vis_core.engine.checkpoint.convert_mmdet_backbone_neck`).
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.backbone.resnet import ResNet
from detectron2.structures import ImageList
from torch import Tensor, nn

from vis_core.data.clip_targets import clip_length, clip_track_targets
from vis_core.engine.checkpoint import convert_mmdet_backbone_neck, is_mmdet_detector_state_dict
from vis_core.inference.postprocess import encode_rle, link_windows, select_top_pairs
from vis_core.modeling.backbone import (  # importing it registers the MsgShifT backbone
    frames_per_clip,
    is_pvt_v2_imagenet_state_dict,
    rename_pvt_v2_imagenet,
)
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

__all__ = ["TeViT"]

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class TeViT(nn.Module):
    """TeViT for video instance segmentation (offline: the whole video, or windows, in one pass).

    Training input: a list of clips as the video mapper gives them (``image``: T uint8 (3, H, W),
    ``instances``: T ``Instances`` with gt_classes, gt_boxes, gt_masks, gt_ids). Returns the
    weighted losses of every stage.

    Inference input: one dict per video with every frame. Returns one dict per video with
    ``pred_scores`` (k,), ``pred_classes`` (k,) and, at the original size, either ``pred_masks``
    (k, T, H, W) bool (``window_size`` 0: the whole video as one clip, as published) or
    ``pred_mask_rles`` (k lists of T COCO RLEs or None), encoded window by window.
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
        max_tracks: int = 10,
        mask_threshold: float = 0.5,
        window_size: int = 0,
    ):
        """
        Args:
            backbone: detectron2 backbone giving ``in_features`` (FPN P2-P5).
            rpn_head: the learned proposals.
            roi_head: :class:`vis_core.modeling.query_roi_head.QueryRoIHead`.
            in_features: backbone outputs read, finest first.
            pixel_mean, pixel_std: per-channel normalisation of the input frames.
            size_divisibility: frames are padded to a multiple of this.
            max_tracks: top-k (query, class) pairs kept per video (10 officially).
            mask_threshold: mask probability threshold (0.5).
            window_size: frames per inference window; 0 = the whole video in one pass.
        """
        super().__init__()
        check_query_head_features(backbone.output_shape(), in_features, roi_head, "MODEL.TEVIT")
        check_test_vis_args(mask_threshold, window_size, max_tracks)
        self.backbone = backbone
        self.rpn_head = rpn_head
        self.roi_head = roi_head
        self.in_features = list(in_features)
        self.size_divisibility = size_divisibility
        self.max_tracks = max_tracks
        self.mask_threshold = mask_threshold
        self.window_size = window_size
        register_pixel_stats(self, pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        t = cfg.MODEL.TEVIT
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        strides = [shapes[f].stride for f in t.IN_FEATURES if f in shapes]
        if len(strides) != len(t.IN_FEATURES):  # the model's check names the missing ones
            strides = (4, 8, 16, 32)
        roi_head = build_query_roi_head(t, strides)
        return {
            "backbone": backbone,
            "rpn_head": EmbeddingRPNHead(t.NUM_PROPOSALS, t.HIDDEN_DIM),
            "roi_head": roi_head,
            "in_features": list(t.IN_FEATURES),
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "size_divisibility": t.SIZE_DIVISIBILITY,
            "max_tracks": cfg.TEST.VIS.MAX_TRACKS,
            "mask_threshold": cfg.TEST.VIS.MASK_THRESHOLD,
            "window_size": cfg.TEST.VIS.WINDOW_SIZE,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def num_classes(self) -> int:
        return self.roi_head.num_classes

    # -------------------------------------------------------------- checkpoints
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        """Official (mmdet) weights: ``backbone.*`` / ``neck.*`` renamed to detectron2's FPN; the
        original PVTv2 ImageNet release renamed to the MsgShifT backbone's names."""
        if is_mmdet_detector_state_dict(state_dict, prefix):
            resnet = isinstance(getattr(self.backbone, "bottom_up", None), ResNet)
            n = convert_mmdet_backbone_neck(state_dict, prefix, resnet=resnet)
            logger.info("Loaded mmdet (official TeViT) weights: %d backbone/neck keys renamed.", n)
        elif is_pvt_v2_imagenet_state_dict({k[len(prefix) :]: v for k, v in state_dict.items()}):
            n = rename_pvt_v2_imagenet(state_dict, prefix)
            logger.info("Loaded the original PVTv2 ImageNet weights: %d tensors renamed.", n)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    # ------------------------------------------------------------------ common
    def _images(self, frames: List[Tensor]) -> ImageList:
        """Normalise and pad frames: F (3, H, W) uint8 -> ImageList (F, 3, H', W')."""
        return normalize_and_pad(
            frames, self.pixel_mean, self.pixel_std, self.size_divisibility, "TeViT"
        )

    def _features(self, images: ImageList, num_frames: int) -> List[Tensor]:
        with frames_per_clip(self.backbone, num_frames):
            features = self.backbone(images.tensor)
        return [features[f] for f in self.in_features]

    def _whwh(self, images: ImageList) -> Tensor:
        """(F, 4) each frame's (W, H, W, H) without padding."""
        return frame_whwh(images, self.device)

    def forward(self, batched_inputs: List[Dict[str, object]]):
        """See the class docstring."""
        if not self.training:
            return [self.inference_video(video) for video in batched_inputs]
        T = clip_length(batched_inputs, "TeViT")
        images = self._images([f for v in batched_inputs for f in v["image"]])
        features = self._features(images, T)
        whwh = self._whwh(images)
        boxes, queries = self.rpn_head(whwh)
        targets = self.prepare_targets(batched_inputs, images.tensor.shape[-2:])
        return self.roi_head.forward_train(features, boxes, queries, whwh, T, targets)

    def prepare_targets(
        self, batched_inputs, padded_size: Tuple[int, int]
    ) -> List[Dict[str, Tensor]]:
        """Per clip: ``labels`` (M,), ``boxes`` (M, T, 4) absolute xyxy, ``valid`` (M, T) bool and
        ``masks`` (M, T, H_pad, W_pad) bool (zero in the padding) of the tracks present in at least
        one frame."""
        return clip_track_targets(batched_inputs, padded_size, self.device, with_boxes=True)

    # --------------------------------------------------------------- inference
    def _run(self, frames: List[Tensor]):
        """One clip through the whole model; (images, features, last-stage outputs)."""
        images = self._images(frames)
        features = self._features(images, len(frames))
        boxes, queries = self.rpn_head(self._whwh(images))
        out = self.roi_head.forward_inference(features, boxes, queries, len(frames))
        return images, features, out

    def _masks(self, images, features, boxes, attn, classes, out_size) -> Tensor:
        """(k, T, H, W) bool masks of the kept queries (``QueryRoIHead.masks_at_size``)."""
        return self.roi_head.masks_at_size(
            features, boxes, attn, classes, images.image_sizes, out_size, self.mask_threshold
        )

    def inference_video(self, video: Dict[str, object]) -> Dict[str, object]:
        """One video: whole-video (``window_size`` 0 or >= T) or windowed inference."""
        frames, out_size = video_frames(video)
        T = len(frames)
        if 0 < self.window_size < T:
            return self._inference_windows(frames, out_size)
        images, features, out = self._run(list(frames))
        scores = out["cls"].sigmoid().mean(0)  # (T, N, K) -> (N, K)
        scores, classes, queries = select_top_pairs(scores, self.max_tracks)
        masks = self._masks(
            images, features, out["boxes"][:, queries], out["attn"][:, queries], classes, out_size
        )
        result = {"pred_scores": scores, "pred_classes": classes, "pred_masks": masks}
        if self.window_size > 0:  # one window covers the video: same tracks, as RLEs
            result["pred_mask_rles"] = self._rles(result.pop("pred_masks"))
        return result

    @staticmethod
    def _rles(masks: Tensor) -> List[List[Optional[dict]]]:
        """(k, T, H, W) bool -> k lists of T RLEs (None where empty)."""
        k, T = masks.shape[:2]
        flat = encode_rle(masks.flatten(0, 1))
        return [flat[n * T : (n + 1) * T] for n in range(k)]

    def _inference_windows(self, frames, out_size: Tuple[int, int]) -> Dict[str, object]:
        """Windowed inference (our addition for long videos): each window is one clip through the
        whole model (the messenger shift and STQI couple the frames of a window only); the queries
        of a window are linked to the previous window's by Hungarian matching on their last-stage
        features averaged over the window's frames; scores are the frame-weighted mean of the
        sigmoid scores; the kept tracks' masks are made in a second pass that recomputes each
        window's features and encodes RLEs window by window (memory bounded by one window)."""
        T = len(frames)
        bounds = [(s, min(s + self.window_size, T)) for s in range(0, T, self.window_size)]
        kept = []  # per window: boxes (T_w, N, 4) and attn (T_w, N, C) on the host

        def windows():
            for s, e in bounds:
                _, _, out = self._run(list(frames[s:e]))
                kept.append((out["boxes"].cpu(), out["attn"].cpu()))
                # queries averaged over the window's frames; scores summed over them
                yield out["queries"].mean(0), out["cls"].sigmoid().sum(0)

        perms, score_sum = link_windows(windows())
        kept = [(boxes[:, p.cpu()], attn[:, p.cpu()]) for (boxes, attn), p in zip(kept, perms)]
        scores, classes, queries = select_top_pairs(score_sum / T, self.max_tracks)
        rles: List[List[Optional[dict]]] = [[] for _ in range(len(queries))]
        for (s, e), (boxes, attn) in zip(bounds, kept):
            images = self._images(list(frames[s:e]))
            features = self._features(images, e - s)
            masks = self._masks(
                images,
                features,
                boxes[:, queries.cpu()].to(self.device),
                attn[:, queries.cpu()].to(self.device),
                classes,
                out_size,
            )  # (k, T_w, H, W)
            for n, track in enumerate(self._rles(masks)):
                rles[n].extend(track)
        return {"pred_scores": scores, "pred_classes": classes, "pred_mask_rles": rles}
