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
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from vis_core.inference.postprocess import encode_rle, link_queries, select_top_pairs

__all__ = [
    "select_top_pairs",
    "masks_to_original_size",
    "encode_rle",
    "link_queries",
]

logger = logging.getLogger(__name__)


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
