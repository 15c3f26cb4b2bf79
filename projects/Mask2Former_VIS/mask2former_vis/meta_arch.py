"""Mask2Former-VIS: the meta-architecture (backbone, per-frame pixel decoder, video decoder).

Legend: B clips, T frames, Q queries, K classes, N kept tracks, C channels, H, W sizes.

Names of the sub-modules are those of the official implementation (``backbone``,
``sem_seg_head.pixel_decoder``, ``sem_seg_head.predictor``, ``criterion.empty_weight``), so official
Mask2Former-VIS and Mask2Former COCO-instance checkpoints load with ``DetectionCheckpointer`` as is.
"""

from __future__ import annotations

import logging
import math
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import ImageList
from torch import Tensor, nn

from vis_core.data.clip_targets import clip_length, clip_track_targets
from vis_core.matching import VideoHungarianMatcher
from vis_core.modeling.criterion import VideoSetCriterion
from vis_core.modeling.pixel_decoder import MSDeformAttnPixelDecoder, build_pixel_decoder
from vis_core.modeling.video_inputs import (
    check_test_vis_args,
    normalize_and_pad,
    register_pixel_stats,
    video_frames,
)

from .inference import encode_rle, link_queries, masks_to_original_size, select_top_pairs
from .transformer_decoder import VideoMultiScaleMaskedTransformerDecoder

__all__ = ["Mask2FormerVIS", "Mask2FormerVISHead"]

logger = logging.getLogger(__name__)


class Mask2FormerVISHead(nn.Module):
    """Pixel decoder (per frame) followed by the video transformer decoder (per clip)."""

    def __init__(
        self,
        *,
        pixel_decoder: MSDeformAttnPixelDecoder,
        predictor: VideoMultiScaleMaskedTransformerDecoder,
    ):
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor

    @property
    def num_classes(self) -> int:
        return self.predictor.num_classes

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> "Mask2FormerVISHead":
        m = cfg.MODEL.MASK2FORMER_VIS
        pd = m.PIXEL_DECODER
        pixel_decoder = build_pixel_decoder(pd, input_shape, "MODEL.MASK2FORMER_VIS.PIXEL_DECODER")
        predictor = VideoMultiScaleMaskedTransformerDecoder(
            pd.CONVS_DIM,
            num_classes=m.NUM_CLASSES,
            hidden_dim=m.HIDDEN_DIM,
            num_queries=m.NUM_QUERIES,
            nheads=m.NHEADS,
            dim_feedforward=m.DIM_FEEDFORWARD,
            dec_layers=m.DEC_LAYERS,
            pre_norm=m.PRE_NORM,
            mask_dim=pd.MASK_DIM,
            enforce_input_project=m.ENFORCE_INPUT_PROJ,
            masked_attention=m.MASKED_ATTENTION,
        )
        return cls(pixel_decoder=pixel_decoder, predictor=predictor)

    def forward(self, features: Dict[str, Tensor], num_frames: int, return_aux: bool = True):
        """
        Args:
            features: backbone outputs of the B*T frames (clip after clip).
            num_frames: T.
        Returns:
            the decoder's output dict (``pred_logits`` (B, Q, K+1), ``pred_masks`` (B, Q, T, H/4,
            W/4), ``pred_embeds`` (B, Q, C), optional ``aux_outputs``).
        """
        mask_features, multi_scale = self.pixel_decoder.forward_features(features)
        return self.predictor(multi_scale, mask_features, num_frames, return_aux=return_aux)


