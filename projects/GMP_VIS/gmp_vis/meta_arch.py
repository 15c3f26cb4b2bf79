"""GMP-VIS: the meta-architecture (backbone, deformable encoder, per-frame deformable decoder, GTA,
instance-sequence heads, graph-matching association of consecutive clips).

Legend: B samples, J clips of a training sample, T frames of a clip, F frames, N queries per frame
(= instance sequences of a clip), K classes, M ground-truth tracks, E embedding channels, H, W the
original video size.

Training: each sample holds NUM_TRAIN_CLIPS consecutive clips of T frames of one video. Every clip
is decoded on its own and its N instance sequences are matched to the tracks present in it by the
clip-level Hungarian matcher (class, mask and box costs); the losses are VisTR's (class CE, box L1
and GIoU, mask BCE and dice) on every decoder layer. The association loss matches the matched
sequences of each clip (graph 1) to those of the clip before (graph 2) with the relaxed QAP and
compares the soft assignment with the true one (same track) by class-balanced BCE, so the node
embeddings learn to make the graph matching right.

Inference: the video clip by clip. Each clip's sequences scoring at least SCORE_THRESHOLD are
associated with the active tracks (:class:`Tracker`: QAP or Hungarian on the node affinities); a
sequence that matches no track starts one. Masks are RLE-encoded clip by clip, so memory is bounded
by one clip. A track's score is the mean over its frames of the best class probability, its
category the majority vote of the frames' best classes (the official code's rule).
"""

from __future__ import annotations

import logging
import math
from typing import Dict, List, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import ImageList
from torch import Tensor, nn
from torchvision.ops import box_convert

from vis_core.data.clip_targets import clip_length, clip_track_targets, sub_clip_targets
from vis_core.inference.postprocess import encode_rle, masks_to_original_size
from vis_core.matching import VideoHungarianMatcher, permutation_bce_loss
from vis_core.modeling.criterion import VideoSetCriterion
from vis_core.modeling.pixel_decoder import MSDeformAttnPixelDecoder, build_pixel_decoder
from vis_core.modeling.video_inputs import (
    check_test_vis_args,
    normalize_and_pad,
    register_pixel_stats,
    video_frames,
)

from .association import GraphAssociation, Tracker
from .decoder import GMPVISDecoder

