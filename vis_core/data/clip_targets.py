"""Training-clip checks and clip-level track targets from the video mapper's output.

Shared by the methods that match tracks over a whole clip (Mask2Former-VIS, TeViT, ...).
Legend: T frames of a clip, n objects the mapper lists, M tracks visible in at least one frame.
"""

from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor

__all__ = ["clip_length", "clip_track_targets", "sub_clip_targets"]


def clip_length(batched_inputs: Sequence[dict], method: str) -> int:
    """The number of frames T shared by every training clip of a batch.

    Raises:
        ValueError naming the method and the videos when the clips differ in length.
    """
    lengths = {len(v["image"]) for v in batched_inputs}
    if len(lengths) != 1:
        raise ValueError(
            f"{method} training needs clips of one length, got lengths {sorted(lengths)} (videos "
            f"{[v.get('video_id') for v in batched_inputs]}); check INPUT.SAMPLING_FRAME_NUM"
        )
    return lengths.pop()


def clip_track_targets(
    batched_inputs: Sequence[dict],
    padded_size: Tuple[int, int],
    device: torch.device,
    *,
    mask_dtype: torch.dtype = torch.bool,
    with_boxes: bool = False,
) -> List[Dict[str, Tensor]]:
    """Per clip, the tracks visible in at least one of its frames.

    Args:
        batched_inputs: the video mapper's training dicts (``instances``: T Instances listing the
            same n objects in every frame, ``gt_ids`` -1 where an object is absent).
        padded_size: (H_pad, W_pad) of the padded input batch.
        mask_dtype: dtype of the returned masks.
        with_boxes: also return ``boxes``.
    Returns:
        one dict per clip: ``labels`` (M,), ``valid`` (M, T) bool (present in the frame),
        ``masks`` (M, T, H_pad, W_pad) (zero in the padding and where absent) and, with
        ``with_boxes``, ``boxes`` (M, T, 4) float absolute xyxy.
    """
    H, W = int(padded_size[0]), int(padded_size[1])
    targets = []
    for video in batched_inputs:
        frames = video.get("instances")
        if frames is None:
            raise ValueError(
                f"video {video.get('video_id')}: training input has no 'instances'; use the "
                "video mapper with is_train=True"
            )
        n = len(frames[0])
        if any(len(f) != n for f in frames):
            raise ValueError(
                f"video {video.get('video_id')}: frames list {[len(f) for f in frames]} "
                "instances; the video mapper lists every object of the clip in every frame"
            )
        ids = torch.full((n, len(frames)), -1, dtype=torch.long, device=device)
        masks = torch.zeros((n, len(frames), H, W), dtype=mask_dtype, device=device)
        for t, inst in enumerate(frames):
            h, w = inst.image_size
            ids[:, t] = inst.gt_ids.to(device)
            if n:
                masks[:, t, :h, :w] = inst.gt_masks.tensor.to(device=device, dtype=mask_dtype)
        valid = ids != -1
        keep = valid.any(dim=1)
        target = {
            "labels": frames[0].gt_classes.to(device)[keep],
            "valid": valid[keep],
            "masks": masks[keep],
        }
        if with_boxes:
            boxes = torch.stack([f.gt_boxes.tensor for f in frames], 1).to(device)  # (n, T, 4)
            target["boxes"] = boxes[keep].float()
        targets.append(target)
    return targets


def sub_clip_targets(
    target: Dict[str, Tensor], start: int, end: int
) -> Tuple[Dict[str, Tensor], Tensor]:
    """Frames [start, end) of a sample's track targets (``clip_track_targets``), keeping the tracks
    present in at least one of them (a sample of several consecutive clips: EfficientVIS, GMP-VIS).

    Returns:
        the sub-clip's targets (every key of ``target`` sliced to those tracks and frames) and the
        index of each kept track among the sample's tracks (M_sub,).
    """
    sl = slice(start, end)
    keep = target["valid"][:, sl].any(dim=1).nonzero()[:, 0]
    return {k: v[keep] if k == "labels" else v[keep, sl] for k, v in target.items()}, keep
