"""Video K-Net for VIS: the meta-architecture (official ``KNetTrack`` with ``ConvKernelHeadVideo``,
``KernelIterHeadVideo`` and ``KernelFrameIterHeadVideo``, as ``knet_track_r50.py`` builds them).

Legend: B clips, T frames, F = B * T frames (clip-major), N kernels, C channels, K classes, M
ground-truth tracks of a clip, h, w the stride-8 map, H, W the original video size.

Per frame: backbone + FPN (P2-P5) -> the kernel head (initial kernels and masks at stride 8) -> 3
kernel update stages, frames independent. Then the tracker: the last stage's kernels averaged over
the clip's frames (one kernel per object), 2 stages that update it from the clip-averaged group
features and segment every frame with it, and a last stage that refines it per frame (no class:
the class comes from the stage before).

Training (official ``forward_train``s): ground-truth masks are the padded masks resized to stride 4
(bilinear, soft). The kernel head's masks and the stages' masks are resized x2 to stride 4 for the
matching and the losses. The per-frame stages are matched frame by frame with the previous stage's
detached predictions (``post_assign=False``: the kernel head's masks, no class, for stage 0); the
tracker's first stages are matched clip by clip on their own detached predictions, masks
concatenated over the frames, and the last stage reuses the assignment of the stage before.
Losses: ``video_knet.losses.kernel_stage_losses`` for every stage (the kernel head: no class, and
its semantic loss ``video_knet.losses.semantic_seg_loss``).

Inference (``simple_test``): the whole video as one clip; the tracker's last class scores (sigmoid)
give the top-k (kernel, class) pairs; each pair's masks are the last stage's per-frame masks at
stride 4, resized to the padded input, cropped to the frame and resized to the original size, then
thresholded. Long videos (ours, ``TEST.VIS.WINDOW_SIZE`` > 0): each window is one clip through the
whole model; the windows' clip kernels (the tracker's last stage with a class) are chained into
tracks by Hungarian matching on their cosine similarity; a track's score is the frame-weighted mean
of its windows' scores; the kept tracks' masks come from a second pass, RLE-encoded window by window
(memory bounded by one window).
"""

from __future__ import annotations

import logging
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import ImageList
from torch import Tensor, nn

from vis_core.data.clip_targets import clip_length, clip_track_targets
from vis_core.engine.checkpoint import convert_mmdet_backbone_neck, is_mmdet_detector_state_dict
from vis_core.inference.postprocess import (
    encode_rle,
    link_queries,
    link_windows,
    select_top_pairs,
)
from vis_core.matching import VideoHungarianMatcher
from vis_core.modeling.video_inputs import (
    check_test_vis_args,
    normalize_and_pad,
    register_pixel_stats,
    video_frames,
)

from .kernel_head import ConvKernelHead
from .kernel_update_head import KernelUpdateHead
from .losses import kernel_stage_losses, semantic_seg_loss

__all__ = ["VideoKNet"]

logger = logging.getLogger(__name__)

INFERENCE_OUTPUTS = ("tracker", "frame_linking")


class _Stages(nn.Module):
    """``roi_head`` / ``tracker``: a ``mask_head`` list of stages (the official prefixes)."""

    def __init__(self, stages: Sequence[KernelUpdateHead]):
        super().__init__()
        self.mask_head = nn.ModuleList(stages)


def _up2(masks: Tensor) -> Tensor:
    """Mask logits (..., h, w) -> (..., 2h, 2w), bilinear (``mask_upsample_stride`` 2)."""
    lead = masks.shape[:-2]
    up = F.interpolate(
        masks.reshape(-1, 1, *masks.shape[-2:]),
        scale_factor=2,
        mode="bilinear",
        align_corners=False,
    )
    return up.view(*lead, *up.shape[-2:])


