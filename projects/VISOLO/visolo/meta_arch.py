"""VISOLO: grid-based space-time aggregation for efficient online VIS (Han et al., CVPR 2022).

Legend: B clips, T frames, K classes, E channels, D embedding channels, S_h x S_w the grid,
G = S_h * S_w cells, H x W the padded input.
"""

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import ImageList, Instances
from torch import nn

from vis_core.modeling.video_inputs import normalize_and_pad, register_pixel_stats

from .checkpoint import upgrade_state_dict
from .heads import (
    CategoryPostBranch,
    CategoryPreBranch,
    KernelPostBranch,
    KernelPreBranch,
    MaskFeatureBranch,
)
from .inference import (
    FrameDetections,
    LostEntry,
    MemoryEntry,
    MemoryQueue,
    Track,
    VISOLOState,
    decode_frame,
    encode_rles,
    greedy_link,
)
from .loss import category_loss, dice_mask_loss, tracking_loss
from .memory import MemoryMatching, TemporalAggregation, reweighting_weights
from .targets import CENTER_REGIONS, assign_cells

__all__ = ["REWEIGHTING_FRAMES", "VISOLO"]

# Which memory frames feed score reweighting (MODEL.VISOLO.REWEIGHTING_FRAMES).
REWEIGHTING_FRAMES = ("official", "recent")

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class VISOLO(nn.Module):
    """VISOLO meta-architecture.

    Training input: a list of B clip dicts (the video mapper's output): ``image`` (T uint8 (3, H, W)),
    ``instances`` (T Instances with gt_classes, gt_masks, gt_ids). Each frame of a clip reads the other
    T-1 frames as its memory (as the official training); returns the loss dict.

    Inference input: a list of video dicts with every frame in ``image`` and the original ``height``,
    ``width``. Frames are processed online through :meth:`init_state` / :meth:`step`; returns one
    common video output per video: ``pred_scores`` (N,), ``pred_classes`` (N,), ``pred_mask_rles``
    (N lists of T RLE dicts or None, at the original size).

    Weights of the official code (``model.Category_branch_pre...``) and of version 1 (no bias in the
    normalised convs) load as they are: see ``checkpoint.upgrade_state_dict``.
    """

    _version = 2

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        in_features: Sequence[str],
        num_classes: int,
        grid: Tuple[int, int],
        hidden_dim: int,
        track_dim: int,
        norm: str,
        category_prior_prob: float,
        size_divisibility: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        score_reweighting: bool,
        reweighting_frames: str = "official",
        aggregate_category: bool,
        aggregate_mask: bool,
        memory_interval: int,
        memory_num_recent: int,
        memory_max_long_term: int,
        sampling_eps: float,
        center_region: str = "mask",
        focal_alpha: float,
        focal_gamma: float,
        category_weight: float,
        mask_weight: float,
        tracking_weight: float,
        dice_eps: float,
        score_thr: float,
        mask_thr: float,
        nms_pre: int,
        nms_kernel: str,
        nms_sigma: float,
        update_thr: float,
        max_per_frame: int,
        overlap_thr: float,
        tracking_thr: float,
        lost_bank_size: int,
        output_mask_thr: float,
        max_tracks: int,
    ):
        super().__init__()
        self.backbone = backbone
        self.in_features = list(in_features)
        if len(self.in_features) != 3:
            raise ValueError(
                f"MODEL.VISOLO.IN_FEATURES must name 3 backbone features (res2, res3, res4), "
                f"got {self.in_features}"
            )
        shapes = backbone.output_shape()
        missing = [f for f in self.in_features if f not in shapes]
        if missing:
            raise ValueError(
                f"MODEL.VISOLO.IN_FEATURES {self.in_features}: the backbone gives {sorted(shapes)}, "
                f"not {missing}; set MODEL.RESNETS.OUT_FEATURES to {self.in_features}"
            )
        c2, c3, c4 = (shapes[f].channels for f in self.in_features)
        self.num_classes = num_classes
        self.grid = (int(grid[0]), int(grid[1]))
        self.category_pre = CategoryPreBranch(c4, hidden_dim, self.grid, norm)
        self.category_post = CategoryPostBranch(hidden_dim, num_classes, norm, category_prior_prob)
        self.kernel_pre = KernelPreBranch(c4, hidden_dim, self.grid, norm)
        self.kernel_post = KernelPostBranch(hidden_dim, norm)
        self.mask_branch = MaskFeatureBranch((c2, c3, c4), hidden_dim, norm)
        self.matching = MemoryMatching(hidden_dim, track_dim, norm)
        self.aggregation = TemporalAggregation(hidden_dim, norm)

        self.size_divisibility = max(size_divisibility, shapes[self.in_features[-1]].stride)
        register_pixel_stats(self, pixel_mean, pixel_std)
        self.score_reweighting = score_reweighting
        if reweighting_frames not in REWEIGHTING_FRAMES:
            raise ValueError(
                f"MODEL.VISOLO.REWEIGHTING_FRAMES = {reweighting_frames!r}; expected one of "
                f"{list(REWEIGHTING_FRAMES)}"
            )
        if center_region not in CENTER_REGIONS:
            raise ValueError(
                f"MODEL.VISOLO.CENTER_REGION = {center_region!r}; expected one of "
                f"{list(CENTER_REGIONS)}"
            )
        self.reweighting_frames = reweighting_frames
        self.center_region = center_region
        self.aggregate_category = aggregate_category
        self.aggregate_mask = aggregate_mask
        self.memory_interval = memory_interval
        self.memory_num_recent = memory_num_recent
        self.memory_max_long_term = memory_max_long_term
        self.sampling_eps = sampling_eps
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.loss_weights = {
            "loss_cat": category_weight,
            "loss_mask": mask_weight,
            "loss_tracking": tracking_weight,
        }
        self.dice_eps = dice_eps
        self.decode_args = dict(
            score_thr=score_thr,
            mask_thr=mask_thr,
            nms_pre=nms_pre,
            nms_kernel=nms_kernel,
            nms_sigma=nms_sigma,
            update_thr=update_thr,
            max_per_frame=max_per_frame,
            overlap_thr=overlap_thr,
        )
        self.tracking_thr = tracking_thr
        self.lost_bank_size = lost_bank_size
        self.output_mask_thr = output_mask_thr
        self.max_tracks = max_tracks

    @classmethod
    def from_config(cls, cfg):
        v = cfg.MODEL.VISOLO
        return {
            "backbone": build_backbone(cfg),
            "in_features": v.IN_FEATURES,
            "num_classes": v.NUM_CLASSES,
            "grid": tuple(v.GRID_NUM),
            "hidden_dim": v.HIDDEN_DIM,
            "track_dim": v.TRACK_DIM,
            "norm": v.NORM,
            "category_prior_prob": v.CATEGORY_PRIOR_PROB,
            "size_divisibility": v.SIZE_DIVISIBILITY,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "score_reweighting": v.SCORE_REWEIGHTING,
            "reweighting_frames": v.REWEIGHTING_FRAMES,
            "aggregate_category": v.TEMPORAL_AGGREGATION_CATEGORY,
            "aggregate_mask": v.TEMPORAL_AGGREGATION_MASK,
            "memory_interval": v.MEMORY.INTERVAL,
            "memory_num_recent": v.MEMORY.NUM_RECENT,
            "memory_max_long_term": v.MEMORY.MAX_LONG_TERM,
            "sampling_eps": v.SAMPLING_EPS,
            "center_region": v.CENTER_REGION,
            "focal_alpha": v.FOCAL_ALPHA,
            "focal_gamma": v.FOCAL_GAMMA,
            "category_weight": v.CATEGORY_WEIGHT,
            "mask_weight": v.MASK_WEIGHT,
            "tracking_weight": v.TRACKING_WEIGHT,
            "dice_eps": v.DICE_EPS,
            "score_thr": v.SCORE_THR,
            "mask_thr": v.MASK_THR,
            "nms_pre": v.NMS_PRE,
            "nms_kernel": v.NMS_KERNEL,
            "nms_sigma": v.NMS_SIGMA,
            "update_thr": v.UPDATE_THR,
            "max_per_frame": v.MAX_PER_FRAME,
            "overlap_thr": v.OVERLAP_THR,
            "tracking_thr": v.TRACKING_THR,
            "lost_bank_size": v.LOST_BANK_SIZE,
            "output_mask_thr": cfg.TEST.VIS.MASK_THRESHOLD,
            "max_tracks": cfg.TEST.VIS.MAX_TRACKS,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ shared per-frame network
    def preprocess(self, images: List[torch.Tensor]) -> ImageList:
        """Normalise and pad a list of (3, h, w) uint8 frames into an ImageList."""
        return normalize_and_pad(
            images, self.pixel_mean, self.pixel_std, self.size_divisibility, "VISOLO"
        )

    def frame_features(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Backbone and per-frame branches.

        Args:
            images: (B, 3, H, W) normalised, padded frames.
        Returns:
            dict of ``key`` K (B, E, S_h, S_w), ``cat_feat`` Cf (B, E, S_h, S_w), ``kernel_feat``
            Mf (B, E, S_h, S_w), ``mask_feat`` (B, E, H/4, W/4).
        """
        feats = self.backbone(images)
        res2, res3, res4 = (feats[f] for f in self.in_features)
        key, cat_feat = self.category_pre(res4)
        return {
            "key": key,
            "cat_feat": cat_feat,
            "kernel_feat": self.kernel_pre(res4),
            "mask_feat": self.mask_branch(res2, res3, res4),
        }

    def aggregate(
        self, sim: torch.Tensor, cat_feat, kernel_feat, mem_cat, mem_kernel, transformed=False
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Temporal aggregation of Cf and Mf (each where enabled).

        Args:
            sim: (B, G, M*G) similarity of the current cells (query) to the memory cells.
            cat_feat, kernel_feat: (B, E, S_h, S_w); mem_cat, mem_kernel: (B, M, E, S_h, S_w).
            transformed: the memory features are already ``aggregation.transform``-ed.
        """
        read = self.aggregation.read if transformed else self.aggregation
        if self.aggregate_category:
            cat_feat = read(sim, cat_feat, mem_cat)
        if self.aggregate_mask:
            kernel_feat = read(sim, kernel_feat, mem_kernel)
        return cat_feat, kernel_feat

    def memory_values(self, feat: torch.Tensor, enabled: bool) -> torch.Tensor:
        """(1, E, S_h, S_w) -> what the memory keeps of it: transformed for aggregation, raw if unused."""
        return self.aggregation.transform(feat[:, None])[:, 0] if enabled else feat

    # ------------------------------------------------------------------ forward
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        upgrade_state_dict(state_dict, prefix, local_metadata.get("version"), self)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def forward(self, batched_inputs: List[dict]):
        if self.training:
            return self.losses(batched_inputs)
        return [self.inference_video(x) for x in batched_inputs]

    def losses(self, batched_inputs: List[dict]) -> Dict[str, torch.Tensor]:
        """The training losses of a batch of B clips of T frames each."""
        num_frames = {len(x["image"]) for x in batched_inputs}
        if len(num_frames) != 1:
            raise ValueError(
                f"VISOLO: all clips of a batch need the same number of frames, got {num_frames}"
            )
        t = num_frames.pop()
        b = len(batched_inputs)
        for x in batched_inputs:
            if "instances" not in x or len(x["instances"]) != t:
                raise ValueError(
                    f"VISOLO training: video {x.get('video_id')} needs 'instances' with one Instances "
                    f"per frame ({t})"
                )
        images = self.preprocess([img for x in batched_inputs for img in x["image"]])
        feats = self.frame_features(images.tensor)
        e = feats["key"].shape[1]
        sh, sw = self.grid
        g = sh * sw
        query, ref = self.matching.embed(feats["key"])
        query = query.reshape(b, t, g, -1)  # (B*T, G, D) -> (B, T, G, D)
        ref = ref.reshape(b, t, -1, g)  # (B*T, D, G) -> (B, T, D, G)
        sim = torch.einsum("btgd,bsdh->btsgh", query, ref)  # (B, T, T, G, G): query t, reference s
        cat_feat = feats["cat_feat"].reshape(b, t, e, sh, sw)
        kernel_feat = feats["kernel_feat"].reshape(b, t, e, sh, sw)
        cat_out, kernel_out = [], []
        for i in range(t):
            others = [s for s in range(t) if s != i] or [i]  # a single frame reads itself
            sim_i = sim[:, i, others].permute(0, 2, 1, 3).reshape(b, g, len(others) * g)
            c, k = self.aggregate(
                sim_i,
                cat_feat[:, i],
                kernel_feat[:, i],
                cat_feat[:, others],
                kernel_feat[:, others],
            )
            cat_out.append(c)
            kernel_out.append(k)
        cat_logits = self.category_post(torch.stack(cat_out, 1).flatten(0, 1))  # (B*T, K, S_h, S_w)
        kernels = self.kernel_post(torch.stack(kernel_out, 1).flatten(0, 1))  # (B*T, E, S_h, S_w)

        padded = tuple(images.tensor.shape[-2:])
        owner_ids, cat_targets, mask_probs, mask_targets, mask_frames = [], [], [], [], []
        for bi, x in enumerate(batched_inputs):
            for ti, inst in enumerate(x["instances"]):
                f = bi * t + ti
                gt = self._padded_masks(inst, padded)  # (N, H, W)
                owner = assign_cells(
                    gt, self.grid, padded, self.sampling_eps, self.center_region
                )  # (G,)
                pos = torch.nonzero(owner >= 0).squeeze(1)
                target = torch.zeros((self.num_classes, g), device=self.device)
                ids = torch.full((g,), -1, dtype=torch.long, device=self.device)
                owner_ids.append(ids)
                cat_targets.append(target)
                if pos.numel() == 0:
                    continue
                target[inst.gt_classes.to(self.device)[owner[pos]], pos] = 1.0
                ids[pos] = inst.gt_ids.to(self.device)[owner[pos]]
                k = kernels[f].flatten(1)[:, pos]  # (E, P)
                logits = torch.einsum("ep,ehw->phw", k, feats["mask_feat"][f])
                logits = F.interpolate(logits[None], size=padded, mode="bilinear")[0]
                mask_probs.append(logits.sigmoid())
                mask_targets.append(gt[owner[pos]].float())
                mask_frames.append(ti)

        loss_cat = category_loss(
            cat_logits.flatten(2),
            torch.stack(cat_targets),
            alpha=self.focal_alpha,
            gamma=self.focal_gamma,
        )
        loss_mask = dice_mask_loss(
            mask_probs,
            mask_targets,
            mask_frames,
            eps=self.dice_eps,
            anchor=kernels.sum() + feats["mask_feat"].sum(),
        )
        # Tracking: every ordered pair (i < j) of a clip, query frame i against reference frame j.
        pairs = [(i, j) for i in range(t) for j in range(i + 1, t)]
        if pairs:
            sims, targets = [], []
            for bi in range(b):
                for i, j in pairs:
                    a, c = owner_ids[bi * t + i], owner_ids[bi * t + j]
                    sims.append(sim[bi, i, j])
                    targets.append(((a[:, None] == c[None, :]) & (a[:, None] >= 0)).float())
            loss_track = tracking_loss(
                torch.stack(sims),
                torch.stack(targets),
                alpha=self.focal_alpha,
                gamma=self.focal_gamma,
            )
        else:
            loss_track = sim.sum() * 0.0
        losses = {"loss_cat": loss_cat, "loss_mask": loss_mask, "loss_tracking": loss_track}
        return {k: v * self.loss_weights[k] for k, v in losses.items()}

    def _padded_masks(self, inst: Instances, padded: Tuple[int, int]) -> torch.Tensor:
        """(N, h, w) ground-truth masks of one frame -> (N, H, W) bool, zero-padded like the image."""
        if len(inst) == 0:
            return torch.zeros((0,) + tuple(padded), dtype=torch.bool, device=self.device)
        gt = inst.gt_masks.tensor.to(self.device)
        out = torch.zeros((gt.shape[0],) + tuple(padded), dtype=torch.bool, device=self.device)
        out[:, : gt.shape[1], : gt.shape[2]] = gt
        return out

    # ------------------------------------------------------------------ online inference
    def init_state(self, height: int, width: int, video_id=None) -> VISOLOState:
        """A fresh state for one video whose outputs are wanted at ``height`` x ``width``."""
        return VISOLOState(
            height=int(height),
            width=int(width),
            video_id=video_id,
            memory=MemoryQueue(
                self.memory_interval, self.memory_num_recent, self.memory_max_long_term
            ),
            lost_bank_size=self.lost_bank_size,
        )

    @torch.no_grad()
    def process_frame(
        self, state: VISOLOState, image: torch.Tensor
    ) -> Tuple[FrameDetections, List[int]]:
        """Network, decoding and tracking of the next frame (no output resizing or RLE encoding).

        Args:
            image: (3, h, w) uint8 frame in the model's input format, h x w the same for all frames.
        Returns:
            the frame's detections at the input size and the track id of each.
        """
        size = tuple(image.shape[-2:])
        if state.input_size is None:
            state.input_size = size
        elif size != state.input_size:
            raise ValueError(
                f"VISOLO: video {state.video_id}: frame {state.frame_idx} has size {size[1]}x{size[0]} "
                f"(WxH) but earlier frames {state.input_size[1]}x{state.input_size[0]}; all frames of "
                "a video must share one size"
            )
        images = self.preprocess([image])
        feats = self.frame_features(images.tensor)
        query, ref = self.matching.embed(feats["key"])  # (1, G, D), (1, D, G)
        memory = state.memory.entries
        entry = MemoryEntry(
            state.frame_idx,
            ref,
            self.memory_values(feats["cat_feat"], self.aggregate_category),
            self.memory_values(feats["kernel_feat"], self.aggregate_mask),
        )
        reads = memory or [entry]  # the first frame reads itself (official code)
        mem_ref = torch.cat([m.ref for m in reads], dim=2)  # (1, D, M*G)
        mem_cat = torch.stack([m.cat_value for m in reads], dim=1)  # (1, M, E, S_h, S_w)
        mem_kernel = torch.stack([m.kernel_value for m in reads], dim=1)
        sim = torch.bmm(query, mem_ref)  # (1, G, M*G)
        cat_feat, kernel_feat = self.aggregate(
            sim, feats["cat_feat"], feats["kernel_feat"], mem_cat, mem_kernel, transformed=True
        )
        class_probs = self.category_post(cat_feat).sigmoid().flatten(2)[0].t()  # (G, K)
        kernels = self.kernel_post(kernel_feat).flatten(2)[0].t()  # (G, E)
        weights = None
        if self.score_reweighting and memory:
            g = query.shape[1]
            index = {m.frame: n for n, m in enumerate(memory)}
            sims = [
                sim[:, :, index[m.frame] * g : (index[m.frame] + 1) * g]
                for m in self.reweighting_references(state.memory)
            ]
            weights = reweighting_weights(sims)[0]  # (G,)
        dets = decode_frame(
            class_probs, kernels, feats["mask_feat"][0], size, weights, **self.decode_args
        )
        track_ids = self._link(state, dets, query, ref)
        state.memory.add(entry)
        return dets, track_ids

    def reweighting_references(self, memory: MemoryQueue) -> List[MemoryEntry]:
        """The memory entries whose similarity maps weight the current frame's scores (Sim~_1, Sim~_2).

        "recent": the two newest entries (frames t-1 and t-2). "official": frame t-1 and the newest
        long-term entry (index a multiple of ``memory.interval``) before it, the official code's
        ``memory[-2]`` / ``memory[-3]``; frame 1 has only frame 0.
        """
        if self.reweighting_frames == "recent":
            return memory.newest(2)
        newest = memory.newest(1)
        last = newest[0].frame
        older = [e for e in memory.entries if e.frame < last and e.frame % memory.interval == 0]
        return newest + older[-1:]

    def _link(self, state: VISOLOState, dets: FrameDetections, query, ref) -> List[int]:
        """Track ids of this frame's detections: previous frame first, then the lost bank, else new."""
        assigned: List[Optional[int]] = [None] * len(dets)
        taken: set = set()
        prev = state.prev
        prev_used = []
        if prev is not None and len(dets):
            sim = torch.bmm(prev.query, ref)[0].sigmoid()  # (G, G): previous cells x current cells
            prev_used = greedy_link(
                sim[prev.cells][:, dets.cells], prev.track_ids, assigned, self.tracking_thr, taken
            )
        for entry in reversed(state.lost):  # newest first
            if all(a is not None for a in assigned):
                break
            sim = torch.bmm(entry.query, ref)[0].sigmoid()
            used = greedy_link(
                sim[entry.cells][:, dets.cells], entry.track_ids, assigned, self.tracking_thr, taken
            )
            if any(used):
                left = [n for n, u in enumerate(used) if not u]
                entry.cells = entry.cells[left]
                entry.track_ids = [entry.track_ids[n] for n in left]
        state.lost = [e for e in state.lost if e.track_ids]
        if prev is not None:  # previous instances without a successor become lost
            left = [n for n in range(len(prev.track_ids)) if not (prev_used and prev_used[n])]
            state.add_lost(
                LostEntry(
                    prev.frame, prev.query, prev.cells[left], [prev.track_ids[n] for n in left]
                )
            )
        for n, a in enumerate(assigned):
            if a is None:
                assigned[n] = len(state.tracks)
                state.tracks.append(Track(track_id=assigned[n]))
        state.prev = LostEntry(state.frame_idx, query, dets.cells, list(assigned))
        return assigned

    def record_frame(
        self, state: VISOLOState, dets: FrameDetections, track_ids: List[int]
    ) -> Instances:
        """Resize a processed frame's masks to the original size, RLE-encode them into the tracks.

        Returns:
            Instances at (height, width): ``pred_masks`` (P, H, W) bool, ``scores``, ``pred_classes``,
            ``track_ids`` (all on the CPU).
        """
        h, w = state.height, state.width
        masks = dets.masks
        if masks.shape[0] and tuple(masks.shape[-2:]) != (h, w):
            masks = F.interpolate(
                masks[None].float(), size=(h, w), mode="bilinear", align_corners=False
            )[0]
            masks = masks >= self.output_mask_thr
        masks = masks.cpu()
        for tid, rle, probs in zip(track_ids, encode_rles(masks), dets.class_probs.cpu()):
            track = state.tracks[tid]
            track.rles[state.frame_idx] = rle
            track.prob_sum = probs.clone() if track.prob_sum is None else track.prob_sum + probs
            track.num_frames += 1
        out = Instances((h, w))
        out.pred_masks = masks
        out.scores = dets.scores.cpu()
        out.pred_classes = dets.labels.cpu()
        out.track_ids = torch.tensor(track_ids, dtype=torch.long)
        state.frame_idx += 1
        return out

    def step(self, state: VISOLOState, image: torch.Tensor) -> Instances:
        """Process the next frame of a video: this frame's tracked instances at the original size.

        Args:
            state: from :meth:`init_state`, updated in place.
            image: (3, h, w) uint8 frame in the model's input format (cfg.INPUT.FORMAT).
        """
        return self.record_frame(state, *self.process_frame(state, image))

    def finalize(self, state: VISOLOState) -> dict:
        """The common video output of everything stepped so far.

        Returns:
            dict with ``pred_scores`` (N,), ``pred_classes`` (N,) (class = argmax of the track's mean
            class probabilities, score = that mean), ``pred_mask_rles`` (N lists of T RLEs or None),
            ``image_size`` (H, W) and ``length`` T; tracks sorted by score, at most ``max_tracks``.
        """
        tracks = [tr for tr in state.tracks if tr.num_frames > 0]
        if tracks:
            mean = torch.stack([tr.prob_sum / tr.num_frames for tr in tracks])  # (N, K)
            scores, classes = mean.max(dim=1)
        else:
            scores, classes = torch.zeros(0), torch.zeros(0, dtype=torch.long)
        order = torch.argsort(scores, descending=True)
        if self.max_tracks > 0:
            order = order[: self.max_tracks]
        length = state.frame_idx
        return {
            "pred_scores": scores[order],
            "pred_classes": classes[order],
            "pred_mask_rles": [
                [tracks[n].rles.get(f) for f in range(length)] for n in order.tolist()
            ],
            "image_size": (state.height, state.width),
            "length": length,
        }

    def inference_video(self, video: dict) -> dict:
        """Online inference over every frame of one video dict (test-mode mapper output)."""
        frames = video.get("image")
        if frames is None or len(frames) == 0:
            raise ValueError(f"VISOLO: video {video.get('video_id')} has no frames")
        state = self.init_state(video["height"], video["width"], video.get("video_id"))
        for frame in frames:
            self.step(state, frame)
        return self.finalize(state)
