"""VISOLO's online inference state: the memory queue, per-frame decoding, grid-similarity linking, tracks.

A video is processed one frame at a time (``VISOLO.init_state`` / ``VISOLO.step``); everything a
later frame needs lives in :class:`VISOLOState`, whose size does not grow with the video: the memory
keeps the newest ``NUM_RECENT`` frames plus at most ``MAX_LONG_TERM`` long-term entries, the bank of
lost instances at most ``LOST_BANK_SIZE`` frames, and masks are stored as compressed RLE.

Legend: G grid cells, D embedding channels, E feature channels, P detections of a frame.
"""

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch

from vis_core.modeling.matrix_nms import matrix_nms

__all__ = [
    "MemoryEntry",
    "MemoryQueue",
    "FrameDetections",
    "Track",
    "VISOLOState",
    "decode_frame",
    "greedy_link",
    "encode_rles",
]

logger = logging.getLogger(__name__)


@dataclass
class MemoryEntry:
    """What one memory frame contributes: reference embeddings of its key map and its grid features,
    transformed once by the temporal aggregation's conv when the frame enters the memory."""

    frame: int
    ref: torch.Tensor  # (1, D, G) reference embedding of the key map K
    # (1, E, S_h, S_w) conv(Cf), the category feature as aggregation reads it
    cat_value: torch.Tensor
    kernel_value: torch.Tensor  # (1, E, S_h, S_w) conv(Mf), the same for the mask (kernel) feature


class MemoryQueue:
    """Frames every ``interval``-th (long-term, at most ``max_long_term``, oldest dropped) plus the
    ``num_recent`` newest ones; the official rule ("every 5 frames plus the latest") with a cap."""

    def __init__(self, interval: int, num_recent: int, max_long_term: int):
        if interval < 1 or num_recent < 1 or max_long_term < 0:
            raise ValueError(
                f"MemoryQueue: interval ({interval}) and num_recent ({num_recent}) must be >= 1 and "
                f"max_long_term ({max_long_term}) >= 0"
            )
        self.interval = interval
        self.num_recent = num_recent
        self.max_long_term = max_long_term
        self.entries: List[MemoryEntry] = []  # sorted by frame

    def __len__(self):
        return len(self.entries)

    def add(self, entry: MemoryEntry) -> None:
        self.entries.append(entry)
        recent = {e.frame for e in self.entries[-self.num_recent :]}
        long_term = [e.frame for e in self.entries if e.frame % self.interval == 0]
        if self.max_long_term > 0:
            long_term = long_term[-self.max_long_term :]
        keep = recent | set(long_term)
        self.entries = [e for e in self.entries if e.frame in keep]

    def newest(self, k: int) -> List[MemoryEntry]:
        """The k newest entries, newest first."""
        return self.entries[::-1][:k]


@dataclass
class FrameDetections:
    """One frame's instances after matrix NMS, at the network input size (h, w), best first."""

    cells: torch.Tensor  # (P,) grid cell of each instance
    scores: torch.Tensor  # (P,)
    labels: torch.Tensor  # (P,)
    class_probs: torch.Tensor  # (P, K) sigmoid class probabilities (not reweighted)
    masks: torch.Tensor  # (P, h, w) bool

    def __len__(self):
        return self.cells.numel()


@dataclass
class Track:
    """One tracked instance: RLE per frame where present and its class probabilities summed."""

    track_id: int
    rles: Dict[int, dict] = field(default_factory=dict)
    prob_sum: Optional[torch.Tensor] = None  # (K,)
    num_frames: int = 0


@dataclass
class LostEntry:
    """Instances of one frame that found no successor, kept for re-identification."""

    frame: int
    query: torch.Tensor  # (1, G, D) query embedding of that frame's key map
    cells: torch.Tensor  # (k,) their grid cells
    track_ids: List[int]


@dataclass
class VISOLOState:
    """Everything the online inference of one video keeps between frames."""

    height: int  # output (original) size
    width: int
    memory: MemoryQueue
    lost_bank_size: int
    video_id: Optional[object] = None
    frame_idx: int = 0
    input_size: Optional[Tuple[int, int]] = (
        None  # (h, w) of the network input, the same for all frames
    )
    prev: Optional[LostEntry] = None  # the previous frame's instances and query embedding
    lost: List[LostEntry] = field(default_factory=list)  # oldest first
    tracks: List[Track] = field(default_factory=list)

    def add_lost(self, entry: LostEntry) -> None:
        if len(entry.track_ids) == 0:
            return
        self.lost.append(entry)
        if self.lost_bank_size > 0 and len(self.lost) > self.lost_bank_size:
            self.lost = self.lost[-self.lost_bank_size :]


