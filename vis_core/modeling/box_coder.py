"""The DeltaXYWH box parametrisation of Sparse R-CNN / QueryInst heads (TeViT, EfficientVIS).

Legend: N boxes. Boxes are absolute (x1, y1, x2, y2); deltas are (dx, dy, dw, dh), normalised by
``stds`` (and shifted by ``means``) as in mmdet's ``DeltaXYWHBBoxCoder``:

    dx = (gx - px) / pw,  dy = (gy - py) / ph,  dw = log(gw / pw),  dh = log(gh / ph),

with centres (x1 + x2) / 2 and sizes x2 - x1. Decoding clamps the denormalised dw, dh to
+-log(1000 / 16) (mmdet's ``wh_ratio_clip``) and, as the query heads are configured, never clips the
boxes to the image. detectron2's ``Box2BoxTransform(weights=(1 / s for s in stds))`` is the same
parametrisation up to the clamp (only from above there) and the order of the arithmetic.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["DeltaXYWHBoxCoder"]


class DeltaXYWHBoxCoder:
    """Encode boxes as deltas from reference boxes and decode deltas back to boxes."""

    def __init__(
        self,
        means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
        stds: Sequence[float] = (0.5, 0.5, 1.0, 1.0),
        wh_ratio_clip: float = 16 / 1000,
    ):
        """
        Args:
            means, stds: per-coordinate normalisation of the deltas (TeViT: 0 and (0.5, 0.5, 1, 1)).
            wh_ratio_clip: decoded dw, dh are clamped to +-|log(wh_ratio_clip)|.
        """
        if len(means) != 4 or len(stds) != 4:
            raise ValueError(
                f"DeltaXYWHBoxCoder: means and stds need 4 values, got {means}, {stds}"
            )
        if any(s <= 0 for s in stds):
            raise ValueError(f"DeltaXYWHBoxCoder: stds must be > 0, got {stds}")
        if not 0.0 < wh_ratio_clip < 1.0:
            raise ValueError(
                f"DeltaXYWHBoxCoder: wh_ratio_clip must be in (0, 1), got {wh_ratio_clip}"
            )
        self.means = tuple(float(m) for m in means)
        self.stds = tuple(float(s) for s in stds)
        self.max_ratio = abs(math.log(wh_ratio_clip))

    def encode(self, boxes: Tensor, targets: Tensor) -> Tensor:
        """Deltas that turn ``boxes`` into ``targets``.

        Args:
            boxes: (..., 4) reference boxes (x1, y1, x2, y2), positive width and height.
            targets: (..., 4) target boxes, same shape.
        Returns:
            (..., 4) normalised deltas.
        """
        if boxes.shape != targets.shape or boxes.shape[-1:] != (4,):
            raise ValueError(
                f"DeltaXYWHBoxCoder.encode: boxes {tuple(boxes.shape)} and targets "
                f"{tuple(targets.shape)} must both be (..., 4)"
            )
        pxy = (boxes[..., :2] + boxes[..., 2:]) * 0.5
        pwh = boxes[..., 2:] - boxes[..., :2]
        gxy = (targets[..., :2] + targets[..., 2:]) * 0.5
        gwh = targets[..., 2:] - targets[..., :2]
        deltas = torch.cat([(gxy - pxy) / pwh, torch.log(gwh / pwh)], dim=-1)
        return (deltas - deltas.new_tensor(self.means)) / deltas.new_tensor(self.stds)

    def decode(self, boxes: Tensor, deltas: Tensor) -> Tensor:
        """Apply ``deltas`` to ``boxes``.

        Args:
            boxes: (..., 4) reference boxes (x1, y1, x2, y2).
            deltas: (..., 4) normalised deltas, same shape.
        Returns:
            (..., 4) decoded boxes (x1, y1, x2, y2), not clipped to any image.
        """
        if boxes.shape != deltas.shape or boxes.shape[-1:] != (4,):
            raise ValueError(
                f"DeltaXYWHBoxCoder.decode: boxes {tuple(boxes.shape)} and deltas "
                f"{tuple(deltas.shape)} must both be (..., 4)"
            )
        deltas = deltas * deltas.new_tensor(self.stds) + deltas.new_tensor(self.means)
        pxy = (boxes[..., :2] + boxes[..., 2:]) * 0.5
        pwh = boxes[..., 2:] - boxes[..., :2]
        gxy = pxy + pwh * deltas[..., :2]
        gwh = pwh * deltas[..., 2:].clamp(min=-self.max_ratio, max=self.max_ratio).exp()
        return torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)

    def __repr__(self) -> str:
        return f"DeltaXYWHBoxCoder(means={self.means}, stds={self.stds})"
