"""Drawing tracked instances on frames: one colour per track for its whole life."""

import cv2
import numpy as np
import pycocotools.mask as mask_util
from detectron2.utils.colormap import random_color
from detectron2.utils.visualizer import ColorMode, Visualizer

__all__ = ["TrackDrawer", "contact_sheet", "frame_masks"]


def frame_masks(output, t):
    """Masks of frame ``t`` of a common video output: a list of N (H, W) bool arrays or None."""
    if "pred_mask_rles" in output:
        return [
            None if rles[t] is None else mask_util.decode(rles[t]).astype(bool)
            for rles in output["pred_mask_rles"]
        ]
    masks = output["pred_masks"][:, t]
    return [m.cpu().numpy() if m.any() else None for m in masks]


class TrackDrawer:
    """Draws the tracks of one common video output (DESIGN.md) frame by frame.

    Args:
        output (dict): ``pred_scores`` (N,), ``pred_classes`` (N,), and ``pred_masks`` (N, T, H, W) or
            ``pred_mask_rles`` (N lists of T RLE/None).
        metadata: detectron2 Metadata with ``thing_classes``.
        score_threshold (float): tracks scoring below it are not drawn.
    """

    def __init__(self, output, metadata, score_threshold=0.3, seed=0):
        scores = output["pred_scores"].tolist()
        self.keep = [i for i, s in enumerate(scores) if s >= score_threshold]
        rng_state = np.random.get_state()
        np.random.seed(seed)
        self.colors = {i: random_color(rgb=True, maximum=1) for i in self.keep}
        np.random.set_state(rng_state)
        classes = output["pred_classes"].tolist()
        names = metadata.get("thing_classes", None)
        self.labels = {
            i: f"{names[classes[i]] if names else classes[i]} {scores[i]:.2f} (#{i})"
            for i in self.keep
        }
        self.output, self.metadata = output, metadata

    def draw(self, frame_bgr, t, width=None):
        """Return the RGB frame ``t`` with its visible tracks drawn; with ``width``, drawn on the
        frame resized to that width (masks too), so that labels are sized for that image, e.g. a
        contact-sheet tile, instead of shrinking with it."""
        masks = frame_masks(self.output, t)
        h, w = frame_bgr.shape[:2]
        if width is not None and width != w:
            size = (width, max(1, int(round(h * width / w))))  # (W', H') as cv2 takes it
            frame_bgr = cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA)
            masks = [
                None if m is None else cv2.resize(m.astype(np.uint8), size, cv2.INTER_NEAREST) > 0
                for m in masks
            ]
        visible = [i for i in self.keep if masks[i] is not None]
        vis = Visualizer(frame_bgr[:, :, ::-1], self.metadata, instance_mode=ColorMode.IMAGE)
        if visible:
            vis = vis.overlay_instances(
                masks=[masks[i] for i in visible],
                labels=[self.labels[i] for i in visible],
                assigned_colors=[self.colors[i] for i in visible],
                alpha=0.5,
            )
            return vis.get_image()
        return vis.output.get_image()


def contact_sheet(frames_rgb, columns=4, width=320, labels=None):
    """Tile RGB frames (each resized to ``width``) into one image, row by row; ``labels`` (one str
    per frame, e.g. "frame 12") are written in the top-left corner of each tile, white on black."""
    if not frames_rgb:
        raise ValueError("contact_sheet: no frames")
    if labels is not None and len(labels) != len(frames_rgb):
        raise ValueError(f"contact_sheet: {len(labels)} labels for {len(frames_rgb)} frames")
    h, w = frames_rgb[0].shape[:2]
    height = int(round(h * width / w))
    tiles = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames_rgb]
    rows = (len(tiles) + columns - 1) // columns
    sheet = np.full((rows * height, columns * width, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        if labels is not None:
            _put_label(tile, labels[k])
        r, c = divmod(k, columns)
        sheet[r * height : (r + 1) * height, c * width : (c + 1) * width] = tile
    return sheet


def _put_label(tile, text):
    """Write ``text`` on a black box in the tile's top-left corner, in place, sized to the tile
    (about a tenth of its height, at least 10 px) so that it stays legible on small tiles."""
    scale = max(0.35, tile.shape[0] / 240)
    thickness = max(1, int(round(scale)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, th // 4)
    cv2.rectangle(tile, (0, 0), (tw + 2 * pad, th + base + 2 * pad), (0, 0, 0), cv2.FILLED)
    cv2.putText(
        tile, text, (pad, th + pad), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
        cv2.LINE_AA,
    )  # fmt: skip