def decode_frame(
    class_probs: torch.Tensor,
    kernels: torch.Tensor,
    mask_feat: torch.Tensor,
    image_size: Tuple[int, int],
    weights: Optional[torch.Tensor],
    *,
    score_thr: float,
    mask_thr: float,
    nms_pre: int,
    nms_kernel: str,
    nms_sigma: float,
    update_thr: float,
    max_per_frame: int,
    overlap_thr: float,
) -> FrameDetections:
    """Per-frame instances from VISOLO's grid outputs (the official ``getSegMaskV5``).

    Args:
        class_probs: (G, K) sigmoid class probabilities per cell.
        kernels: (G, E) dynamic kernels per cell.
        mask_feat: (E, H/4, W/4) the mask feature of the padded input.
        image_size: (h, w) the unpadded input; masks are cropped to it.
        weights: (G,) score-reweighting weights, or None.
    """
    device = class_probs.device
    best, labels = class_probs.max(dim=1)  # (G,)
    scores = best * weights if weights is not None else best
    cells = torch.nonzero(scores >= score_thr).squeeze(1)
    h, w = image_size
    empty = FrameDetections(
        cells=cells[:0],
        scores=scores[:0],
        labels=labels[:0],
        class_probs=class_probs[:0],
        masks=torch.zeros((0, h, w), dtype=torch.bool, device=device),
    )
    if cells.numel() == 0:
        return empty
    logits = torch.einsum("pe,ehw->phw", kernels[cells], mask_feat)  # (P, H/4, W/4)
    logits = torch.nn.functional.interpolate(
        logits[None], scale_factor=4.0, mode="bilinear", align_corners=False
    )[0]
    probs = logits[:, :h, :w].sigmoid()  # (P, h, w)
    masks = probs > mask_thr
    area = masks.sum(dim=(1, 2)).float()
    mask_score = (probs * masks).sum(dim=(1, 2)) / area.clamp(min=1.0)
    scores = scores[cells] * mask_score
    nonempty = area > 0
    order = torch.argsort(torch.where(nonempty, scores, -1.0), descending=True)
    order = order[: min(nms_pre, int(nonempty.sum()))]
    cells, scores, masks = cells[order], scores[order], masks[order]
    labels = labels[cells]
    scores = matrix_nms(masks, labels, scores, kernel=nms_kernel, sigma=nms_sigma)
    keep = scores >= update_thr
    cells, scores, masks, labels = cells[keep], scores[keep], masks[keep], labels[keep]
    order = torch.argsort(scores, descending=True)[:max_per_frame]
    cells, scores, masks, labels = cells[order], scores[order], masks[order], labels[order]
    if cells.numel() == 0:
        return empty
    # Drop a mask lying mostly inside a higher-scored kept mask (greedy, best first).
    flat = masks.reshape(masks.shape[0], -1).float()
    inter = (flat @ flat.t()).cpu()  # (P, P)
    area = flat.sum(dim=1).cpu()
    frac = inter / area[None, :].clamp(min=1.0)  # frac[i, j]: share of mask j inside mask i
    keep = np.ones(len(cells), dtype=bool)
    for i in range(len(cells)):
        if keep[i]:
            later = frac[i, i + 1 :] > overlap_thr
            keep[i + 1 :] &= ~later.numpy()
    keep = torch.from_numpy(keep).to(device)
    return FrameDetections(
        cells=cells[keep],
        scores=scores[keep],
        labels=labels[keep],
        class_probs=class_probs[cells[keep]],
        masks=masks[keep],
    )


def greedy_link(
    sim: torch.Tensor,
    candidate_ids: List[int],
    assigned: List[Optional[int]],
    thr: float,
    taken_ids: set,
) -> List[bool]:
    """Link instances of the current frame to candidate instances through their grid similarity.

    Current instances (columns) are visited in order (best score first); each takes the most similar
    candidate (row) not yet taken whose similarity is at least ``thr``. Updates ``assigned`` (track id
    per current instance, None where unlinked) and ``taken_ids`` in place.

    Args:
        sim: (k_cand, k_cur) sigmoid similarities.
    Returns:
        Per candidate, whether it was linked.
    """
    used = [False] * sim.shape[0]
    if sim.numel() == 0:
        return used
    order = torch.argsort(sim, dim=0, descending=True).cpu().numpy()  # (k_cand, k_cur)
    values = sim.cpu().numpy()
    for i in range(sim.shape[1]):
        if assigned[i] is not None:
            continue
        for j in order[:, i]:
            if values[j, i] < thr:
                break
            if not used[j] and candidate_ids[j] not in taken_ids:
                used[j] = True
                assigned[i] = candidate_ids[j]
                taken_ids.add(candidate_ids[j])
                break
    return used


def encode_rles(masks: torch.Tensor) -> List[dict]:
    """(P, H, W) bool -> P compressed RLEs (pycocotools, ``counts`` as bytes)."""
    if masks.shape[0] == 0:
        return []
    array = np.asfortranarray(masks.permute(1, 2, 0).cpu().numpy().astype(np.uint8))
    return mask_util.encode(array)
