"""What every meta-architecture does to its input frames and its TEST.VIS arguments.

Frames reach a model as the mapper writes them, (3, H, W) uint8 in the config's INPUT.FORMAT; the
model normalises them with MODEL.PIXEL_MEAN / PIXEL_STD and pads the batch to its size
divisibility. The pixel statistics live as non-persistent buffers (``pixel_mean``, ``pixel_std``),
so they follow the model's device and never enter a checkpoint.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from detectron2.structures import ImageList
from torch import Tensor, nn

__all__ = [
    "register_pixel_stats",
    "normalize_and_pad",
    "frame_whwh",
    "video_frames",
    "check_test_vis_args",
]


def register_pixel_stats(
    module: nn.Module, pixel_mean: Sequence[float], pixel_std: Sequence[float]
) -> None:
    """Register ``pixel_mean`` and ``pixel_std`` (C, 1, 1) on ``module`` as non-persistent buffers."""
    if len(pixel_mean) != len(pixel_std):
        raise ValueError(
            f"MODEL.PIXEL_MEAN {list(pixel_mean)} and MODEL.PIXEL_STD {list(pixel_std)} differ in "
            "length"
        )
    module.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
    module.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)


def normalize_and_pad(
    frames: Sequence[Tensor],
    pixel_mean: Tensor,
    pixel_std: Tensor,
    size_divisibility: int,
    owner: str,
) -> ImageList:
    """F frames (3, h_i, w_i) -> ImageList (F, 3, H, W): normalised, zero-padded to a common size
    that is a multiple of ``size_divisibility``, on the device of ``pixel_mean``.

    ``owner`` names the model in the error raised for a frame that is not (C, H, W) with the
    statistics' C channels.
    """
    channels = pixel_mean.shape[0]
    for i, frame in enumerate(frames):
        if frame.dim() != 3 or frame.shape[0] != channels:
            raise ValueError(
                f"{owner}: frame {i} has shape {tuple(frame.shape)}, expected ({channels}, H, W)"
            )
    device = pixel_mean.device
    normalized = [(f.to(device).float() - pixel_mean) / pixel_std for f in frames]
    return ImageList.from_tensors(normalized, size_divisibility)


def frame_whwh(images: ImageList, device) -> Tensor:
    """(F, 4) float32 each frame's (W, H, W, H) without the padding (query heads' box scale)."""
    sizes = torch.tensor([(w, h, w, h) for h, w in images.image_sizes], dtype=torch.float32)
    return sizes.to(device)


def video_frames(video: dict) -> Tuple[Sequence[Tensor], Tuple[int, int]]:
    """A test-mode video dict's frames and the size (H, W) its outputs are given at (``height`` /
    ``width``, else the first frame's); an empty video is an error naming it."""
    frames = video["image"]
    if len(frames) == 0:
        raise ValueError(f"video {video.get('video_id')} has no frames")
    return frames, (
        int(video.get("height", frames[0].shape[-2])),
        int(video.get("width", frames[0].shape[-1])),
    )


def check_test_vis_args(
    mask_threshold: float, window_size: int, max_tracks: Optional[int] = None
) -> None:
    """Check the shared TEST.VIS keys a video model takes; ``max_tracks`` None = not used (0 is
    left to each model: "no cap" for some, an error for others)."""
    if not 0.0 < mask_threshold < 1.0:
        raise ValueError(f"TEST.VIS.MASK_THRESHOLD must be in (0, 1), got {mask_threshold}")
    if window_size < 0:
        raise ValueError(f"TEST.VIS.WINDOW_SIZE must be >= 0 (0 = whole video), got {window_size}")
    if max_tracks is not None and max_tracks < 1:
        raise ValueError(f"TEST.VIS.MAX_TRACKS must be >= 1, got {max_tracks}")
