"""Loading VISOLO weights saved by the official code (SuHoHan95/VISOLO) or by older versions of ours.

The official model keeps its modules under ``model.`` with other names (``Category_branch_pre``,
``Tracking_branch``, ...), and registers the tracking branch a second time as ``tracking_module``.
Every official parameter has one counterpart here with the same shape: ``OFFICIAL_TO_OURS`` renames
them. ``upgrade_state_dict`` is called by ``VISOLO._load_from_state_dict``, so that
``MODEL.WEIGHTS official.pth`` (``--eval-only``, the demo, fine-tuning) needs no separate conversion.
"""

import logging
import re
from typing import Dict, MutableMapping, Optional

import torch

logger = logging.getLogger(__name__)

__all__ = ["OFFICIAL_TO_OURS", "is_official_state_dict", "official_to_ours", "upgrade_state_dict"]

# Official module path (after ``model.``) -> ours; longest first is not needed: entries are exact
# module paths, matched up to the parameter name.
OFFICIAL_TO_OURS: Dict[str, str] = {
    "Category_branch_pre.cat_pre_conv1": "category_pre.key_conv",
    "Category_branch_pre.conv_layers.cat_pre_conv2": "category_pre.convs.0",
    "Category_branch_pre.conv_layers.cat_pre_conv3": "category_pre.convs.1",
    "Category_branch_pre.cat_pre_conv4": "category_pre.out_conv",
    "Category_branch_post.conv_layers.cat_post_conv1": "category_post.convs.0",
    "Category_branch_post.conv_layers.cat_post_conv2": "category_post.convs.1",
    "Category_branch_post.conv_layers.cat_post_conv3": "category_post.convs.2",
    "Category_branch_post.pred": "category_post.pred",
    "Kernel_branch.conv_layers.kernel_conv1": "kernel_pre.convs.0",
    "Kernel_branch.conv_layers.kernel_conv2": "kernel_pre.convs.1",
    "Kernel_branch.conv_layers.kernel_conv3": "kernel_pre.convs.2",
    "Kernel_branch.conv_layers_post.kernel_conv4": "kernel_post.convs.0",
    "Kernel_branch.conv_layers_post.kernel_conv5": "kernel_post.convs.1",
    "Kernel_branch.pred": "kernel_post.pred",
    "Mask_branch.convR4": "mask_branch.res4_conv",
    "Mask_branch.ResR4": "mask_branch.res4_block",
    "Mask_branch.RefR3.convSCF": "mask_branch.refine3.skip_conv",
    "Mask_branch.RefR3.ResSCF": "mask_branch.refine3.skip_res",
    "Mask_branch.RefR3.ResF": "mask_branch.refine3.out_res",
    "Mask_branch.RefR2.convSCF": "mask_branch.refine2.skip_conv",
    "Mask_branch.RefR2.ResSCF": "mask_branch.refine2.skip_res",
    "Mask_branch.RefR2.ResF": "mask_branch.refine2.out_res",
    "Mask_branch.convR1": "mask_branch.out_conv",
    "Mask_branch.pred": "mask_branch.pred",
    "Tracking_branch.conv_layers_share.track_S_conv1": "matching.stem.0",
    "Tracking_branch.conv_layers_share.track_S_conv2": "matching.stem.1",
    "Tracking_branch.track_Q_conv1": "matching.query_head.0",
    "Tracking_branch.track_Q_conv2": "matching.query_head.1",
    "Tracking_branch.track_R_conv1": "matching.ref_head.0",
    "Tracking_branch.track_R_conv2": "matching.ref_head.1",
    "Memory_module.conv1": "aggregation.conv",
    "backbone": "backbone",
}
_OFFICIAL_MARK = "model.Category_branch_pre."
_ALIAS = "tracking_module."  # the official model's second name for Tracking_branch


def is_official_state_dict(state_dict, prefix: str = "") -> bool:
    """Whether the keys (under ``prefix``) are the official code's."""
    mark = prefix + _OFFICIAL_MARK
    return any(k.startswith(mark) for k in state_dict)


def official_to_ours(state_dict: MutableMapping, prefix: str = "") -> int:
    """Rename the official parameters under ``prefix`` to ours, in place; returns how many.

    Raises:
        ValueError: a parameter under ``prefix + "model."`` that has no counterpart here.
    """
    pattern = re.compile(
        re.escape(prefix + "model.")
        + "("
        + "|".join(re.escape(k) for k in sorted(OFFICIAL_TO_OURS, key=len, reverse=True))
        + r")\.(.+)$"
    )
    renamed = 0
    for key in [k for k in state_dict if k.startswith(prefix + "model.")]:
        match = pattern.match(key)
        if match is None:
            raise ValueError(
                f"Official VISOLO weights: no counterpart for {key[len(prefix):]!r} in this model"
            )
        module, rest = match.groups()
        state_dict[f"{prefix}{OFFICIAL_TO_OURS[module]}.{rest}"] = state_dict.pop(key)
        renamed += 1
    for key in [k for k in state_dict if k.startswith(prefix + _ALIAS)]:
        del state_dict[key]  # the same tensors as model.Tracking_branch
    return renamed


def upgrade_state_dict(
    state_dict: MutableMapping, prefix: str, version: Optional[int], model: torch.nn.Module
) -> None:
    """Bring weights of the official code or of an older VISOLO here to the current names, in place.

    Version 1 (before 2026-11-29) had no bias in the normalised convs; the official code (and now
    ours) has one. Those weights get zero biases, which is exactly what the older model computed.
    """
    if is_official_state_dict(state_dict, prefix):
        n = official_to_ours(state_dict, prefix)
        logger.info("Loaded official VISOLO weights: %d parameters renamed to this model's.", n)
        return
    if version is not None and version >= 2:
        return
    filled = 0
    for name, module in model.named_modules():
        bias = getattr(module, "bias", None)
        if not isinstance(module, torch.nn.Conv2d) or bias is None:
            continue
        w_key, b_key = f"{prefix}{name}.weight", f"{prefix}{name}.bias"
        if w_key in state_dict and b_key not in state_dict:
            state_dict[b_key] = torch.zeros_like(bias)
            filled += 1
    if filled:
        logger.info("VISOLO weights of version %s: %d conv biases set to zero.", version, filled)
