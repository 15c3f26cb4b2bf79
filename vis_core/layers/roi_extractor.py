"""Multi-level RoIAlign over an FPN (P2-P5), as mmdet's ``SingleRoIExtractor`` does it.

Legend: B images (frames), C channels, R boxes in all, S the output size.

Built on detectron2's ``ROIPooler`` (``ROIAlignV2`` = torchvision ``roi_align(aligned=True)``, the
same op as mmcv ``RoIAlign(aligned=True)``, pure PyTorch on the CPU). A box of side
s = sqrt(w h) goes to level floor(log2(s / finest_scale + eps)), clamped to the levels there are;
with ``finest_scale`` 56 this is detectron2's mapping with canonical box 224 at level 4. The two
libraries differ only in eps (mmdet 1e-6 inside the log, detectron2 1e-8 relative to 224), which
moves boxes a hair below a power-of-two boundary by one level: ``level_mapping`` picks which.
"""

from __future__ import annotations

import math
from typing import List, Sequence

import torch
from detectron2.modeling.poolers import ROIPooler, convert_boxes_to_pooler_format
from detectron2.structures import Boxes
from torch import Tensor, nn

__all__ = ["MultiLevelRoIAlign"]

_MAPPINGS = ("mmdet", "detectron2")


class MultiLevelRoIAlign(nn.Module):
    """RoIAlign of boxes on the FPN level that fits their size."""

    def __init__(
        self,
        output_size: int,
        strides: Sequence[int] = (4, 8, 16, 32),
        sampling_ratio: int = 2,
        finest_scale: float = 56.0,
        level_mapping: str = "mmdet",
    ):
        """
        Args:
            output_size: S, the side of the pooled features (7 for boxes, 14 for masks).
            strides: the strides of the input levels, finest first (powers of two, consecutive).
            sampling_ratio: sampling points per output bin and axis (mmdet 2; 0 = adaptive).
            finest_scale: box side that maps to the finest level's upper boundary (mmdet 56).
            level_mapping: "mmdet" (eps 1e-6 inside the log, the official TeViT/QueryInst code) or
                "detectron2" (``ROIPooler``'s own assignment, eps 1e-8).
        """
        super().__init__()
        if level_mapping not in _MAPPINGS:
            raise ValueError(
                f"MultiLevelRoIAlign: level_mapping must be one of {_MAPPINGS}, got {level_mapping!r}"
            )
        levels = [math.log2(s) for s in strides]
        if any(lv != int(lv) for lv in levels) or [int(lv) for lv in levels] != list(
            range(int(levels[0]), int(levels[0]) + len(levels))
        ):
            raise ValueError(
                f"MultiLevelRoIAlign: strides must be consecutive powers of two, got {tuple(strides)}"
            )
        self.strides = tuple(int(s) for s in strides)
        self.output_size = int(output_size)
        self.finest_scale = float(finest_scale)
        self.level_mapping = level_mapping
        # canonical level/size chosen so that detectron2's mapping equals floor(log2(s / finest)).
        min_level = int(levels[0])
        self.pooler = ROIPooler(
            output_size=self.output_size,
            scales=tuple(1.0 / s for s in self.strides),
            sampling_ratio=sampling_ratio,
            pooler_type="ROIAlignV2",
            canonical_box_size=int(round(self.finest_scale * 4)),
            canonical_level=min_level + 2,
        )

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    def levels(self, boxes: Tensor) -> Tensor:
        """(R,) level index in [0, num_levels) of each of the (R, 4) boxes (x1, y1, x2, y2)."""
        side = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
        if self.level_mapping == "mmdet":
            level = torch.floor(torch.log2(side / self.finest_scale + 1e-6))
        else:
            level = torch.floor(torch.log2(side / (self.finest_scale * 4) + 1e-8) + 2)
        return level.clamp(min=0, max=self.num_levels - 1).to(torch.int64)

    def forward(self, features: List[Tensor], boxes: List[Tensor]) -> Tensor:
        """
        Args:
            features: num_levels maps (B, C, H_l, W_l), finest first.
            boxes: B tensors (R_b, 4), absolute (x1, y1, x2, y2) in input pixels.
        Returns:
            (R, C, S, S), R = sum R_b, boxes in the order of ``boxes``.
        """
        if len(features) != self.num_levels:
            raise ValueError(
                f"MultiLevelRoIAlign: {len(features)} feature maps for strides {self.strides}"
            )
        if len(boxes) != features[0].shape[0]:
            raise ValueError(
                f"MultiLevelRoIAlign: {len(boxes)} box lists for a batch of {features[0].shape[0]}"
            )
        if self.level_mapping == "detectron2":
            return self.pooler(features, [Boxes(b) for b in boxes])
        rois = convert_boxes_to_pooler_format([Boxes(b) for b in boxes])  # (R, 5)
        C = features[0].shape[1]
        S = self.output_size
        out = features[0].new_zeros((rois.shape[0], C, S, S))
        if rois.shape[0] == 0:
            return out + sum(f.sum() * 0.0 for f in features)  # keep the graph
        level = self.levels(rois[:, 1:])
        for index, pooler in enumerate(self.pooler.level_poolers):
            inds = torch.nonzero(level == index, as_tuple=True)[0]
            if inds.numel():
                out[inds] = pooler(features[index], rois[inds]).to(out.dtype)
        return out
