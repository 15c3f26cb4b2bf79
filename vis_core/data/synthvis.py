"""synthvis: a synthetic video instance segmentation data set in YouTube-VIS format.

``generate_synthvis(root)`` writes JPEG frames and a train and a valid JSON (both with ground truth,
so that synthvis serves as a local benchmark)::

    root/train/JPEGImages/<video>/<00000>.jpg   root/train.json
    root/valid/JPEGImages/<video>/<00000>.jpg   root/valid.json
    root/params.json                             the parameters and statistics of the set (a stamp)

Every video shows 1 to 6 textured shapes over a textured background that pans. The set holds what
makes VIS hard:

- categories that only shape AND texture tell apart (two share a shape, three share a texture, the
  instance colour is jittered around a category hue that overlaps its neighbours');
- several instances of one category in a video, with near-identical appearance, that cross paths,
  so that their identities can only be kept by tracking;
- partial and full occlusion in depth order (a per-object depth ``z`` that can change over time);
  the masks are the VISIBLE parts, so a fully hidden object has no mask in that frame;
- objects that leave the frame and come back later under the same track id, objects that enter
  after the first frame and objects that leave for good;
- smooth motion with changes of speed and direction, scale change, a little rotation, brightness
  change.

Two variants (``generate_synthvis(variant=...)``, ``datasets/generate_synthvis.py [--quick]``):

- ``"hard"`` (the default, the long-run benchmark, ``$DETECTRON2_DATASETS/synthvis``): all of the
  above at 360x640, 7 classes, 48 + 12 videos of 10 to 60 frames;
- ``"quick"`` (``$DETECTRON2_DATASETS/synthvis_quick``), which a small model learns in minutes on a
  CPU: 4 classes of distinct shapes AND distinct solid colours (``SYNTHVIS_QUICK_CATEGORIES``), a
  plain static background, 96x160 frames, 64 + 24 videos of 20 to 32 frames, objects a little larger
  and faster. It keeps what makes VIS: same-class instances that cross paths, partial and full
  occlusion, exits with re-entry under the same id, late entries (planned by the same code as the
  hard set's, exits and entries more frequent, full occlusions and exits planned before crossings).

The same ``seed`` gives byte-identical JSON and identical images: every video draws from its own
random generator seeded by ``(seed, split, video index)``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import pycocotools.mask as mask_util
from scipy.interpolate import CubicSpline
from tqdm import tqdm

__all__ = [
    "SYNTHVIS_CATEGORIES",
    "SYNTHVIS_QUICK_CATEGORIES",
    "SYNTHVIS_VARIANTS",
    "default_synthvis_root",
    "generate_synthvis",
    "synthvis_exists",
]

logger = logging.getLogger(__name__)

# Bump when the generator's output changes for the same parameters (the stamp then goes stale).
SYNTHVIS_VERSION = 1


def _category(cid: int, name: str, shape: str, color: list, texture: str) -> dict:
    return {"id": cid, "name": name, "supercategory": shape, "color": color, "texture": texture}


# id, name, supercategory (the shape), colour (RGB, the category's base hue for rendering and the
# colour visualisers use), texture. Class = shape + texture: discs come striped or checkered,
# stripes come on discs and squares, checks on discs and stars, so neither cue alone tells the class.
SYNTHVIS_CATEGORIES = [
    _category(1, "striped_disc", "disc", [220, 60, 60], "stripes"),
    _category(2, "checkered_disc", "disc", [220, 140, 50], "checker"),
    _category(3, "striped_square", "square", [200, 200, 50], "stripes"),
    _category(4, "dotted_triangle", "triangle", [70, 200, 70], "dots"),
    _category(5, "checkered_star", "star", [50, 190, 200], "checker"),
    _category(6, "solid_ring", "ring", [70, 90, 220], "solid"),
    _category(7, "gradient_cross", "cross", [190, 70, 210], "gradient"),
]
# The quick variant: four classes that differ in shape AND in colour (one solid colour each), so a
# small model learns them in minutes; three of the shapes can hide a smaller object completely.
SYNTHVIS_QUICK_CATEGORIES = [
    _category(1, "red_disc", "disc", [225, 45, 45], "solid"),
    _category(2, "green_triangle", "triangle", [40, 190, 60], "solid"),
    _category(3, "blue_square", "square", [50, 90, 235], "solid"),
    _category(4, "yellow_star", "star", [240, 215, 40], "solid"),
]
# Radius of the largest disc that fits in each shape, as a fraction of its circumradius: the shapes
# that can hide a smaller object completely (used to plan full occlusions).
_INRADIUS = {"disc": 1.0, "square": 1.0 / math.sqrt(2.0), "triangle": 0.5}

_SPRITE_SIZE = 160  # side of the canonical sprite (pixels) an object is drawn into before warping
_SPRITE_RADIUS = 0.48 * _SPRITE_SIZE  # circumradius of every shape in the canonical sprite
_MIP_LEVELS = 4  # sprite pyramid levels (160, 80, 40, 20), so strong shrinking does not alias
_HUE_JITTER = 40.0  # degrees; categories sit ~51 degrees apart, so colour is only a weak cue
_REFERENCE_AREA = 360 * 640  # the default frame area, the unit of the size-dependent defaults


@dataclass(frozen=True)
class _Variant:
    """What tells the set's variants apart: their classes, the instances' looks and the background.

    The motion and the scheduled events (crossings, occlusions, exits and re-entries, late entries)
    are planned by the same code for every variant.
    """

    name: str
    folder: str  # the folder under $DETECTRON2_DATASETS
    categories: list
    colour_jitter: str  # "hue": hue jittered by _HUE_JITTER degrees; "value": brightness only
    background: str  # "textured_pan": clutter that pans; "plain": one colour, light noise, static
    num_objects_p: tuple  # P(1 .. len objects per video)
    radius_range: tuple  # base circumradius, as fractions of min(height, width)
    p_exit: float  # P(an object leaves the frame and comes back), per object
    p_enter: float  # P(an object enters after the first frame), per object
    event_order: tuple  # the order events are planned in ("cross", "hide", "exit")
    speed_scale: float  # multiplies the objects' speeds (relative to the frame size)
    away_frames: tuple  # [low, high) frames an object that left stays out before it comes back
    defaults: dict  # generate_synthvis's defaults for this variant


SYNTHVIS_VARIANTS = {
    "hard": _Variant(
        name="hard",
        folder="synthvis",
        categories=SYNTHVIS_CATEGORIES,
        colour_jitter="hue",
        background="textured_pan",
        num_objects_p=(0.06, 0.18, 0.24, 0.22, 0.17, 0.13),
        radius_range=(0.06, 0.17),
        p_exit=0.4,
        p_enter=0.12,
        event_order=("cross", "hide", "exit"),
        speed_scale=1.0,
        away_frames=(2, 9),
        defaults=dict(
            num_train_videos=48,
            num_val_videos=12,
            height=360,
            width=640,
            min_frames=10,
            max_frames=60,
        ),
    ),
    "quick": _Variant(
        name="quick",
        folder="synthvis_quick",
        categories=SYNTHVIS_QUICK_CATEGORIES,
        colour_jitter="value",
        background="plain",
        num_objects_p=(0.08, 0.24, 0.30, 0.22, 0.16),
        radius_range=(0.12, 0.22),
        p_exit=0.5,
        p_enter=0.25,
        event_order=("hide", "exit", "cross"),
        speed_scale=1.5,
        away_frames=(1, 4),
        defaults=dict(
            num_train_videos=64,
            num_val_videos=24,
            height=96,
            width=160,
            min_frames=20,
            max_frames=32,
        ),
    ),
}


def _variant(name: str) -> _Variant:
    if name not in SYNTHVIS_VARIANTS:
        raise ValueError(
            f"synthvis: unknown variant {name!r}; choose one of {sorted(SYNTHVIS_VARIANTS)}"
        )
    return SYNTHVIS_VARIANTS[name]


def default_synthvis_root(variant: str = "hard") -> str:
    """``$DETECTRON2_DATASETS/synthvis`` (``synthvis_quick`` for the quick variant), where
    ``DETECTRON2_DATASETS`` defaults to ``./datasets``."""
    return os.path.join(
        os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets")),
        _variant(variant).folder,
    )


def synthvis_exists(root: str) -> bool:
    """Whether ``root`` holds a complete synthvis set (both JSON files, their frame folders, the stamp).

    The stamp ``params.json`` is written last, so a set whose generation was interrupted does not count.
    """
    stamp = _read_stamp(root)
    if stamp is None or not stamp.get("complete", False):
        return False
    for split in ("train", "valid"):
        if not os.path.isfile(os.path.join(root, f"{split}.json")):
            return False
        if not os.path.isdir(os.path.join(root, split, "JPEGImages")):
            return False
    return True


# ----------------------------------------------------------------------------------------------
# Appearance: shapes, textures, sprites
# ----------------------------------------------------------------------------------------------


def _shape_alpha(shape: str, size: int, radius: float) -> np.ndarray:
    """The shape's coverage in a (size, size) float32 image, centred, with circumradius ``radius``."""
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    x, y = xx - c, yy - c
    r = np.sqrt(x * x + y * y)
    if shape == "disc":
        inside = r <= radius
    elif shape == "ring":
        inside = (r <= radius) & (r >= 0.55 * radius)
    elif shape == "square":
        half = radius / math.sqrt(2.0)
        inside = (np.abs(x) <= half) & (np.abs(y) <= half)
    elif shape == "cross":
        # Arms of half-width w reaching to the circumradius: w^2 + l^2 = radius^2 at the corners.
        w = 0.36 * radius
        arm = math.sqrt(radius * radius - w * w)
        inside = ((np.abs(x) <= w) & (np.abs(y) <= arm)) | ((np.abs(y) <= w) & (np.abs(x) <= arm))
    elif shape in ("triangle", "star"):
        if shape == "triangle":
            angles = -math.pi / 2 + np.arange(3) * 2 * math.pi / 3
            radii = np.full(3, radius)
        else:
            angles = -math.pi / 2 + np.arange(10) * math.pi / 5
            radii = np.where(np.arange(10) % 2 == 0, radius, 0.45 * radius)
        points = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], axis=1)
        canvas = np.zeros((size, size), np.uint8)
        cv2.fillPoly(canvas, [np.round(points * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
        inside = canvas > 0
    else:
        raise ValueError(f"synthvis: unknown shape {shape!r}")
    return inside.astype(np.float32)


def _hsv_to_rgb(hue_deg: float, sat: float, val: float) -> np.ndarray:
    """One colour: hue in degrees, saturation and value in [0, 1] -> RGB float32 (3,) in [0, 255]."""
    h = (hue_deg % 360.0) / 60.0
    i = int(h) % 6
    f = h - int(h)
    p, q, t = val * (1 - sat), val * (1 - sat * f), val * (1 - sat * (1 - f))
    rgb = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i]
    return np.array(rgb, np.float32) * 255.0


def _rgb_to_hue(rgb) -> float:
    r, g, b = (float(v) / 255.0 for v in rgb)
    hsv = cv2.cvtColor(np.array([[[r, g, b]]], np.float32), cv2.COLOR_RGB2HSV)
    return float(hsv[0, 0, 0])


@dataclass
class _Look:
    """How one instance looks: category, colours and texture parameters (sprite coordinates)."""

    category_id: int
    shape: str  # the category's supercategory
    texture: str  # the category's texture
    color1: np.ndarray  # (3,) RGB
    color2: np.ndarray  # (3,) RGB, the texture's second colour
    period: float  # texture period, as a fraction of the circumradius
    angle: float  # texture orientation (radians)
    phase: np.ndarray  # (2,) texture offset (fractions of a period)


def _sample_look(rng: np.random.Generator, category_id: int, variant: _Variant) -> _Look:
    """A new instance of ``category_id`` with jittered colour and texture parameters."""
    category = variant.categories[category_id - 1]
    if variant.colour_jitter == "hue":
        hue = _rgb_to_hue(category["color"]) + rng.uniform(-_HUE_JITTER, _HUE_JITTER)
        color1 = _hsv_to_rgb(hue, rng.uniform(0.55, 0.95), rng.uniform(0.65, 1.0))
        if rng.random() < 0.5:  # darker second colour
            color2 = color1 * rng.uniform(0.2, 0.4)
        else:  # lighter second colour
            color2 = color1 + (255.0 - color1) * rng.uniform(0.55, 0.85)
    else:  # the category's own colour, a little brighter or darker; shaded towards the rim
        color1 = np.array(category["color"], np.float32) * rng.uniform(0.85, 1.0)
        color2 = color1 * 0.7
    return _Look(
        category_id=category_id,
        shape=category["supercategory"],
        texture=category["texture"],
        color1=color1,
        color2=color2.astype(np.float32),
        period=float(rng.uniform(0.28, 0.42)),
        angle=float(rng.uniform(0, math.pi)),
        phase=rng.uniform(0, 1, size=2),
    )


def _twin_look(rng: np.random.Generator, look: _Look) -> _Look:
    """A near copy of ``look``: another instance of the same category that looks almost the same."""
    jitter = rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    return _Look(
        category_id=look.category_id,
        shape=look.shape,
        texture=look.texture,
        color1=np.clip(look.color1 * jitter, 0, 255),
        color2=np.clip(look.color2 * jitter, 0, 255),
        period=look.period * float(rng.uniform(0.95, 1.05)),
        angle=look.angle + float(rng.uniform(-0.15, 0.15)),
        phase=rng.uniform(0, 1, size=2),
    )


def _texture(look: _Look, size: int, radius: float) -> np.ndarray:
    """The instance's texture, (size, size, 3) float32 RGB, in sprite coordinates (it moves with the
    object: it rotates and scales with it)."""
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    x, y = (xx - c) / radius, (yy - c) / radius  # circumradius = 1
    ca, sa = math.cos(look.angle), math.sin(look.angle)
    u, v = x * ca + y * sa, -x * sa + y * ca
    kind = look.texture
    p = look.period
    if kind == "stripes":
        s = np.sin(2 * math.pi * (u / p + look.phase[0]))
        w = 0.5 + 0.5 * np.tanh(4.0 * s)  # soft-edged stripes (less aliasing once shrunk)
    elif kind == "checker":
        s = np.sin(math.pi * (u / p + look.phase[0])) * np.sin(math.pi * (v / p + look.phase[1]))
        w = 0.5 + 0.5 * np.tanh(6.0 * s)
    elif kind == "dots":
        du = (u / p + look.phase[0]) % 1.0 - 0.5
        dv = (v / p + look.phase[1]) % 1.0 - 0.5
        d = np.sqrt(du * du + dv * dv)
        w = np.clip((0.3 - d) / 0.06 + 0.5, 0.0, 1.0)
    elif kind == "gradient":
        w = np.clip(0.5 + 0.5 * u, 0.0, 1.0)
    elif kind == "solid":
        w = 0.25 * np.clip(x * x + y * y, 0.0, 1.0)  # a little shading towards the rim
    else:
        raise ValueError(f"synthvis: unknown texture {kind!r}")
    w = w[..., None]
    return (look.color1 * (1.0 - w) + look.color2 * w).astype(np.float32)


def _make_sprite(look: _Look) -> list[tuple[np.ndarray, np.ndarray]]:
    """The instance's sprite pyramid: per level (rgb (S, S, 3) float32, alpha (S, S) float32)."""
    rgb = _texture(look, _SPRITE_SIZE, _SPRITE_RADIUS)
    alpha = _shape_alpha(look.shape, _SPRITE_SIZE, _SPRITE_RADIUS)
    levels = [(rgb, alpha)]
    for _ in range(1, _MIP_LEVELS):
        size = levels[-1][1].shape[0] // 2
        rgb = cv2.resize(levels[-1][0], (size, size), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(levels[-1][1], (size, size), interpolation=cv2.INTER_AREA)
        levels.append((rgb, alpha))
    return levels


def _warp_sprite(sprite, center, radius: float, angle: float, height: int, width: int):
    """Warps the sprite to circumradius ``radius`` at ``center`` (x, y) rotated by ``angle``.

    Returns ``(x0, y0, rgb (h, w, 3), alpha (h, w))`` for the window of the frame it covers, or None
    where it covers no pixel of the (height, width) frame.
    """
    x0 = max(int(math.floor(center[0] - radius - 2)), 0)
    y0 = max(int(math.floor(center[1] - radius - 2)), 0)
    x1 = min(int(math.ceil(center[0] + radius + 3)), width)
    y1 = min(int(math.ceil(center[1] + radius + 3)), height)
    if x1 <= x0 or y1 <= y0:
        return None
    scale0 = radius / _SPRITE_RADIUS
    level = 0
    while level < _MIP_LEVELS - 1 and scale0 * 2 ** (level + 1) <= 1.0:
        level += 1
    rgb, alpha = sprite[level]
    k = scale0 * 2**level
    c = (rgb.shape[0] - 1) / 2.0
    ca, sa = k * math.cos(angle), k * math.sin(angle)
    # frame = A @ (sprite - c) + center, expressed in the window's coordinates
    tx = center[0] - (ca * c - sa * c) - x0
    ty = center[1] - (sa * c + ca * c) - y0
    m = np.array([[ca, -sa, tx], [sa, ca, ty]], np.float64)
    size = (x1 - x0, y1 - y0)
    rgb_w = cv2.warpAffine(rgb, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha_w = cv2.warpAffine(alpha, m, size, flags=cv2.INTER_LINEAR, borderValue=0)
    return x0, y0, rgb_w, alpha_w


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth random noise (height, width) float32 in about [-1, 1] with features ~``cell`` px wide."""
    gh, gw = max(int(height / cell) + 2, 2), max(int(width / cell) + 2, 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


def _make_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured background (height, width, 3) float32 RGB: smooth colour noise, stripes, blobs."""
    unit = min(height, width)
    base = _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.1, 0.45), rng.uniform(0.35, 0.7))
    # brightness noise shared by the channels, weaker colour noise per channel
    light = 30.0 * _smooth_noise(rng, height, width, unit * 0.3)
    light += 12.0 * _smooth_noise(rng, height, width, unit * 0.06)
    img = np.empty((height, width, 3), np.float32)
    for ch in range(3):
        img[..., ch] = base[ch] + light + 18.0 * _smooth_noise(rng, height, width, unit * 0.25)
    # faint stripes at a random angle
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, math.pi)
    period = unit * rng.uniform(0.05, 0.15)
    stripes = np.sin(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period)
    img += (rng.uniform(8.0, 20.0) * stripes)[..., None]
    # soft blobs of other colours (clutter the detector must learn to ignore)
    blur = max(int(unit * 0.03) | 1, 3)
    for _ in range(int(rng.integers(4, 12))):
        color = _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.8))
        center = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        axes = (int(unit * rng.uniform(0.04, 0.15)) + 1, int(unit * rng.uniform(0.04, 0.15)) + 1)
        blob = np.zeros((height, width), np.float32)
        cv2.ellipse(blob, center, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        blob = cv2.GaussianBlur(blob, (blur, blur), 0)[..., None] * rng.uniform(0.3, 0.7)
        img = img * (1.0 - blob) + color * blob
    return np.clip(img, 0, 255)


def _make_plain_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A plain background (height, width, 3) float32 RGB: one greyish colour with light brightness
    noise, far in saturation from every quick-variant class colour."""
    base = _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.0, 0.2), rng.uniform(0.3, 0.55))
    light = 6.0 * _smooth_noise(rng, height, width, min(height, width) * 0.3)
    return np.clip(base + light[..., None], 0, 255)


# ----------------------------------------------------------------------------------------------
# Motion
# ----------------------------------------------------------------------------------------------


def _smooth_track(rng, length: int, low: float, high: float, step=(6, 14)) -> np.ndarray:
    """A smooth random signal (length,) through uniform waypoints in [low, high] every ``step`` frames."""
    times = [0]
    while times[-1] < length - 1:
        times.append(times[-1] + int(rng.integers(step[0], step[1] + 1)))
    values = rng.uniform(low, high, size=len(times))
    if len(times) == 1:
        return np.full(length, values[0], np.float64)
    spline = CubicSpline(np.array(times, np.float64), values, bc_type="natural")
    return np.clip(spline(np.arange(length, dtype=np.float64)), low, high)


@dataclass
class _Object:
    """One instance: its look and its per-frame state (all arrays have one entry per frame)."""

    look: _Look
    radius: np.ndarray  # (T,) circumradius in pixels
    angle: np.ndarray  # (T,) rotation (radians)
    brightness: np.ndarray  # (T,) multiplier of the texture
    z: np.ndarray  # (T,) depth, larger = closer to the camera
    speed: np.ndarray  # (T,) cruise speed (pixels per frame)
    pos: np.ndarray = None  # (T, 2) centre (x, y), filled by the motion simulation
    events: list = field(default_factory=list)  # [(start frame, kind, partner index or None)]


def _outside_by(pos, radius: float, height: int, width: int) -> float:
    """How far (pixels) the disc of ``radius`` at ``pos`` lies outside the frame (<= 0: it touches)."""
    dx = max(-pos[0], pos[0] - (width - 1), 0.0)
    dy = max(-pos[1], pos[1] - (height - 1), 0.0)
    return math.hypot(dx, dy) - radius


def _nearest_edge(pos, height: int, width: int):
    """The frame edge closest to ``pos``: (outward unit normal (2,), distance to the edge)."""
    dists = [pos[0], width - 1 - pos[0], pos[1], height - 1 - pos[1]]
    normals = [(-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0)]
    i = int(np.argmin(dists))
    return np.array(normals[i]), dists[i]


def _point_outside(rng, pos, normal, radius: float, height: int, width: int) -> np.ndarray:
    """A point beyond the edge with outward ``normal``, far enough for a disc of ``radius`` to be out,
    near ``pos`` along the edge."""
    p = np.array(pos, np.float64)
    along = np.array([-normal[1], normal[0]])
    p = p + along * rng.normal(0, radius)
    p = np.clip(p, [0, 0], [width - 1, height - 1])
    if normal[0] != 0:
        p[0] = (width - 1 if normal[0] > 0 else 0) + normal[0] * (radius * 1.3 + 3)
    else:
        p[1] = (height - 1 if normal[1] > 0 else 0) + normal[1] * (radius * 1.3 + 3)
    return p


def _simulate_motion(
    rng, objects: list[_Object], length: int, height: int, width: int, variant: _Variant
) -> None:
    """Moves every object through the video with steering behaviours; fills ``obj.pos`` (T, 2).

    Behaviours: ``wander`` (towards random targets, some of them partly outside the frame),
    ``exit`` (leave the frame through the nearest edge), ``away`` (stay out for a while),
    ``return`` (come back in), ``swap`` (two objects head for each other's place, so they cross),
    ``hide`` (follow a bigger object closely behind it, fully hidden, then leave it).
    Velocity changes are limited by a maximum acceleration, so the motion is smooth.
    """
    unit = min(height, width)
    n = len(objects)
    max_speed = 0.07 * variant.speed_scale * unit
    state = []
    for obj in objects:
        st = {"mode": "wander", "target": None, "timer": 0, "event": 0, "partner": None}
        r = float(obj.radius[0])
        starts_outside = obj.events and obj.events[0][1] == "enter"
        if starts_outside:
            p = np.array([rng.uniform(0, width - 1), rng.uniform(0, height - 1)])
            normal, _ = _nearest_edge(p, height, width)
            p = _point_outside(rng, p, normal, float(obj.radius.max()), height, width)
            st.update(mode="away", timer=int(obj.events[0][0]), normal=normal, event=1)
        else:
            p = np.array([rng.uniform(r, width - 1 - r), rng.uniform(r, height - 1 - r)])
        heading = rng.uniform(0, 2 * math.pi)
        st["pos"] = p
        st["vel"] = float(obj.speed[0]) * np.array([math.cos(heading), math.sin(heading)])
        if starts_outside:
            st["vel"] = np.zeros(2)
        state.append(st)
    positions = np.zeros((n, length, 2), np.float64)

    def wander_target(i: int, t: int) -> np.ndarray:
        r = float(objects[i].radius[t])
        margin = r * (rng.uniform(-0.6, 0.2) if rng.random() < 0.2 else rng.uniform(0.6, 1.2))
        lo = np.array([margin, margin])
        hi = np.array([width - 1 - margin, height - 1 - margin])
        hi = np.maximum(hi, lo + 1)
        return rng.uniform(lo, hi)

    for t in range(length):
        # 1) start scheduled events
        for i, (obj, st) in enumerate(zip(objects, state)):
            if st["mode"] != "wander" or st["event"] >= len(obj.events):
                continue
            start, kind, partner = obj.events[st["event"]]
            if t < start:
                continue
            if kind == "exit" or kind == "leave":
                normal, _ = _nearest_edge(st["pos"], height, width)
                target = _point_outside(
                    rng, st["pos"], normal, float(obj.radius.max()), height, width
                )
                # leave within about 8 frames, whatever the distance to the edge
                exit_speed = float(
                    np.clip(np.linalg.norm(target - st["pos"]) / 8.0, 0.15, 0.6) * max_speed
                )
                st.update(
                    mode="exit",
                    target=target,
                    normal=normal,
                    final=kind == "leave",
                    exit_speed=max(exit_speed, float(obj.speed[t])),
                )
                st["event"] += 1
            elif kind == "swap":
                other = state[partner]
                if other["mode"] != "wander":
                    continue  # wait until the partner is free too
                a, b = st["pos"], other["pos"]
                d = b - a
                dist = float(np.linalg.norm(d))
                if dist < 1e-3:
                    d, dist = np.array([1.0, 0.0]), 1.0
                u = d / dist
                perp = np.array([-u[1], u[0]])
                r_min = min(float(obj.radius[t]), float(objects[partner].radius[t]))
                offset = rng.uniform(-0.5, 0.5) * r_min
                # run past each other's start a bit, so the paths really cross
                overshoot = rng.uniform(0.5, 1.5) * r_min
                frames_left = max(length - 1 - t, 1)
                speed = float(
                    np.clip(
                        dist / max(0.45 * frames_left, 1.0), 0.6 * obj.speed[t], 0.9 * max_speed
                    )
                )
                st.update(mode="swap", target=b + u * overshoot + perp * offset, swap_speed=speed)
                other.update(
                    mode="swap", target=a - u * overshoot - perp * offset, swap_speed=speed
                )
                st["event"] += 1
                objects[partner].events = [
                    e for e in objects[partner].events if not (e[1] == "swap" and e[2] == i)
                ]
            elif kind == "hide":
                st.update(mode="chase", partner=partner, timer=int(rng.integers(3, 9)))
                st["event"] += 1
            elif kind == "enter":
                st["event"] += 1

        # 2) desired velocities per mode
        for i, (obj, st) in enumerate(zip(objects, state)):
            r_now = float(obj.radius[t])
            speed = float(obj.speed[t])
            mode = st["mode"]
            desired = None
            if mode == "wander":
                if st["target"] is None or np.linalg.norm(st["target"] - st["pos"]) < max(r_now, 2):
                    st["target"] = wander_target(i, t)
                desired = st["target"] - st["pos"]
            elif mode == "exit":
                desired = st["target"] - st["pos"]
                speed = st["exit_speed"]
                if _outside_by(st["pos"], float(obj.radius.max()), height, width) > 1.0:
                    if st.get("final"):
                        st.update(mode="gone")
                    else:
                        st.update(mode="away", timer=int(rng.integers(*variant.away_frames)))
            elif mode == "away":
                desired = np.zeros(2)
                st["timer"] -= 1
                if st["timer"] <= 0:
                    normal = st["normal"]
                    depth = rng.uniform(1.5, 3.0) * r_now
                    p = np.clip(st["pos"], [0, 0], [width - 1, height - 1])
                    p = p - normal * depth
                    p = np.clip(p, [r_now, r_now], [width - 1 - r_now, height - 1 - r_now])
                    st.update(mode="return", target=p)
            elif mode == "return":
                desired = st["target"] - st["pos"]
                speed = max(speed, 0.25 * max_speed)
                if np.linalg.norm(desired) < max(r_now * 0.5, 2):
                    st.update(mode="wander", target=None)
            elif mode == "gone":
                desired = st["vel"]
            elif mode == "swap":
                desired = st["target"] - st["pos"]
                speed = st["swap_speed"]
                if np.linalg.norm(desired) < max(0.5 * r_now, 2):
                    st.update(mode="wander", target=None)
            elif mode in ("chase", "locked"):
                front = state[st["partner"]]
                gap = front["pos"] - st["pos"]
                if mode == "chase":
                    desired = front["vel"] + 0.5 * gap
                    speed = max_speed
                    front_obj = objects[st["partner"]]
                    front_in = _INRADIUS.get(front_obj.look.shape, 0.0) * float(front_obj.radius[t])
                    if np.linalg.norm(gap) < max(0.1 * front_in, 1.0):
                        st.update(mode="locked", offset=-gap)
                else:  # locked: placed behind the front in step 3
                    st["vel"] = front["vel"].copy()
                    st["timer"] -= 1
                    if st["timer"] <= 0:
                        st.update(mode="wander", target=None)
            if desired is not None:
                norm = float(np.linalg.norm(desired))
                want = desired / norm * min(speed, norm) if norm > 1e-6 else np.zeros(2)
                max_accel = 0.12 * max_speed if mode == "wander" else 0.3 * max_speed
                if mode == "chase":
                    max_accel = max_speed
                dv = want - st["vel"]
                dv_norm = float(np.linalg.norm(dv))
                if dv_norm > max_accel:
                    dv *= max_accel / dv_norm
                st["vel"] = st["vel"] + dv
        # 3) integrate (locked objects were placed relative to their front's old position: re-place)
        for st in state:
            if st["mode"] != "locked":
                st["pos"] = st["pos"] + st["vel"]
        for st in state:
            if st["mode"] == "locked":
                st["pos"] = state[st["partner"]]["pos"] + st["offset"]
        for i, st in enumerate(state):
            positions[i, t] = st["pos"]
    for i, obj in enumerate(objects):
        obj.pos = positions[i]


# ----------------------------------------------------------------------------------------------
# One video
# ----------------------------------------------------------------------------------------------


def _plan_video(rng, length: int, height: int, width: int, variant: _Variant) -> list[_Object]:
    """Draws the objects of one video, their appearance, size, depth and scheduled events."""
    unit = min(height, width)
    num_cat = len(variant.categories)
    num_p = np.array(variant.num_objects_p)
    n = int(rng.choice(np.arange(1, len(num_p) + 1), p=num_p))
    categories = [int(c) for c in rng.integers(1, num_cat + 1, size=n)]
    groups: list[list[int]] = []  # indices of the same-category twins
    if n >= 2 and rng.random() < 0.65:
        k = 3 if n >= 3 and rng.random() < 0.3 else 2
        members = sorted(int(i) for i in rng.choice(n, size=k, replace=False))
        for i in members[1:]:
            categories[i] = categories[members[0]]
        groups.append(members)
    looks: list[_Look] = []
    for i, cat in enumerate(categories):
        leader = next((g[0] for g in groups if i in g and g[0] != i), None)
        looks.append(
            _twin_look(rng, looks[leader])
            if leader is not None
            else _sample_look(rng, cat, variant)
        )

    objects = []
    for i, look in enumerate(looks):
        base = unit * rng.uniform(*variant.radius_range)
        if any(i in g and g[0] != i for g in groups):  # twins have about the same size too
            leader = next(g[0] for g in groups if i in g)
            base = float(objects[leader].radius.mean()) * rng.uniform(0.85, 1.15)
        log_scale = _smooth_track(rng, length, -0.35, 0.35, step=(8, 18))
        if rng.random() < 0.3:  # a steady spin besides the wobble
            spin = rng.uniform(-0.04, 0.04) * np.arange(length)
        else:
            spin = 0.0
        z = np.full(length, rng.uniform(0, 1))
        if rng.random() < 0.35 and length > 4:  # the depth order changes once
            t_change = int(rng.integers(2, length - 1))
            z[t_change:] = rng.uniform(0, 1)
        obj = _Object(
            look=look,
            radius=base * np.exp(log_scale),
            angle=rng.uniform(0, 2 * math.pi)
            + _smooth_track(rng, length, -0.5, 0.5, step=(8, 16))
            + spin,
            brightness=_smooth_track(rng, length, 0.7, 1.25, step=(6, 16)),
            z=z,
            speed=unit
            * variant.speed_scale
            * rng.uniform(0.008, 0.03)
            * _smooth_track(rng, length, 0.5, 1.5),
        )
        objects.append(obj)

    busy = [[] for _ in range(n)]  # per object: (start, end) windows already used by events

    def free(i: int, start: int, end: int) -> bool:
        return all(end < s or start > e for s, e in busy[i])

    def plan_swap(a: int, b: int, start: int) -> None:
        """Objects a and b head for each other's place from ``start`` on, if both are free then."""
        end = min(start + int(np.clip(length // 2, 8, 20)), length - 1)
        if free(a, start, end) and free(b, start, end):
            objects[a].events.append((start, "swap", b))
            objects[b].events.append((start, "swap", a))
            busy[a].append((start, end))
            busy[b].append((start, end))

    def plan_crossings() -> None:
        # same-category twins cross paths (one swap per consecutive pair of the group)
        for g in groups:
            for a, b in zip(g[:-1], g[1:]):
                plan_swap(a, b, int(rng.integers(0, max(length // 3, 1))))
        # sometimes two objects of different categories cross too
        if n >= 2 and rng.random() < 0.3:
            a, b = (int(i) for i in rng.choice(n, size=2, replace=False))
            plan_swap(a, b, int(rng.integers(0, max(length // 2, 1))))

    def plan_full_occlusion() -> None:
        # a small object hides fully behind a big disc, square or triangle: the back one is shrunk
        # to fit inside the front one and kept behind it; a few tries to find a pair and a free
        # window
        fronts = [i for i, o in enumerate(objects) if o.look.shape in _INRADIUS]
        if n >= 2 and fronts and length >= 12:
            for _ in range(8):
                f = int(rng.choice(fronts))
                b = int(rng.choice([i for i in range(n) if i != f]))
                start = int(rng.integers(0, max(length - 14, 1)))
                end = min(start + 14, length - 1)
                if not (free(b, start, end) and free(f, start, end)):  # the front only wanders then
                    continue
                front, back = objects[f], objects[b]
                inner = _INRADIUS[front.look.shape] * front.radius  # (T,)
                # the back object's circumradius stays below 0.75 x the front's inradius always
                ratio = float(np.min(0.75 * inner / back.radius))
                if ratio < 1.0:
                    back.radius = back.radius * ratio
                back.z = np.minimum(back.z, front.z - 1e-3)
                back.events.append((start, "hide", f))
                busy[b].append((start, end))
                busy[f].append((start, end))
                return

    def plan_exits_and_entries() -> None:
        # exits with re-entry, late entries and final exits
        for i in range(n):
            if length >= 14 and rng.random() < variant.p_exit:
                start = int(rng.integers(1, max(length // 2, 2)))
                end = min(start + 18, length - 1)
                if free(i, start, end):
                    objects[i].events.append((start, "exit", None))
                    busy[i].append((start, end))
            enter = int(rng.integers(0, min(8, length // 2) + 1))
            if rng.random() < variant.p_enter and free(i, 0, enter + 8):
                objects[i].events.append((enter, "enter", None))
                busy[i].append((0, enter + 8))
            elif rng.random() < 0.1 and length >= 12 and free(i, length - 10, length - 1):
                objects[i].events.append((length - 10, "leave", None))
                busy[i].append((length - 10, length - 1))

    planners = {
        "cross": plan_crossings,
        "hide": plan_full_occlusion,
        "exit": plan_exits_and_entries,
    }
    for kind in variant.event_order:  # the events planned first get their windows first
        planners[kind]()
    for obj in objects:
        obj.events.sort(key=lambda e: (e[0], e[1]))
        # an entry from outside must come first (the object starts outside)
        enters = [e for e in obj.events if e[1] == "enter"]
        if enters:
            obj.events = enters + [e for e in obj.events if e[1] != "enter"]
    _simulate_motion(rng, objects, length, height, width, variant)
    return objects


def _pan_offsets(rng, length: int, height: int, width: int):
    """Background window offsets (length, 2) int (x, y) and the background size they need."""
    unit = min(height, width)
    speed = unit * rng.uniform(0.002, 0.012)
    heading = rng.uniform(0, 2 * math.pi)
    turn = _smooth_track(rng, length, -0.8, 0.8, step=(10, 20))
    vel = np.stack([np.cos(heading + turn), np.sin(heading + turn)], axis=1) * speed
    path = np.cumsum(vel, axis=0)
    path -= path.min(axis=0)
    offsets = np.round(path).astype(np.int64)
    extra = offsets.max(axis=0) + 1
    return offsets, (height + int(extra[1]), width + int(extra[0]))


@dataclass
class _VideoStats:
    """Per-instance per-frame areas measured while rendering (amodal = before occlusion)."""

    amodal_in_frame: np.ndarray  # (N, T) pixels of the object inside the frame, ignoring occluders
    visible: np.ndarray  # (N, T) pixels of its visible mask (0 where the annotation is null)


def _render_video(rng, objects, length: int, height: int, width: int, min_area: int, variant):
    """Renders the frames and the visible masks over the variant's background.

    Yields per frame ``(image (H, W, 3) uint8 BGR, rles: list of N RLE dicts or None)`` and finally
    returns a _VideoStats through ``StopIteration.value``.
    """
    if variant.background == "textured_pan":
        offsets, bg_size = _pan_offsets(rng, length, height, width)
        background = _make_background(rng, bg_size[0], bg_size[1])
    else:  # a static camera
        offsets = np.zeros((length, 2), np.int64)
        background = _make_plain_background(rng, height, width)
    sprites = [_make_sprite(o.look) for o in objects]
    n = len(objects)
    amodal = np.zeros((n, length), np.int64)
    visible = np.zeros((n, length), np.int64)
    for t in range(length):
        ox, oy = offsets[t]
        frame = background[oy : oy + height, ox : ox + width].copy()
        owner = np.full((height, width), -1, np.int16)
        windows = {}
        for i in sorted(range(n), key=lambda i: objects[i].z[t]):  # back to front
            obj = objects[i]
            warped = _warp_sprite(
                sprites[i], obj.pos[t], float(obj.radius[t]), float(obj.angle[t]), height, width
            )
            if warped is None:
                continue
            x0, y0, rgb, alpha = warped
            h, w = alpha.shape
            a = alpha[..., None]
            region = frame[y0 : y0 + h, x0 : x0 + w]
            region *= 1.0 - a
            region += np.clip(rgb * float(obj.brightness[t]), 0, 255) * a
            hard = alpha >= 0.5
            owner[y0 : y0 + h, x0 : x0 + w][hard] = i
            amodal[i, t] = int(hard.sum())
            windows[i] = (x0, y0, w, h)
        rles = [None] * n
        for i, (x0, y0, w, h) in windows.items():
            local = owner[y0 : y0 + h, x0 : x0 + w] == i
            area = int(local.sum())
            if area < min_area:
                continue
            full = np.zeros((height, width), np.uint8, order="F")
            full[y0 : y0 + h, x0 : x0 + w] = local
            rle = mask_util.encode(full)
            rle["counts"] = rle["counts"].decode("ascii")
            rles[i] = rle
            visible[i, t] = area
        image = cv2.cvtColor(np.clip(frame + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        yield image, rles
    return _VideoStats(amodal_in_frame=amodal, visible=visible)


# ----------------------------------------------------------------------------------------------
# Statistics (from the renderer's amodal areas and the simulated motion)
# ----------------------------------------------------------------------------------------------


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, end exclusive) of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    d = np.diff(padded)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _video_phenomena(objects, stats: _VideoStats, keep: list[int], min_area: int) -> dict:
    """Counts what happens in one video (over the kept, i.e. annotated, instances)."""
    out = {
        "partial_occlusion_frames": 0,
        "full_occlusion_frames": 0,
        "out_of_frame_frames": 0,
        "exit_reentries": 0,
        "late_entries": 0,
        "same_class_pairs": 0,
        "same_class_crossings": 0,
        "depth_order_changes": 0,
    }
    for i in keep:
        amodal, vis = stats.amodal_in_frame[i], stats.visible[i]
        shown = vis > 0
        out["partial_occlusion_frames"] += int(np.sum(shown & (vis < 0.9 * amodal)))
        out["full_occlusion_frames"] += int(np.sum(~shown & (amodal >= 2 * min_area)))
        outside = amodal == 0
        out["out_of_frame_frames"] += int(outside.sum())
        seen = np.flatnonzero(shown)
        if seen.size:
            for s, e in _runs(outside):
                if s > seen[0] and e <= seen[-1]:
                    out["exit_reentries"] += 1
            if outside[0] and seen[0] > 0:
                out["late_entries"] += 1
    for ia, a in enumerate(keep):
        for b in keep[ia + 1 :]:
            oa, ob = objects[a], objects[b]
            order = np.sign(oa.z - ob.z)
            out["depth_order_changes"] += int(np.sum(order[1:] != order[:-1]))
            if oa.look.category_id != ob.look.category_id:
                continue
            out["same_class_pairs"] += 1
            both = (stats.visible[a] > 0) & (stats.visible[b] > 0)
            rel = ob.pos - oa.pos  # (T, 2)
            close = np.linalg.norm(rel, axis=1) < (oa.radius + ob.radius)
            idx = np.flatnonzero(both)
            if idx.size >= 2 and np.any(close & both):
                # the relative position turns by more than 90 degrees while they pass each other
                dots = rel[idx] @ rel[idx].T
                if np.any(dots < 0):
                    out["same_class_crossings"] += 1
    return out


# ----------------------------------------------------------------------------------------------
# The data set
# ----------------------------------------------------------------------------------------------


def _params(**kwargs) -> dict:
    return {"version": SYNTHVIS_VERSION, **kwargs}


def _read_stamp(root: str) -> dict | None:
    path = os.path.join(root, "params.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        logger.warning("synthvis: ignoring the unreadable stamp %s (%s)", path, error)
        return None


def _result(root: str, stamp: dict, skipped: bool) -> dict:
    return {
        "root": root,
        "train_json": os.path.join(root, "train.json"),
        "train_image_root": os.path.join(root, "train", "JPEGImages"),
        "valid_json": os.path.join(root, "valid.json"),
        "valid_image_root": os.path.join(root, "valid", "JPEGImages"),
        "params": stamp["params"],
        "stats": stamp["stats"],
        "seconds": stamp["seconds"],
        "skipped": skipped,
    }


def _generate_split(
    split: str,
    split_index: int,
    image_root: str,
    num_videos: int,
    *,
    height: int,
    width: int,
    min_frames: int,
    max_frames: int,
    seed: int,
    min_area: int,
    jpeg_quality: int,
    variant: _Variant,
    progress: bool,
) -> tuple[dict, dict]:
    """Writes one split's frames; returns its YTVIS dict and its statistics."""
    videos, annotations = [], []
    categories = variant.categories
    totals = {
        "videos": num_videos,
        "frames": 0,
        "instances": 0,
        "instances_per_category": {c["name"]: 0 for c in categories},
        "videos_with_same_class_instances": 0,
    }
    lengths = []
    bar = tqdm(
        range(num_videos), desc=f"{variant.folder} {split}", unit="video", disable=not progress
    )
    for v in bar:
        rng = np.random.default_rng([seed, split_index, v])
        length = int(rng.integers(min_frames, max_frames + 1))
        objects = _plan_video(rng, length, height, width, variant)
        name = f"vid{v:04d}"
        os.makedirs(os.path.join(image_root, name), exist_ok=True)
        file_names = [f"{name}/{t:05d}.jpg" for t in range(length)]
        tracks = [[] for _ in objects]
        frames = _render_video(rng, objects, length, height, width, min_area, variant)
        while True:
            try:
                image, rles = next(frames)
            except StopIteration as stop:
                stats = stop.value
                break
            t = len(tracks[0])
            path = os.path.join(image_root, file_names[t])
            if not cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
                raise OSError(f"synthvis: could not write the frame {path}")
            for i, rle in enumerate(rles):
                tracks[i].append(rle)
        video_id = v + 1
        videos.append(
            {
                "id": video_id,
                "width": width,
                "height": height,
                "length": length,
                "file_names": file_names,
            }
        )
        keep = [i for i, tr in enumerate(tracks) if any(r is not None for r in tr)]
        for i in keep:
            segmentations, bboxes, areas = [], [], []
            for rle in tracks[i]:
                if rle is None:
                    segmentations.append(None)
                    bboxes.append(None)
                    areas.append(None)
                    continue
                segmentations.append(rle)
                bboxes.append([float(x) for x in mask_util.toBbox(rle)])
                areas.append(int(mask_util.area(rle)))
            category_id = objects[i].look.category_id
            annotations.append(
                {
                    "id": len(annotations) + 1,  # ids are unique within the split
                    "video_id": video_id,
                    "category_id": category_id,
                    "iscrowd": 0,
                    "segmentations": segmentations,
                    "bboxes": bboxes,
                    "areas": areas,
                    "width": width,
                    "height": height,
                    "length": length,
                }
            )
            totals["instances_per_category"][categories[category_id - 1]["name"]] += 1
        cats = [objects[i].look.category_id for i in keep]
        if len(set(cats)) < len(cats):
            totals["videos_with_same_class_instances"] += 1
        for key, value in _video_phenomena(objects, stats, keep, min_area).items():
            totals[key] = totals.get(key, 0) + value
        totals["frames"] += length
        totals["instances"] += len(keep)
        lengths.append(length)
    if lengths:
        totals["length_min"] = int(min(lengths))
        totals["length_mean"] = round(float(np.mean(lengths)), 2)
        totals["length_max"] = int(max(lengths))
    dataset = {
        "info": {
            "description": f"{variant.folder}: synthetic video instance segmentation (vis_core)",
            "version": str(SYNTHVIS_VERSION),
            "year": 2024,
            "contributor": "vis_core.data.synthvis",
            "split": split,
            "seed": seed,
        },
        "licenses": [{"id": 1, "name": "CC0 1.0", "url": ""}],
        "videos": videos,
        "categories": [
            {"id": c["id"], "name": c["name"], "supercategory": c["supercategory"]}
            for c in categories
        ],
        "annotations": annotations,
    }
    return dataset, totals


def generate_synthvis(
    root: str | None = None,
    *,
    variant: str = "hard",
    num_train_videos: int | None = None,
    num_val_videos: int | None = None,
    height: int | None = None,
    width: int | None = None,
    min_frames: int | None = None,
    max_frames: int | None = None,
    seed: int = 0,
    min_area: int | None = None,
    jpeg_quality: int = 90,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Writes the synthvis data set under ``root`` (see the module docstring for the layout).

    Args:
        root: output folder; default ``default_synthvis_root(variant)``.
        variant: ``"hard"`` (the default, the long-run benchmark: 7 classes told apart only by
            shape and texture, jittered colours, textured panning backgrounds) or ``"quick"`` (4
            classes of distinct shapes and solid colours on a plain static background, small
            frames, short videos: a small model learns it in minutes). Both have the same motion
            and events: same-class crossings, partial and full occlusion, exits with re-entry,
            late entries. The arguments below left at None take the variant's defaults
            (``SYNTHVIS_VARIANTS[variant].defaults``: hard 48 + 12 videos of 10..60 frames at
            360x640; quick 64 + 24 videos of 20..32 frames at 96x160).
        num_train_videos, num_val_videos: videos per split.
        height, width: frame size in pixels.
        min_frames, max_frames: each video's length is drawn uniformly in [min_frames, max_frames].
        seed: the same seed (and parameters) gives byte-identical JSON and identical frames.
        min_area: visible masks smaller than this (pixels) are annotated as absent (null); default
            8 pixels at 360x640, scaled with the frame area (at least 2).
        jpeg_quality: JPEG quality of the frames.
        force: rewrite even if ``root`` already holds a complete set with the same parameters.
        progress: show a tqdm progress bar per split.

    Returns:
        dict with ``root``, ``train_json``, ``train_image_root``, ``valid_json``,
        ``valid_image_root``, ``params``, ``stats`` (per split: counts of videos, frames, instances
        per category, and of the phenomena: partial/full occlusion frames, exits with re-entry,
        same-class crossings, ...), ``seconds`` (generation time) and ``skipped`` (True when an
        existing set was kept).
    """
    spec = _variant(variant)
    given = dict(
        num_train_videos=num_train_videos,
        num_val_videos=num_val_videos,
        height=height,
        width=width,
        min_frames=min_frames,
        max_frames=max_frames,
    )
    sizes = {k: spec.defaults[k] if v is None else v for k, v in given.items()}
    num_train_videos, num_val_videos = sizes["num_train_videos"], sizes["num_val_videos"]
    height, width = sizes["height"], sizes["width"]
    min_frames, max_frames = sizes["min_frames"], sizes["max_frames"]
    root = default_synthvis_root(variant) if root is None else root
    if height < 16 or width < 16:
        raise ValueError(f"synthvis: the frame size must be at least 16x16, got {height}x{width}")
    if not 1 <= min_frames <= max_frames:
        raise ValueError(
            f"synthvis: need 1 <= min_frames <= max_frames, got min_frames={min_frames}, "
            f"max_frames={max_frames}"
        )
    if num_train_videos < 0 or num_val_videos < 0:
        raise ValueError(
            f"synthvis: negative number of videos (num_train_videos={num_train_videos}, "
            f"num_val_videos={num_val_videos})"
        )
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"synthvis: jpeg_quality must be in [1, 100], got {jpeg_quality}")
    if min_area is None:
        min_area = max(2, int(round(8 * height * width / _REFERENCE_AREA)))
    params = _params(
        variant=variant,
        num_train_videos=num_train_videos,
        num_val_videos=num_val_videos,
        height=height,
        width=width,
        min_frames=min_frames,
        max_frames=max_frames,
        seed=seed,
        min_area=min_area,
        jpeg_quality=jpeg_quality,
    )
    stamp = _read_stamp(root)
    if not force and synthvis_exists(root) and stamp.get("params") == params:
        logger.info("synthvis: %s already holds a complete set with these parameters; kept", root)
        return _result(root, stamp, skipped=True)
    if stamp is not None or os.path.exists(os.path.join(root, "train.json")):
        logger.info("synthvis: rewriting the set in %s", root)
    os.makedirs(root, exist_ok=True)
    stamp_path = os.path.join(root, "params.json")
    if os.path.exists(stamp_path):
        os.remove(stamp_path)  # the set is incomplete from now until the new stamp is written
    start = time.perf_counter()
    all_stats = {}
    splits = (("train", 0, num_train_videos), ("valid", 1, num_val_videos))
    for split, split_index, num_videos in splits:
        image_root = os.path.join(root, split, "JPEGImages")
        if os.path.isdir(image_root):
            shutil.rmtree(image_root)  # frames of an older set must not linger
        os.makedirs(image_root, exist_ok=True)
        video_params = {
            k: v for k, v in params.items() if not k.startswith(("num_", "version", "variant"))
        }
        dataset, stats = _generate_split(
            split,
            split_index,
            image_root,
            num_videos,
            variant=spec,
            progress=progress,
            **video_params,
        )
        json_path = os.path.join(root, f"{split}.json")
        with open(json_path + ".tmp", "w") as f:
            json.dump(dataset, f, separators=(",", ":"))
        os.replace(json_path + ".tmp", json_path)
        all_stats[split] = stats
    seconds = round(time.perf_counter() - start, 2)
    stamp = {"params": params, "stats": all_stats, "seconds": seconds, "complete": True}
    with open(stamp_path + ".tmp", "w") as f:
        json.dump(stamp, f, indent=2, sort_keys=True)
    os.replace(stamp_path + ".tmp", stamp_path)
    logger.info(
        "synthvis (%s): wrote %d train and %d valid videos to %s in %.1f s",
        variant,
        num_train_videos,
        num_val_videos,
        root,
        seconds,
    )
    return _result(root, stamp, skipped=False)
