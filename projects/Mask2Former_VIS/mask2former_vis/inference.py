"""Post-processing and windowed inference helpers of Mask2Former-VIS.

Legend: Q queries, K classes, N kept tracks, T frames, h, w the mask-logit size (stride 4 of the
padded input), H, W the original video size, C channels.

Whole-video inference keeps the published behaviour: the top-k (query, class) pairs of the softmax
scores (no-object dropped), each pair's mask tube upsampled to the padded input, cropped to the
image, resized to the original size and thresholded. Only the kept tubes are upsampled, frame
chunk by frame chunk, on the device the model runs on.

Windowed inference (our addition for long videos) runs the model on consecutive windows, links the
queries of each window to those of the previous one by Hungarian matching on the normalised query
embeddings (cost 1 - cosine similarity), averages the class probabilities over the frames, and
encodes the kept tracks' masks to RLE window by window, so memory stays bounded by the window.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = [
    "select_top_pairs",
    "masks_to_original_size",
    "encode_rle",
    "link_queries",
]

logger = logging.getLogger(__name__)


def select_top_pairs(probs: Tensor, k: int) -> Tuple[Tensor, Tensor, Tensor]:
    """The k best (query, class) pairs.

    Args:
        probs: (Q, K) class probabilities (no-object dropped).
        k: pairs to keep (at most Q * K).
    Returns:
        scores (N,), classes (N,) long, query indices (N,) long, best first; N = min(k, Q * K).
    """
    Q, K = probs.shape
    scores, flat = probs.flatten().topk(min(k, Q * K), sorted=True)
    return scores, flat % K, torch.div(flat, K, rounding_mode="floor")


def masks_to_original_size(
    mask_logits: Tensor,
    image_size: Tuple[int, int],
    padded_size: Tuple[int, int],
    output_size: Tuple[int, int],
    threshold: float = 0.0,
    frame_chunk: int = 16,
) -> Tensor:
    """Binary masks at the original video size, computed a chunk of frames at a time.

    Args:
        mask_logits: (N, T, h, w) mask logits of the padded input.
        image_size: (height, width) of the resized frames without padding.
        padded_size: (height, width) of the padded input.
        output_size: (H, W) of the original video.
        threshold: logit threshold (0 = probability 0.5).
        frame_chunk: frames upsampled together.
    Returns:
        (N, T, H, W) bool, on the device of ``mask_logits``.
    """
    N, T = mask_logits.shape[:2]
    H, W = output_size
    out = torch.empty((N, T, H, W), dtype=torch.bool, device=mask_logits.device)
    if N == 0:
        return out
    for s in range(0, T, frame_chunk):
        chunk = mask_logits[:, s : s + frame_chunk]
        chunk = F.interpolate(chunk, size=padded_size, mode="bilinear", align_corners=False)
        chunk = chunk[:, :, : image_size[0], : image_size[1]]
        chunk = F.interpolate(chunk, size=(H, W), mode="bilinear", align_corners=False)
        out[:, s : s + chunk.shape[1]] = chunk > threshold
    return out


def encode_rle(masks: Tensor) -> List[Optional[Dict[str, object]]]:
    """COCO compressed RLE of binary masks, with the run lengths computed on the masks' device.

    Only the run lengths travel to the host (no dense host copy of the masks).

    Args:
        masks: (M, H, W) bool.
    Returns:
        M entries: {"size": [H, W], "counts": str} or None for an empty mask.
    """
    M, H, W = masks.shape
    if M == 0:
        return []
    L = H * W
    flat = masks.transpose(1, 2).reshape(M, L)  # column-major order, as COCO RLE
    nonempty = flat.any(dim=1).tolist()
    padded = torch.cat([flat.new_zeros((M, 1)), flat], dim=1)  # runs start with zeros
    change = padded[:, 1:] != padded[:, :-1]  # (M, L): True where a run starts
    rows, cols = change.nonzero(as_tuple=True)
    rows, cols = rows.cpu().numpy(), cols.cpu().numpy()
    starts = np.searchsorted(rows, np.arange(M + 1))
    out: List[Optional[Dict[str, object]]] = []
    for m in range(M):
        if not nonempty[m]:
            out.append(None)
            continue
        bounds = np.concatenate(([0], cols[starts[m] : starts[m + 1]], [L]))
        counts = np.diff(bounds).tolist()  # first run (zeros) may be 0 long
        rle = mask_util.frPyObjects({"size": [H, W], "counts": counts}, H, W)
        rle["counts"] = rle["counts"].decode("ascii")
        out.append(rle)
    return out


def link_queries(reference: Tensor, embeds: Tensor) -> Tensor:
    """Order the queries of a window like those of the reference window.

    Args:
        reference: (Q, C) embeddings of the previous window, in track order.
        embeds: (Q, C) embeddings of the current window.
    Returns:
        (Q,) long permutation ``perm`` such that ``embeds[perm][i]`` continues track i; found by
        Hungarian matching on 1 - cosine similarity.
    """
    if reference.shape != embeds.shape:
        raise ValueError(
            f"link_queries: reference {tuple(reference.shape)} and embeds {tuple(embeds.shape)} differ"
        )
    sim = F.normalize(reference.float(), dim=-1) @ F.normalize(embeds.float(), dim=-1).T
    rows, cols = linear_sum_assignment((1.0 - sim).cpu().numpy())
    perm = torch.empty(len(rows), dtype=torch.long)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.long)
    return perm.to(embeds.device)
