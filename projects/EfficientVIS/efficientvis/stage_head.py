"""EfficientVIS' stage head: the QueryInst stage (:class:`vis_core.modeling.query_inst.DIIHead`)
with the paper's temporal dynamic convolution (TDC) and its time-shared query baseline.

Legend: B clips, T frames, F = B * T frames (clip-major), N tracklets, C channels, S RoI size,
R = F * N (frame, tracklet) pairs, D = 2r + 1 frames of a TDC window.

TDC (paper eq.): o_i^t = sum over t' in {t-r, ..., t+r} of a_{i,(t,t')} o conv2d(w_i^t,
RoIAlign(f^{t'}, b_i^{t'})). Built on Sparse R-CNN's dynamic conv: frame t's query q_i^t makes the
dynamic filters w_i^t (``dynamic_layer``), which act on the RoI features of the same tracklet in
every frame t' of the window, giving maps F_{t'} (S*S, C); a_{i,(t,t')} (S x S) is the softmax over
t' of the per-position cosine similarity between F_t and F_{t'} (the third-party summary's
description; the paper's method section was not available); at a clip's ends only the existing
neighbours enter the softmax. The weighted sum then goes through ``fc_layer`` as in Sparse R-CNN.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from vis_core.modeling.query_inst import DIIHead, DynamicConv

__all__ = ["EfficientVISStageHead", "temporal_dynamic_conv"]


def temporal_dynamic_conv(
    dynamic_conv: DynamicConv, queries: Tensor, roi_feat: Tensor, num_frames: int, radius: int
) -> Tensor:
    """TDC before the projection.

    Args:
        dynamic_conv: its ``interact`` makes the filters of each query and applies them.
        queries: (F, N, C) one query per (frame, tracklet), F = B * T clip-major.
        roi_feat: (F*N, C, S, S) the RoI features of the same (frame, tracklet) pairs.
        num_frames: T.
        radius: r; frames t - r .. t + r of the clip enter (r = 1 in the paper).
    Returns:
        (F*N, S*S, C) the attention-weighted sum over the window.
    """
    F_, N, C = queries.shape
    T = num_frames
    if radius < 0 or T < 1 or F_ % T or roi_feat.shape[0] != F_ * N:
        raise ValueError(
            f"TDC: queries {tuple(queries.shape)} and RoI features {tuple(roi_feat.shape)} are "
            f"not (B*T, N, C) and (B*T*N, C, S, S) with T={T} (radius {radius} must be >= 0)"
        )
    B = F_ // T
    rois = roi_feat.view(B, T, N, *roi_feat.shape[1:])
    params = queries.reshape(F_ * N, C)
    frames = torch.arange(T, device=queries.device)
    maps, valid = [], []
    for d in range(-radius, radius + 1):
        source = (frames + d).clamp(0, T - 1)  # frame t reads frame t + d (clamped, masked below)
        shifted = rois[:, source].reshape(roi_feat.shape)  # (F*N, C, S, S)
        maps.append(dynamic_conv.interact(params, shifted))  # (F*N, S*S, C)
        inside = ((frames + d >= 0) & (frames + d < T)).view(1, T, 1).expand(B, T, N)
        valid.append(inside.reshape(F_ * N))
    maps_d = torch.stack(maps)  # (D, F*N, S*S, C)
    centre = maps_d[radius]
    sim = F.cosine_similarity(maps_d, centre[None], dim=-1)  # (D, F*N, S*S)
    sim = sim.masked_fill(~torch.stack(valid)[:, :, None], float("-inf"))
    weights = sim.softmax(dim=0)  # a_{i,(t,t')} per position
    return (weights[..., None] * maps_d).sum(0)


class EfficientVISStageHead(DIIHead):
    """:class:`DIIHead` with TDC in place of the per-frame dynamic conv (``temporal_dynamic_conv``)
    and, for Table 3(f)'s baseline, queries shared by the T frames of a tracklet
    (``time_shared``: the output queries averaged over the clip's frames)."""

    def __init__(
        self,
        num_classes: int,
        *,
        temporal_dynamic_conv: bool = True,
        tdc_radius: int = 1,
        time_shared: bool = False,
        **kwargs,
    ):
        """
        Args:
            num_classes, kwargs: :class:`DIIHead`'s.
            temporal_dynamic_conv: TDC (True) or the still-image dynamic conv (Table 3(b)).
            tdc_radius: r of TDC's window t - r .. t + r.
            time_shared: one query per tracklet for all frames (Table 3(f)'s baseline) instead of
                one per frame (time-disentangled).
        """
        super().__init__(num_classes, **kwargs)
        if tdc_radius < 0:
            raise ValueError(f"EfficientVIS: TDC_RADIUS must be >= 0, got {tdc_radius}")
        self.temporal_dynamic_conv = temporal_dynamic_conv
        self.tdc_radius = tdc_radius
        self.time_shared = time_shared

    def dynamic_interaction(self, queries: Tensor, roi_feat: Tensor, num_frames: int) -> Tensor:
        """(F, N, C), (F*N, C, S, S) -> (F*N, C): TDC then ``fc_layer``, or the per-frame dynamic
        conv."""
        if not self.temporal_dynamic_conv:
            return super().dynamic_interaction(queries, roi_feat, num_frames)
        conv = self.instance_interactive_conv
        return conv.project(
            temporal_dynamic_conv(conv, queries, roi_feat, num_frames, self.tdc_radius)
        )

    def forward(
        self, roi_feat: Tensor, proposal_feat: Tensor, num_frames: int
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`DIIHead.forward`; with ``time_shared`` the next stage's queries are the mean of
        each tracklet's over the clip's frames."""
        cls, delta, obj, attn = super().forward(roi_feat, proposal_feat, num_frames)
        if self.time_shared:
            F_, N, C = obj.shape
            shared = obj.view(F_ // num_frames, num_frames, N, C).mean(1, keepdim=True)
            obj = shared.expand(-1, num_frames, -1, -1).reshape(F_, N, C)
        return cls, delta, obj, attn