@META_ARCH_REGISTRY.register()
class VideoKNet(nn.Module):
    """Video K-Net (clip-level VIS model).

    Training input: a list of clips as the video mapper gives them. Returns the weighted losses
    (``rpn_loss_*``, ``s{stage}_loss_*``, ``tracker_s{stage}_loss_*``).

    Inference input: one dict per video with every frame. Returns ``pred_scores`` (k,),
    ``pred_classes`` (k,), ``pred_masks`` (k, T, H, W) bool at the original size.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        rpn_head: ConvKernelHead,
        roi_head: _Stages,
        tracker: _Stages,
        in_features: List[str],
        pixel_mean: Tuple[float, ...],
        pixel_std: Tuple[float, ...],
        size_divisibility: int = 32,
        tracker_assign_stages: int = 2,
        cost_class: float = 2.0,
        cost_mask: float = 1.0,
        cost_dice: float = 4.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        loss_weights: Dict[str, float] = None,
        seg_weight: float = 1.0,
        stage_loss_weights: Sequence[float] = (1.0, 1.0, 1.0),
        tracker_stage_loss_weights: Sequence[float] = (1.0, 1.0, 1.0),
        max_tracks: int = 10,
        mask_threshold: float = 0.5,
        window_size: int = 0,
        inference_output: str = "tracker",
    ):
        """See ``video_knet/config.py`` (``MODEL.VIDEO_KNET.*``) for each argument;
        ``loss_weights``: class_weight, mask_weight, dice_weight, focal_alpha, focal_gamma,
        dice_eps of :func:`kernel_stage_losses`; ``seg_weight``: the kernel head's semantic loss
        (:func:`semantic_seg_loss`)."""
        super().__init__()
        shapes = backbone.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing or len(in_features) != 4:
            raise ValueError(
                f"MODEL.VIDEO_KNET.IN_FEATURES must name 4 backbone outputs (P2-P5), got "
                f"{in_features} (the backbone has {sorted(shapes)})"
            )
        channels = {shapes[f].channels for f in in_features}
        C = rpn_head.init_kernels.in_channels
        if channels != {C}:
            raise ValueError(
                f"Video K-Net: backbone features have {sorted(channels)} channels, "
                f"MODEL.VIDEO_KNET.HIDDEN_DIM is {C} (set MODEL.FPN.OUT_CHANNELS to it)"
            )
        if not 0 < tracker_assign_stages <= len(tracker.mask_head):
            raise ValueError(
                f"MODEL.VIDEO_KNET.TRACKER_ASSIGN_STAGES ({tracker_assign_stages}) must be in "
                f"[1, TRACKER_STAGES={len(tracker.mask_head)}]"
            )
        if len(stage_loss_weights) != len(roi_head.mask_head) or len(
            tracker_stage_loss_weights
        ) != len(tracker.mask_head):
            raise ValueError(
                "MODEL.VIDEO_KNET.STAGE_LOSS_WEIGHTS / TRACKER_STAGE_LOSS_WEIGHTS need one entry "
                "per stage"
            )
        if inference_output not in INFERENCE_OUTPUTS:
            raise ValueError(
                f"MODEL.VIDEO_KNET.INFERENCE_OUTPUT must be one of {INFERENCE_OUTPUTS}, got "
                f"{inference_output!r}"
            )
        check_test_vis_args(mask_threshold, window_size, max_tracks)
        if window_size > 0 and inference_output != "tracker":
            raise ValueError(
                "TEST.VIS.WINDOW_SIZE > 0 needs MODEL.VIDEO_KNET.INFERENCE_OUTPUT 'tracker' (the "
                f"windows are linked by the tracker's kernels), got {inference_output!r}"
            )
        self.backbone = backbone
        self.rpn_head = rpn_head
        self.roi_head = roi_head
        self.tracker = tracker
        self.in_features = list(in_features)
        self.size_divisibility = size_divisibility
        self.tracker_assign_stages = tracker_assign_stages
        common = dict(
            num_points=0,
            class_cost_type="focal",
            focal_alpha=focal_alpha,
            focal_gamma=focal_gamma,
            mask_cost_type="knet",
        )
        self.matcher = VideoHungarianMatcher(
            cost_class=cost_class, cost_mask=cost_mask, cost_dice=cost_dice, **common
        )
        self.mask_matcher = VideoHungarianMatcher(
            cost_class=0.0, cost_mask=cost_mask, cost_dice=cost_dice, **common
        )
        self.loss_weights = dict(loss_weights or {})
        self.seg_weight = seg_weight
        self.stage_loss_weights = tuple(stage_loss_weights)
        self.tracker_stage_loss_weights = tuple(tracker_stage_loss_weights)
        self.max_tracks = max_tracks
        self.mask_threshold = mask_threshold
        self.window_size = window_size
        self.inference_output = inference_output
        register_pixel_stats(self, pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        k = cfg.MODEL.VIDEO_KNET

        def stage(with_cls=True):
            return KernelUpdateHead(
                k.NUM_CLASSES,
                in_channels=k.HIDDEN_DIM,
                num_heads=k.NHEADS,
                feedforward_channels=k.DIM_FEEDFORWARD,
                hard_mask_thr=k.HARD_MASK_THR,
                with_cls=with_cls,
            )

        return {
            "backbone": build_backbone(cfg),
            "rpn_head": ConvKernelHead(
                k.NUM_CLASSES,
                num_proposals=k.NUM_PROPOSALS,
                channels=k.HIDDEN_DIM,
                kernel_init_std=k.KERNEL_INIT_STD,
                hard_mask_thr=k.HARD_MASK_THR,
            ),
            "roi_head": _Stages([stage() for _ in range(k.NUM_STAGES)]),
            "tracker": _Stages(
                [stage(s < k.TRACKER_ASSIGN_STAGES) for s in range(k.TRACKER_STAGES)]
            ),
            "in_features": list(k.IN_FEATURES),
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "size_divisibility": k.SIZE_DIVISIBILITY,
            "tracker_assign_stages": k.TRACKER_ASSIGN_STAGES,
            "cost_class": k.COST_CLASS,
            "cost_mask": k.COST_MASK,
            "cost_dice": k.COST_DICE,
            "focal_alpha": k.FOCAL_ALPHA,
            "focal_gamma": k.FOCAL_GAMMA,
            "loss_weights": {
                "class_weight": k.CLASS_WEIGHT,
                "mask_weight": k.MASK_WEIGHT,
                "dice_weight": k.DICE_WEIGHT,
                "focal_alpha": k.FOCAL_ALPHA,
                "focal_gamma": k.FOCAL_GAMMA,
                "dice_eps": k.DICE_EPS,
            },
            "seg_weight": k.SEG_WEIGHT,
            "stage_loss_weights": k.STAGE_LOSS_WEIGHTS,
            "tracker_stage_loss_weights": k.TRACKER_STAGE_LOSS_WEIGHTS,
            "max_tracks": cfg.TEST.VIS.MAX_TRACKS,
            "mask_threshold": cfg.TEST.VIS.MASK_THRESHOLD,
            "window_size": cfg.TEST.VIS.WINDOW_SIZE,
            "inference_output": k.INFERENCE_OUTPUT,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def num_classes(self) -> int:
        return self.roi_head.mask_head[0].num_classes

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        """Official (mmdet) weights: ``backbone.*`` / ``neck.*`` renamed to detectron2's."""
        if is_mmdet_detector_state_dict(state_dict, prefix):
            n = convert_mmdet_backbone_neck(state_dict, prefix, resnet=True)
            logger.info(
                "Loaded mmdet (official Video K-Net) weights: %d backbone/neck keys renamed.", n
            )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    # ------------------------------------------------------------------ common
    def _images(self, frames: Sequence[Tensor]) -> ImageList:
        return normalize_and_pad(
            list(frames), self.pixel_mean, self.pixel_std, self.size_divisibility, "Video K-Net"
        )

    def run_frames(self, images: ImageList):
        """Backbone, kernel head and the per-frame stages on F frames.

        Returns:
            a list of the (cls (F, N, K) or None, masks (F, N, h, w), kernels (F, N, C)) of the
            kernel head and of every stage, the features X (F, C, h, w) and the kernel head's
            semantic logits (F, K, h, w).
        """
        feats = self.backbone(images.tensor)
        kernels, masks, x, seg = self.rpn_head([feats[f] for f in self.in_features])
        outs = [(None, masks, kernels)]
        for head in self.roi_head.mask_head:
            outs.append(head(x, outs[-1][2], outs[-1][1]))
        return outs, x, seg

    def run_tracker(self, x: Tensor, kernels: Tensor, masks: Tensor, num_frames: int):
        """The tracker stages on B clips.

        Args:
            x: (F, C, h, w); kernels (F, N, C) and masks (F, N, h, w) of the last per-frame stage.
        Returns:
            the (cls (B, N, K) or None, masks (B, T, N, h, w), kernels) of every tracker stage.
        """
        F_, N, C = kernels.shape
        T = num_frames
        B = F_ // T
        x = x.view(B, T, *x.shape[1:])
        kernels = kernels.view(B, T, N, C).mean(1)  # query_merge_method "mean"
        masks = masks.view(B, T, N, *masks.shape[-2:])
        outs = []
        for s, head in enumerate(self.tracker.mask_head):
            if s == self.tracker_assign_stages:
                kernels = kernels[:, None].expand(B, T, N, C)
            cls, masks, kernels = head.forward_clip(x, kernels, masks)
            outs.append((cls, masks, kernels))
        return outs

    # ---------------------------------------------------------------- training
    def forward(self, batched_inputs: List[Dict[str, object]]):
        """See the class docstring."""
        if not self.training:
            return [self.inference_video(video) for video in batched_inputs]
        T = clip_length(batched_inputs, "Video K-Net")
        images = self._images([f for v in batched_inputs for f in v["image"]])
        outs, x, seg = self.run_frames(images)
        targets = self.prepare_targets(batched_inputs, images.tensor.shape[-2:])
        frame_targets = [
            {
                "labels": t["labels"][t["valid"][:, f]],
                "masks": t["masks"][t["valid"][:, f], f],  # (M_f, h4, w4)
            }
            for t in targets
            for f in range(T)
        ]
        lw = self.loss_weights
        losses = {}
        prev_masks, prev_cls = None, None
        for s, (cls, masks, _) in enumerate(outs):
            up = _up2(masks)  # (F, N, h4, w4)
            if s == 0:  # the kernel head: matched on its own masks, no class
                indices = self._match_frames(None, up.detach(), frame_targets)
            else:  # post_assign=False: the previous stage's predictions
                indices = self._match_frames(prev_cls, prev_masks, frame_targets)
            stage = kernel_stage_losses(
                cls,
                up.flatten(2),
                indices,
                [t["labels"] for t in frame_targets],
                [t["masks"].flatten(1) for t in frame_targets],
                **lw,
            )
            if s == 0:  # + the semantic loss on the matched objects' masks
                stage["loss_seg"] = self.seg_weight * semantic_seg_loss(
                    _up2(seg),
                    indices,
                    [t["labels"] for t in frame_targets],
                    [t["masks"] for t in frame_targets],
                    focal_alpha=lw.get("focal_alpha", 0.25),
                    focal_gamma=lw.get("focal_gamma", 2.0),
                )
            weight = 1.0 if s == 0 else self.stage_loss_weights[s - 1]
            name = "rpn" if s == 0 else f"s{s - 1}"
            losses.update({f"{name}_{k}": v * weight for k, v in stage.items()})
            prev_masks, prev_cls = up.detach(), None if cls is None else cls.detach()

        clip_masks = [t["masks"].flatten(1) for t in targets]  # (M, T*h4*w4)
        indices = None
        for s, (cls, masks, _) in enumerate(self.run_tracker(x, outs[-1][2], outs[-1][1], T)):
            up = _up2(masks).transpose(1, 2)  # (B, N, T, h4, w4)
            if s < self.tracker_assign_stages:
                indices = self.matcher(
                    {"pred_logits": cls.detach(), "pred_masks": up.detach()},
                    [{"labels": t["labels"], "masks": t["masks"]} for t in targets],
                )
            stage = kernel_stage_losses(
                cls, up.flatten(2), indices, [t["labels"] for t in targets], clip_masks, **lw
            )
            weight = self.tracker_stage_loss_weights[s]
            losses.update({f"tracker_s{s}_{k}": v * weight for k, v in stage.items()})
        return losses

    def _match_frames(self, cls, masks: Tensor, frame_targets) -> List[Tuple[Tensor, Tensor]]:
        """Frame-by-frame assignment of (F, N, h4, w4) masks (and (F, N, K) logits or None)."""
        F_, N = masks.shape[:2]
        matcher = self.mask_matcher if cls is None else self.matcher
        logits = cls if cls is not None else masks.new_zeros((F_, N, self.num_classes))
        return matcher(
            {"pred_logits": logits, "pred_masks": masks[:, :, None]},
            [{"labels": t["labels"], "masks": t["masks"][:, None]} for t in frame_targets],
        )

    def prepare_targets(self, batched_inputs, padded_size: Tuple[int, int]) -> List[dict]:
        """Per clip: ``labels`` (M,), ``valid`` (M, T) and ``masks`` (M, T, H_pad/4, W_pad/4) float:
        the padded masks resized to stride 4, bilinear (official ``ref_gt_transform``)."""
        H, W = int(padded_size[0]), int(padded_size[1])
        targets = clip_track_targets(
            batched_inputs, padded_size, self.device, mask_dtype=torch.float32
        )
        for t in targets:
            M, T = t["masks"].shape[:2]
            small = (
                F.interpolate(
                    t["masks"].view(M * T, 1, H, W),
                    (H // 4, W // 4),
                    mode="bilinear",
                    align_corners=False,
                )
                if M
                else t["masks"].new_zeros((0, 1, H // 4, W // 4))
            )
            t["masks"] = small.view(M, T, H // 4, W // 4)
        return targets

    # --------------------------------------------------------------- inference
    def inference_video(self, video: Dict[str, object]) -> Dict[str, object]:
        """The whole video as one clip (official ``simple_test``)."""
        frames, out_size = video_frames(video)
        T = len(frames)
        if 0 < self.window_size < T:
            return self._inference_windows(frames, out_size)
        images = self._images([frames[t] for t in range(T)])
        outs, x, _ = self.run_frames(images)
        if self.inference_output == "tracker":
            tracker = self.run_tracker(x, outs[-1][2], outs[-1][1], T)
            cls = [c for c, _, _ in tracker if c is not None][-1][0]  # (N, K)
            masks = tracker[-1][1][0]  # (T, N, h, w)
            scores, classes, kernels = select_top_pairs(cls.sigmoid(), self.max_tracks)
        else:
            cls, masks, kernels_f = outs[-1]  # (T, N, K), (T, N, h, w), (T, N, C)
            perm = [torch.arange(kernels_f.shape[1], device=self.device)]
            for t in range(1, T):  # link each frame's kernels to the previous frame's
                perm.append(link_queries(kernels_f[t - 1, perm[-1]], kernels_f[t]))
            perm = torch.stack(perm)  # (T, N): kernel of track n in frame t
            cls = torch.gather(cls, 1, perm[..., None].expand_as(cls))
            masks = torch.gather(masks, 1, perm[..., None, None].expand_as(masks))
            scores, classes, kernels = select_top_pairs(cls.sigmoid().mean(0), self.max_tracks)
        pred = self._rescale(_up2(masks[:, kernels]), images, out_size)  # (T, k, H, W)
        return {
            "pred_scores": scores,
            "pred_classes": classes,
            "pred_masks": pred.transpose(0, 1) > self.mask_threshold,
        }

    def _run_clip(self, frames: Sequence[Tensor]):
        """One clip through the whole model: (images, the tracker stages' outputs for B = 1)."""
        images = self._images(frames)
        outs, x, _ = self.run_frames(images)
        return images, self.run_tracker(x, outs[-1][2], outs[-1][1], len(frames))

    def _inference_windows(self, frames, out_size: Tuple[int, int]) -> Dict[str, object]:
        """Windowed inference (see the module docstring): ``pred_mask_rles`` per track."""
        T = len(frames)
        bounds = [(s, min(s + self.window_size, T)) for s in range(0, T, self.window_size)]
        last_cls = self.tracker_assign_stages - 1

        def windows():
            for s, e in bounds:
                _, tracker = self._run_clip([frames[t] for t in range(s, e)])
                cls, _, kernels = tracker[last_cls]
                yield kernels[0], cls[0].sigmoid() * (e - s)

        perms, score_sum = link_windows(windows())
        scores, classes, tracks = select_top_pairs(score_sum / T, self.max_tracks)
        rles: List[List[object]] = [[] for _ in range(len(tracks))]
        for (s, e), perm in zip(bounds, perms):
            images, tracker = self._run_clip([frames[t] for t in range(s, e)])
            masks = tracker[-1][1][0][:, perm[tracks]]  # (T_w, k, h, w)
            pred = self._rescale(_up2(masks), images, out_size) > self.mask_threshold
            for n in range(len(tracks)):
                rles[n].extend(encode_rle(pred[:, n]))
        return {"pred_scores": scores, "pred_classes": classes, "pred_mask_rles": rles}

    @staticmethod
    def _rescale(masks: Tensor, images: ImageList, out_size: Tuple[int, int]) -> Tensor:
        """(T, k, h4, w4) logits -> (T, k, H, W) probabilities: sigmoid, to the padded input size,
        cropped to the frame, to the original size (bilinear; official ``rescale_masks``)."""
        T, k = masks.shape[:2]
        if k == 0:
            return masks.new_zeros((T, 0, *out_size))
        padded = F.interpolate(
            masks.sigmoid(), images.tensor.shape[-2:], mode="bilinear", align_corners=False
        )
        h, w = images.image_sizes[0]
        return F.interpolate(padded[..., :h, :w], out_size, mode="bilinear", align_corners=False)
