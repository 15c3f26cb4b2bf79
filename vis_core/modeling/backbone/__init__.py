"""Backbones that detectron2 does not ship, registered in detectron2's BACKBONE_REGISTRY on import:
``build_pvt_v2_backbone`` and ``build_pvt_v2_fpn_backbone`` (PVTv2, with TeViT's messenger tokens
where MODEL.PVT_V2.NUM_MESSENGER_TOKENS > 0; keys from ``vis_core.config.add_pvt_v2_config``)."""

from .pvt_v2 import (
    PVTv2,
    build_pvt_v2_backbone,
    build_pvt_v2_fpn_backbone,
    frames_per_clip,
    is_pvt_v2_imagenet_state_dict,
    pvt_v2_imagenet_to_ours,
    rename_pvt_v2_imagenet,
    shift_messengers,
)

__all__ = [
    "PVTv2",
    "build_pvt_v2_backbone",
    "build_pvt_v2_fpn_backbone",
    "frames_per_clip",
    "is_pvt_v2_imagenet_state_dict",
    "pvt_v2_imagenet_to_ours",
    "rename_pvt_v2_imagenet",
    "shift_messengers",
]