__all__ = ["GMPVIS"]

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class GMPVIS(nn.Module):
    """GMP-VIS for video instance segmentation.

    Training input: the video mapper's samples (``image``: NUM_TRAIN_CLIPS x T consecutive uint8
    (3, H, W) frames; ``instances``: as many ``Instances`` with gt_classes, gt_boxes, gt_masks,
    gt_ids). Returns the weighted losses (``loss_ce``, ``loss_bbox``, ``loss_giou``, ``loss_mask``,
    ``loss_dice``, their ``_<i>`` layer copies, ``loss_match``).

    Inference input: one dict per video with every frame. Returns one dict per video with
    ``pred_scores`` (k,), ``pred_classes`` (k,) and ``pred_mask_rles`` (k lists of one COCO RLE or
    None per frame, at the original size).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        pixel_decoder: MSDeformAttnPixelDecoder,
        decoder: GMPVISDecoder,
        criterion: VideoSetCriterion,
        association: GraphAssociation,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisibility: int = 32,
        clip_length: int = 36,
        num_train_clips: int = 2,
        matching_weight: float = 1.0,
        score_threshold: float = 0.1,
        embed_momentum: float = 0.8,
        max_inactive_clips: int = 3,
        max_tracks: int = 10,
        mask_threshold: float = 0.5,
    ):
        """
        Args:
            backbone: detectron2 backbone giving the pixel decoder's features.
            pixel_decoder: the deformable encoder and the stride-4 mask features.
            decoder: :class:`GMPVISDecoder` (decoder, GTA, heads).
            criterion: the set criterion with its Hungarian matcher.
            association: the graph matching of consecutive clips.
            pixel_mean, pixel_std: per-channel normalisation of the input frames.
            size_divisibility: frames are padded to a multiple of this.
            clip_length: T of an inference clip.
            num_train_clips: J consecutive clips a training sample holds.
            matching_weight: weight of the association loss (0: not computed).
            score_threshold: inference sequences below this are background.
            embed_momentum: EMA momentum of a track's embedding.
            max_inactive_clips: clips a track stays associable without being continued.
            max_tracks: tracks kept per video (top scores).
            mask_threshold: mask probability threshold.
        """
        super().__init__()
        if clip_length < 1 or num_train_clips < 1:
            raise ValueError(
                f"GMP-VIS: CLIP_LENGTH ({clip_length}) and NUM_TRAIN_CLIPS ({num_train_clips}) "
                "must be >= 1"
            )
        check_test_vis_args(mask_threshold, 0, max_tracks)
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.decoder = decoder
        self.criterion = criterion
        self.association = association
        self.size_divisibility = size_divisibility
        self.clip_length = clip_length
        self.num_train_clips = num_train_clips
        self.matching_weight = matching_weight
        self.score_threshold = score_threshold
        self.embed_momentum = embed_momentum
        self.max_inactive_clips = max_inactive_clips
        self.max_tracks = max_tracks
        self.mask_threshold = mask_threshold
        register_pixel_stats(self, pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg):
        g = cfg.MODEL.GMP_VIS
        sampled = cfg.INPUT.SAMPLING_FRAME_NUM
        if sampled % g.NUM_TRAIN_CLIPS:
            raise ValueError(
                f"INPUT.SAMPLING_FRAME_NUM ({sampled}) must be a multiple of "
                f"MODEL.GMP_VIS.NUM_TRAIN_CLIPS ({g.NUM_TRAIN_CLIPS}): a training sample is that "
                "many consecutive clips"
            )
        pd = g.PIXEL_DECODER
        if pd.CONVS_DIM != g.HIDDEN_DIM:
            raise ValueError(
                f"MODEL.GMP_VIS.HIDDEN_DIM ({g.HIDDEN_DIM}) must equal PIXEL_DECODER.CONVS_DIM "
                f"({pd.CONVS_DIM}): the decoder reads the encoder's memory"
            )
        backbone = build_backbone(cfg)
        levels = len(pd.TRANSFORMER_IN_FEATURES)
        pixel_decoder = build_pixel_decoder(
            pd, backbone.output_shape(), "MODEL.GMP_VIS.PIXEL_DECODER", num_output_levels=levels
        )
        decoder = GMPVISDecoder(
            num_classes=g.NUM_CLASSES,
            hidden_dim=g.HIDDEN_DIM,
            num_queries=g.NUM_QUERIES,
            nheads=g.NHEADS,
            dim_feedforward=g.DIM_FEEDFORWARD,
            dec_layers=g.DEC_LAYERS,
            dec_n_points=g.DEC_N_POINTS,
            dropout=g.DROPOUT,
            gta_layers=g.GTA_LAYERS,
            num_levels=levels,
            mask_dim=pd.MASK_DIM,
            embed_dim=g.EMBED_DIM,
        )
        weights = {
            "loss_ce": g.CLASS_WEIGHT,
            "loss_mask": g.MASK_WEIGHT,
            "loss_dice": g.DICE_WEIGHT,
            "loss_bbox": g.BOX_L1_WEIGHT,
            "loss_giou": g.GIOU_WEIGHT,
        }
        if g.DEEP_SUPERVISION:
            weights = VideoSetCriterion.aux_weight_dict(weights, g.DEC_LAYERS - 1)
        criterion = VideoSetCriterion(
            g.NUM_CLASSES,
            matcher=VideoHungarianMatcher(cfg, node="MODEL.GMP_VIS"),
            weight_dict=weights,
            eos_coef=g.NO_OBJECT_WEIGHT,
            losses=("labels", "masks", "boxes"),
            num_points=g.TRAIN_NUM_POINTS,
            oversample_ratio=g.OVERSAMPLE_RATIO,
            importance_sample_ratio=g.IMPORTANCE_SAMPLE_RATIO,
        )
        association = GraphAssociation(
            mode=g.ASSOCIATION,
            edges=g.EDGES,
            edge_sigma=g.EDGE_SIGMA,
            edge_weight=g.EDGE_WEIGHT,
            qap_iters=g.QAP_ITERS,
            qap_step=g.QAP_STEP,
            qap_train_iters=g.QAP_TRAIN_ITERS,
            qap_train_step=g.QAP_TRAIN_STEP,
            match_threshold=g.MATCH_THRESHOLD,
            size_correction=g.SIZE_CORRECTION,
        )
        return {
            "backbone": backbone,
            "pixel_decoder": pixel_decoder,
            "decoder": decoder,
            "criterion": criterion,
            "association": association,
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "size_divisibility": g.SIZE_DIVISIBILITY,
            "clip_length": g.CLIP_LENGTH,
            "num_train_clips": g.NUM_TRAIN_CLIPS,
            "matching_weight": g.MATCHING_WEIGHT,
            "score_threshold": g.SCORE_THRESHOLD,
            "embed_momentum": g.EMBED_MOMENTUM,
            "max_inactive_clips": g.MAX_INACTIVE_CLIPS,
            "max_tracks": cfg.TEST.VIS.MAX_TRACKS,
            "mask_threshold": cfg.TEST.VIS.MASK_THRESHOLD,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def num_classes(self) -> int:
        return self.decoder.num_classes

    # ------------------------------------------------------------------ common
    def _images(self, frames: Sequence[Tensor]) -> ImageList:
        return normalize_and_pad(
            list(frames), self.pixel_mean, self.pixel_std, self.size_divisibility, "GMP-VIS"
        )

    def _decode(self, images: ImageList, num_frames: int, return_aux: bool) -> Dict[str, object]:
        """Frames of clips of ``num_frames`` -> the decoder's outputs (see GMPVISDecoder)."""
        features = self.backbone(images.tensor)
        mask_features, levels = self.pixel_decoder.forward_features(features)
        return self.decoder(levels, mask_features, num_frames, return_aux=return_aux)

    # ---------------------------------------------------------------- training
    def forward(self, batched_inputs: List[Dict[str, object]]):
        """See the class docstring."""
        if not self.training:
            return [self.inference_video(video) for video in batched_inputs]
        total = clip_length(batched_inputs, "GMP-VIS")
        J = self.num_train_clips
        if total % J:
            raise ValueError(
                f"GMP-VIS: training samples of {total} frames do not split into NUM_TRAIN_CLIPS={J} "
                "clips (set INPUT.SAMPLING_FRAME_NUM to a multiple of it)"
            )
        T = total // J
        images = self._images([f for v in batched_inputs for f in v["image"]])
        out = self._decode(images, T, return_aux=True)  # B*J clips, sample after sample
        padded = images.tensor.shape[-2:]
        tracks = clip_track_targets(batched_inputs, padded, self.device, with_boxes=True)
        scale = torch.tensor([padded[1], padded[0]] * 2, dtype=torch.float32, device=self.device)
        targets, clip_tracks = [], []
        for target in tracks:
            for j in range(J):
                clip, keep = sub_clip_targets(target, j * T, (j + 1) * T)
                clip["boxes"] = box_convert(clip["boxes"], "xyxy", "cxcywh") / scale
                targets.append(clip)
                clip_tracks.append(keep)  # the sample-track index of each clip target
        losses, indices = self.criterion(out, targets, return_indices=True)
        if self.matching_weight > 0:
            losses["loss_match"] = self.matching_weight * self._association_loss(
                out, indices, clip_tracks, len(batched_inputs), J
            )
        return losses

    def _association_loss(self, out, indices, clip_tracks, B: int, J: int) -> Tensor:
        """Mean over the (clip, previous clip) pairs of the class-balanced BCE between the relaxed
        QAP assignment of their matched sequences and the true one (the same ground-truth track)."""
        terms = []
        for b in range(B):
            for j in range(1, J):
                cur, prev = b * J + j, b * J + j - 1
                (q1, m1), (q2, m2) = indices[cur], indices[prev]
                q1, q2 = q1.to(self.device), q2.to(self.device)
                ids1 = clip_tracks[cur][m1.to(clip_tracks[cur].device)]
                ids2 = clip_tracks[prev][m2.to(clip_tracks[prev].device)]
                if len(ids1) == 0 or len(ids2) == 0:
                    continue
                boxes = out["pred_boxes"].detach()
                soft = self.association.soft_assignment(
                    out["pred_embeds"][cur, q1],
                    out["pred_embeds"][prev, q2],
                    boxes[cur, q1, 0, :2],  # the current clip's first frame
                    boxes[prev, q2, -1, :2],  # the previous clip's last frame
                )
                truth = (ids1[:, None] == ids2[None]).float()  # (n1, n2)
                terms.append(permutation_bce_loss(soft, truth))
        if not terms:
            return out["pred_embeds"].sum() * 0.0
        return torch.stack(terms).mean()

    # --------------------------------------------------------------- inference
    def run_clip(self, frames: Sequence[Tensor]):
        """One clip of one video through the model: (images, the decoder's outputs of clip 0)."""
        images = self._images(frames)
        return images, self._decode(images, len(frames), return_aux=False)

    def inference_video(self, video: Dict[str, object]) -> Dict[str, object]:
        """One video, clip by clip (see the module docstring)."""
        frames, out_size = video_frames(video)
        total = len(frames)
        tracker = Tracker(self.association, self.embed_momentum, self.max_inactive_clips)
        tracks: List[Dict[str, object]] = []  # "score_sum", "votes" (K,), "frames", "rles"
        logit_threshold = math.log(self.mask_threshold / (1 - self.mask_threshold))
        for start in range(0, total, self.clip_length):
            end = min(start + self.clip_length, total)
            images, out = self.run_clip([frames[t] for t in range(start, end)])
            probs = out["pred_frame_logits"][0].softmax(-1)[..., :-1]  # (N, T, K)
            frame_scores, frame_classes = probs.max(-1)  # (N, T)
            keep = (frame_scores.mean(1) >= self.score_threshold).nonzero()[:, 0]
            boxes = out["pred_boxes"][0, keep]  # (n, T, 4)
            ids = tracker.update(out["pred_embeds"][0, keep], boxes[:, 0, :2], boxes[:, -1, :2])
            masks = masks_to_original_size(
                out["pred_masks"][0, keep],
                images.image_sizes[0],
                tuple(images.tensor.shape[-2:]),
                out_size,
                logit_threshold,
            )  # (n, T, H, W)
            for i, k in enumerate(ids):
                if k == len(tracks):
                    tracks.append(
                        {
                            "score_sum": 0.0,
                            "votes": torch.zeros(self.num_classes),
                            "frames": 0,
                            "rles": [None] * start,
                        }
                    )
                track, n = tracks[k], int(keep[i])
                track["score_sum"] += float(frame_scores[n].sum())
                track["votes"] += torch.bincount(
                    frame_classes[n].cpu(), minlength=self.num_classes
                ).float()
                track["frames"] += end - start
                track["rles"].extend(encode_rle(masks[i]))
            for track in tracks:  # tracks not continued: nothing in this clip's frames
                track["rles"].extend([None] * (end - len(track["rles"])))
            del out, masks
        if not tracks:
            return {
                "pred_scores": torch.zeros(0),
                "pred_classes": torch.zeros(0, dtype=torch.long),
                "pred_mask_rles": [],
            }
        scores = torch.tensor([t["score_sum"] / t["frames"] for t in tracks])
        classes = torch.stack([t["votes"] for t in tracks]).argmax(-1)
        order = scores.argsort(descending=True)[: self.max_tracks]
        return {
            "pred_scores": scores[order],
            "pred_classes": classes[order],
            "pred_mask_rles": [tracks[int(k)]["rles"] for k in order],
        }