@META_ARCH_REGISTRY.register()
class Mask2FormerVIS(nn.Module):
    """Mask2Former for video instance segmentation (offline; whole video or windows).

    Training input: a list of clips as the video mapper gives them (``image``: T uint8 (3, H, W),
    ``instances``: T ``Instances`` with gt_classes, gt_masks, gt_ids). Returns the weighted losses.

    Inference input: one dict per video with every frame. Returns one dict per video with
    ``pred_scores`` (N,), ``pred_classes`` (N,) and, at the original size, either ``pred_masks``
    (N, T, H, W) bool on the model's device (whole video, ``window_size`` 0) or ``pred_mask_rles``
    (N lists of T COCO RLEs or None) encoded window by window (``window_size`` > 0).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        sem_seg_head: Mask2FormerVISHead,
        criterion: VideoSetCriterion,
        pixel_mean: Tuple[float, ...],
        pixel_std: Tuple[float, ...],
        size_divisibility: int = 32,
        deep_supervision: bool = True,
        max_tracks: int = 10,
        mask_threshold: float = 0.5,
        window_size: int = 0,
        window_cache_mb: float = 1024.0,
    ):
        """
        Args:
            backbone: detectron2 backbone giving the pixel decoder's features.
            sem_seg_head: :class:`Mask2FormerVISHead`.
            criterion: :class:`VideoSetCriterion` (holds the matcher and the loss weights).
            pixel_mean, pixel_std: per-channel normalisation of the input frames.
            size_divisibility: frames are padded to a multiple of this (<= 0: the backbone's).
            deep_supervision: losses on every decoder layer's prediction.
            max_tracks: top-k (query, class) pairs kept per video (10 in the paper).
            mask_threshold: mask probability threshold (0.5: logit > 0).
            window_size: frames per inference window; 0 = the whole video in one pass.
            window_cache_mb: host memory for the windows' mask logits in windowed inference;
                windows beyond it are recomputed for the kept tracks.
        """
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        if size_divisibility <= 0:
            size_divisibility = backbone.size_divisibility
        self.size_divisibility = size_divisibility
        self.deep_supervision = deep_supervision
        check_test_vis_args(mask_threshold, window_size)
        self.max_tracks = max_tracks
        self.mask_threshold = mask_threshold
        self.window_size = window_size
        self.window_cache_mb = window_cache_mb
        register_pixel_stats(self, pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        m = cfg.MODEL.MASK2FORMER_VIS
        backbone = build_backbone(cfg)
        sem_seg_head = Mask2FormerVISHead.from_config(cfg, backbone.output_shape())
        matcher = VideoHungarianMatcher(
            cost_class=m.CLASS_WEIGHT,
            cost_mask=m.MASK_WEIGHT,
            cost_dice=m.DICE_WEIGHT,
            num_points=m.TRAIN_NUM_POINTS,
        )
        weights = {
            "loss_ce": m.CLASS_WEIGHT,
            "loss_mask": m.MASK_WEIGHT,
            "loss_dice": m.DICE_WEIGHT,
        }
        if m.DEEP_SUPERVISION:
            weights = VideoSetCriterion.aux_weight_dict(weights, m.DEC_LAYERS)
        criterion = VideoSetCriterion(
            m.NUM_CLASSES,
            matcher=matcher,
            weight_dict=weights,
            eos_coef=m.NO_OBJECT_WEIGHT,
            losses=("labels", "masks"),
            num_points=m.TRAIN_NUM_POINTS,
            oversample_ratio=m.OVERSAMPLE_RATIO,
            importance_sample_ratio=m.IMPORTANCE_SAMPLE_RATIO,
        )
        return {
            "backbone": backbone,
            "sem_seg_head": sem_seg_head,
            "criterion": criterion,
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "size_divisibility": m.SIZE_DIVISIBILITY,
            "deep_supervision": m.DEEP_SUPERVISION,
            "max_tracks": cfg.TEST.VIS.MAX_TRACKS,
            "mask_threshold": cfg.TEST.VIS.MASK_THRESHOLD,
            "window_size": cfg.TEST.VIS.WINDOW_SIZE,
            "window_cache_mb": m.WINDOW_CACHE_MB,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def num_classes(self) -> int:
        return self.sem_seg_head.num_classes

    # ------------------------------------------------------------------ common
    def _images(self, frames: List[Tensor]) -> ImageList:
        """Normalise and pad frames: T (3, H, W) uint8 -> ImageList (T, 3, H', W')."""
        return normalize_and_pad(
            frames, self.pixel_mean, self.pixel_std, self.size_divisibility, "Mask2FormerVIS"
        )

    def _run(self, images: ImageList, num_frames: int, return_aux: bool):
        features = self.backbone(images.tensor)
        return self.sem_seg_head(features, num_frames, return_aux=return_aux)

    def forward(self, batched_inputs: List[Dict[str, object]]):
        """See the class docstring."""
        if not self.training:
            return [self.inference_video(video) for video in batched_inputs]
        T = clip_length(batched_inputs, "Mask2FormerVIS")
        images = self._images([f for v in batched_inputs for f in v["image"]])
        outputs = self._run(images, T, return_aux=self.deep_supervision)
        targets = self.prepare_targets(batched_inputs, images.tensor.shape[-2:])
        return self.criterion(outputs, targets)

    def prepare_targets(self, batched_inputs, padded_size) -> List[Dict[str, Tensor]]:
        """Per clip: ``labels`` (M,) and ``masks`` (M, T, H_pad, W_pad) float of the instances
        visible in at least one frame (an instance absent in a frame has an empty mask there)."""
        targets = clip_track_targets(
            batched_inputs, padded_size, self.device, mask_dtype=torch.float32
        )
        return [{"labels": t["labels"], "masks": t["masks"]} for t in targets]

    # --------------------------------------------------------------- inference
    @property
    def _mask_logit_threshold(self) -> float:
        p = self.mask_threshold
        return math.log(p / (1.0 - p))

    def inference_video(self, video: Dict[str, object]) -> Dict[str, object]:
        """One video: whole-video (``window_size`` 0) or windowed inference."""
        frames, out_size = video_frames(video)
        T = len(frames)
        if self.window_size > 0:
            return self._inference_windows(frames, out_size)
        images = self._images(frames)
        out = self._run(images, T, return_aux=False)
        probs = out["pred_logits"][0].softmax(-1)[:, :-1]  # (Q, K)
        scores, classes, queries = select_top_pairs(probs, self.max_tracks)
        masks = masks_to_original_size(
            out["pred_masks"][0][queries],  # (N, T, h, w)
            images.image_sizes[0],
            tuple(images.tensor.shape[-2:]),
            out_size,
            self._mask_logit_threshold,
        )
        return {"pred_scores": scores, "pred_classes": classes, "pred_masks": masks}

    def _window_bounds(self, T: int) -> List[Tuple[int, int]]:
        return [(s, min(s + self.window_size, T)) for s in range(0, T, self.window_size)]

    def _run_window(self, frames: List[Tensor], perm: Optional[Tensor]):
        images = self._images(frames)
        out = self._run(images, len(frames), return_aux=False)
        logits, masks, embeds = out["pred_logits"][0], out["pred_masks"][0], out["pred_embeds"][0]
        if perm is not None:
            logits, masks, embeds = logits[perm], masks[perm], embeds[perm]
        return images, logits, masks, embeds

    def _inference_windows(self, frames: List[Tensor], out_size: Tuple[int, int]):
        """Windowed inference: link windows by query embeddings, average class probabilities over
        frames, then emit RLEs of the kept tracks window by window (first pass' mask logits kept
        on the host up to ``window_cache_mb``, the rest recomputed)."""
        T = len(frames)
        bounds = self._window_bounds(T)
        perms: List[Optional[Tensor]] = []
        cache: List[Optional[Tensor]] = []
        cached_bytes, budget = 0, self.window_cache_mb * 2**20
        prob_sum, reference = None, None
        geometries = []  # (image size, padded size) per window
        for s, e in bounds:
            images, logits, masks, embeds = self._run_window(frames[s:e], None)
            perm = None if reference is None else link_queries(reference, embeds)
            if perm is not None:
                logits, masks, embeds = logits[perm], masks[perm], embeds[perm]
            perms.append(perm)
            reference = embeds
            probs = logits.softmax(-1)[:, :-1] * (e - s)  # (Q, K), weighted by frames
            prob_sum = probs if prob_sum is None else prob_sum + probs
            size = masks.numel() * masks.element_size()
            if cached_bytes + size <= budget:
                cache.append(masks.to("cpu"))
                cached_bytes += size
            else:
                cache.append(None)
            geometries.append((tuple(images.image_sizes[0]), tuple(images.tensor.shape[-2:])))
            del images, masks
        scores, classes, queries = select_top_pairs(prob_sum / T, self.max_tracks)
        rles: List[List[Optional[dict]]] = [[] for _ in range(len(queries))]
        for (s, e), perm, cached, geometry in zip(bounds, perms, cache, geometries):
            if cached is None:
                _, _, masks, _ = self._run_window(frames[s:e], perm)
            else:
                masks = cached.to(self.device)
            kept = masks_to_original_size(
                masks[queries], geometry[0], geometry[1], out_size, self._mask_logit_threshold
            )  # (N, e - s, H, W)
            encoded = encode_rle(kept.flatten(0, 1))  # N*(e-s) RLEs, track after track
            for n in range(len(queries)):
                rles[n].extend(encoded[n * (e - s) : (n + 1) * (e - s)])
        return {"pred_scores": scores, "pred_classes": classes, "pred_mask_rles": rles}
