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

from vis_core.inference.postprocess import (
    encode_rle,
    link_queries,
    masks_to_original_size,
    select_top_pairs,
)

__all__ = [
    "select_top_pairs",
    "masks_to_original_size",
    "encode_rle",
    "link_queries",
]

logger = logging.getLogger(__name__)
