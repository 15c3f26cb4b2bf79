"""The video dataset mapper: one per-video dataset dict -> one model input (a clip, or the whole video)."""

import copy
import functools
import logging

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, Boxes, Instances, polygons_to_bitmask
from PIL import Image

from ..utils.lazy_sequence import LazySequence

__all__ = [
    "LazyVideoFrames",
    "YTVISDatasetMapper",
    "build_frame_augmentation",
    "build_video_augmentation",
]

logger = logging.getLogger(__name__)


_SAMPLING_MODES = ("range", "key_random", "consecutive")


def build_video_augmentation(cfg, is_train):
    """The augmentations of a clip; each is sampled once per clip and applied to all its frames.

    Training: any of ``cfg.INPUT.AUGMENTATIONS`` in a fixed order: "crop" (``INPUT.CROP``, before
    resizing, as detectron2 does), "resize" (multi-scale ResizeShortestEdge), "flip" (horizontal).
    Testing: ResizeShortestEdge to ``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``, or, where
    ``INPUT.TEST_FIXED_SIZE`` gives (H, W), a resize of every frame to exactly H x W.
    """
    if not is_train:
        fixed = tuple(cfg.INPUT.TEST_FIXED_SIZE)
        if fixed:
            if len(fixed) != 2 or min(fixed) < 1:
                raise ValueError(
                    f"INPUT.TEST_FIXED_SIZE = {fixed}: expected () or (height, width) in pixels"
                )
            return [T.Resize(fixed)]
        return [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")]
    known = {"crop", "resize", "flip"}
    unknown = set(cfg.INPUT.AUGMENTATIONS) - known
    if unknown:
        raise ValueError(
            f"INPUT.AUGMENTATIONS: unknown {sorted(unknown)}; choose from {sorted(known)}"
        )
    augs = []
    if "crop" in cfg.INPUT.AUGMENTATIONS and cfg.INPUT.CROP.ENABLED:
        augs.append(T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
    if "resize" in cfg.INPUT.AUGMENTATIONS:
        augs.append(
            T.ResizeShortestEdge(
                cfg.INPUT.MIN_SIZE_TRAIN,
                cfg.INPUT.MAX_SIZE_TRAIN,
                cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING,
            )
        )
    if "flip" in cfg.INPUT.AUGMENTATIONS and cfg.INPUT.RANDOM_FLIP != "none":
        augs.append(
            T.RandomFlip(
                horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                vertical=cfg.INPUT.RANDOM_FLIP == "vertical",
            )
        )
    return augs


def build_frame_augmentation(cfg, is_train):
    """The augmentations sampled anew for every frame of a training clip, after the clip's.

    Any of ``cfg.INPUT.PER_FRAME_AUGMENTATIONS`` in a fixed order: "rotation" (angle uniform in
    +-``INPUT.PER_FRAME_ROTATION_ANGLE`` degrees about the centre, same frame size), "crop" (a random
    ``INPUT.PER_FRAME_CROP_SIZE`` window). None at test time.
    """
    names = list(cfg.INPUT.PER_FRAME_AUGMENTATIONS)
    known = {"rotation", "crop"}
    unknown = set(names) - known
    if unknown:
        raise ValueError(
            f"INPUT.PER_FRAME_AUGMENTATIONS: unknown {sorted(unknown)}; choose from {sorted(known)}"
        )
    if not is_train:
        return []
    augs = []
    if "rotation" in names:
        angle = float(cfg.INPUT.PER_FRAME_ROTATION_ANGLE)
        augs.append(T.RandomRotation([-angle, angle], expand=False, sample_style="range"))
    if "crop" in names:
        augs.append(T.RandomCrop("absolute", tuple(cfg.INPUT.PER_FRAME_CROP_SIZE)))
    return augs


def _decode(annotation, d, t):
    """The (H, W) uint8 mask of ``annotation`` (compressed RLE or polygons) in frame ``t`` of the
    video dict ``d``; a segmentation that fails to decode raises ValueError naming the JSON file, the
    annotation, the video and the frame."""
    segmentation = annotation["segmentation"]
    try:
        if isinstance(segmentation, dict):
            return mask_util.decode(segmentation)
        return polygons_to_bitmask(segmentation, d["height"], d["width"]).astype(np.uint8)
    except (ValueError, TypeError, IndexError) as error:
        raise ValueError(
            f"{d.get('json_file', 'the data set')}: annotation {annotation['id']} (video "
            f"{d['video_id']}), frame {t} ({d['file_names'][t]}): its segmentation does not "
            f"decode ({type(error).__name__}: {error}); fix it in the JSON (load_ytvis_json "
            "checks every segmentation)"
        ) from error


def _frame_size(path):
    """(H, W) of an image file as detectron2's read_image gives it (EXIF rotation applied), read
    from its header only."""
    with Image.open(path) as image:
        w, h = image.size
        if image.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8):  # rotated by 90 degrees
            h, w = w, h
    return h, w


_EXIF_ORIENTATION = 0x0112


def _size_mismatch(d, t, size):
    """The message of frame ``t`` of video dict ``d`` having size ``size`` (H, W) where the JSON says
    another: either the JSON's height/width are wrong for the whole video, or its frames vary."""
    json_hw = f"{d['height']}x{d['width']}"
    where = f"{d.get('json_file', 'the data set')}: video {d['video_id']}"
    sizes = {}
    for u, path in enumerate(d["file_names"]):
        sizes.setdefault(size if u == t else _frame_size(path), []).append(u)
    if len(sizes) == 1:
        return (
            f"{where}: the JSON says {json_hw} (height x width), the frames are "
            f"{size[0]}x{size[1]} (all {len(d['file_names'])} of them, e.g. {d['file_names'][t]}); "
            f"fix 'height' and 'width' of video {d['video_id']} in the JSON"
        )
    listed = ", ".join(
        f"{h}x{w}: {len(frames)} frames (first {frames[0]})"
        for (h, w), frames in sorted(sizes.items())
    )
    return (
        f"{where}: frame {t} ({d['file_names'][t]}) has size {size[0]}x{size[1]}, the JSON says "
        f"{json_hw}: frame sizes vary within the video ({listed}); all frames of a video must share "
        "one size: resize them to the JSON's"
    )


class LazyVideoFrames(LazySequence):
    """The model-input frames of a test video, each read and transformed only when accessed.

    A sequence of T uint8 tensors (3, H', W'): iterating it holds one frame at a time (online
    methods read, step and drop each frame); a slice ``[s:e]`` reads that window only. The test
    transform is drawn once from the first frame read and applied to every frame.

    Args:
        read: ``read(t)`` -> frame t as an (H, W, 3) uint8 array in the model's channel order.
        length: T.
        augmentations: the (deterministic) test-time AugmentationList.
    """

    def __init__(self, read, length: int, augmentations):
        self._read, self._length, self._augmentations = read, int(length), augmentations
        self._transform = None

    def __len__(self):
        return self._length

    def _item(self, t):
        frame = self._read(t)
        if self._transform is None:
            aug_input = T.AugInput(frame)
            self._transform = self._augmentations(aug_input)
            image = aug_input.image
        else:
            image = self._transform.apply_image(frame)
        return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


def _channels_for_model(frames, rgb: bool, t: int):
    frame = frames[t]
    return frame[:, :, ::-1] if rgb else frame


class YTVISDatasetMapper:
    """Turns one per-video dataset dict into a model input.

    Training: samples a clip of ``sampling_frame_num`` frames within ``sampling_frame_range`` frames of a
    random reference frame, draws ONE transform from the augmentations and applies it to every frame,
    then, if ``frame_augmentations`` are given, draws one of those for each frame on its own, and returns per-frame ``Instances`` (gt_classes, gt_masks, gt_boxes, gt_ids) holding the same N
    tracks in the same order in every frame; a track absent in a frame has gt_id -1 and an empty mask
    there. Crowd tracks are left out. A clip with no visible object is kept as it is when
    ``max_tries`` is 0 (the official codes: the model learns "no object" from it); otherwise it is drawn
    anew up to ``max_tries`` times, then the mapper returns None and detectron2's loader draws another
    video.

    Testing: every frame, resized, without annotations; ``height``/``width`` keep the original size.
    The frames come as a :class:`LazyVideoFrames`, read from disk only when the model accesses them,
    so a 1,000-frame video is never decoded whole.

    Output dict: ``image`` (training: list of T uint8 tensors (3, H, W); testing: a sequence of them),
    ``instances`` (training: list of T
    Instances), ``frame_idx`` (list of T ints), ``file_names`` (the T paths), ``height``, ``width``,
    ``length``, ``video_id``.
    """

    @configurable
    def __init__(
        self,
        *,
        is_train: bool,
        augmentations: list,
        image_format: str,
        sampling_frame_num: int = 2,
        sampling_frame_range: int = 5,
        sampling_frame_shuffle: bool = False,
        max_tries: int = 0,
        frame_augmentations: list = (),
        sampling_frame_mode: str = "range",
    ):
        if sampling_frame_num < 1:
            raise ValueError(f"sampling_frame_num must be >= 1, got {sampling_frame_num}")
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.frame_augmentations = (
            T.AugmentationList(list(frame_augmentations)) if frame_augmentations else None
        )
        self.image_format = image_format
        self.sampling_frame_num = sampling_frame_num
        self.sampling_frame_range = sampling_frame_range
        self.sampling_frame_shuffle = sampling_frame_shuffle
        if sampling_frame_mode not in _SAMPLING_MODES:
            raise ValueError(
                f"INPUT.SAMPLING_FRAME_MODE must be one of {_SAMPLING_MODES}, got "
                f"{sampling_frame_mode!r}"
            )
        self.sampling_frame_mode = sampling_frame_mode
        self.max_tries = max_tries
        logger.info(
            "[YTVISDatasetMapper] %s; augmentations: %s; per frame: %s",
            "training" if is_train else "inference",
            augmentations,
            list(frame_augmentations),
        )

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            "is_train": is_train,
            "augmentations": build_video_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "sampling_frame_num": cfg.INPUT.SAMPLING_FRAME_NUM,
            "sampling_frame_range": cfg.INPUT.SAMPLING_FRAME_RANGE,
            "sampling_frame_shuffle": cfg.INPUT.SAMPLING_FRAME_SHUFFLE,
            "max_tries": cfg.INPUT.SAMPLING_MAX_TRIES,
            "frame_augmentations": build_frame_augmentation(cfg, is_train),
            "sampling_frame_mode": cfg.INPUT.get("SAMPLING_FRAME_MODE", "range"),
        }

    def sample_frames(self, length, rng=np.random):
        """Indices of one training clip: a reference frame plus others within the sampling range."""
        ref = int(rng.randint(length))
        start = max(0, ref - self.sampling_frame_range)
        end = min(length, ref + self.sampling_frame_range + 1)
        others = [i for i in range(start, end) if i != ref]
        need = self.sampling_frame_num - 1
        if need > 0:
            # Without replacement where the window is long enough, as a clip of distinct frames.
            picked = (
                rng.choice(others, need, replace=len(others) < need) if others else [ref] * need
            )
            idx = sorted([ref] + [int(i) for i in picked])
        else:
            idx = [ref]
        if self.sampling_frame_shuffle:
            rng.shuffle(idx)
        return idx

    def sample_key_random(self, annotations, rng=np.random):
        """TeViT's clip: a key frame with objects first, then ``sampling_frame_num - 1`` other frames
        with objects from anywhere in the video, in the random order drawn (not sorted).

        Args:
            annotations: the video's per-frame annotation lists.
        Returns:
            frame indices, or None where fewer than ``sampling_frame_num`` frames have objects.
        """
        annotated = [t for t, annos in enumerate(annotations) if annos]
        if len(annotated) < self.sampling_frame_num:
            return None
        key = int(annotated[rng.randint(len(annotated))])
        others = [t for t in annotated if t != key]
        picked = rng.choice(len(others), self.sampling_frame_num - 1, replace=False)
        return [key] + [int(others[i]) for i in picked]

    def _sample(self, length):
        if self.sampling_frame_mode == "consecutive":
            return self.sample_consecutive(length)
        return self.sample_frames(length)

    def sample_consecutive(self, length, rng=np.random):
        """EfficientVIS' clips: ``sampling_frame_num`` consecutive frames from a random start (a
        video shorter than that repeats its last frame at the end)."""
        start = int(rng.randint(max(length - self.sampling_frame_num, 0) + 1))
        return [min(start + i, length - 1) for i in range(self.sampling_frame_num)]

    def __call__(self, dataset_dict):
        d = copy.copy(dataset_dict)  # the frames and annotations are read, never modified
        length = d["length"]
        common = {key: d[key] for key in ("height", "width", "length", "video_id")}
        if not self.is_train:
            if length < 1:
                raise ValueError(f"video {d['video_id']} has no frames")
            read = functools.partial(self._read_frame, d)
            return {
                "image": LazyVideoFrames(read, length, self.augmentations),
                "frame_idx": list(range(length)),
                "file_names": list(d["file_names"]),
                **common,
            }
        if "annotations" not in d:
            raise ValueError(
                f"video {d['video_id']}: training needs annotations, the data set has none"
            )
        if self.sampling_frame_mode == "key_random":
            frame_idx = self.sample_key_random(d["annotations"])
            if frame_idx is None:
                logger.debug(
                    "video %s: fewer than %d frames with objects; skipped (key_random sampling)",
                    d["video_id"],
                    self.sampling_frame_num,
                )
                return None  # detectron2's MapDataset draws another video
        else:
            frame_idx = self._sample(length)
        redraws = 0
        while self.max_tries and not any(d["annotations"][t] for t in frame_idx):
            if redraws == self.max_tries:
                return None
            frame_idx = self._sample(length)
            redraws += 1

        frames = [self._read_frame(d, t) for t in frame_idx]
        # A pseudo-video (one image repeated, e.g. COCO) draws its augmentation anew for every copy.
        images, transforms = self._transform_frames(frames, d.get("pseudo_video", False))
        frame_annos = [d["annotations"][t] for t in frame_idx]
        instances = self._clip_instances(
            frame_annos, transforms, d, [im.shape[1:] for im in images], frame_idx
        )
        if self.max_tries and not any((inst.gt_ids >= 0).any() for inst in instances):
            return None  # every object was cropped away
        return {
            "image": images,
            "instances": instances,
            "frame_idx": frame_idx,
            "file_names": [d["file_names"][t] for t in frame_idx],
            **common,
        }

    def video_input(self, frames, *, video_id=0):
        """Inference input from a video's frames (a sequence of (H, W, 3) uint8 arrays in BGR order,
        as OpenCV reads them, e.g. a list or a :class:`vis_core.inference.video_io.VideoFrames`):
        what this mapper gives in test mode for a registered video. The frames are read and
        transformed when the model accesses them (:class:`LazyVideoFrames`)."""
        if not len(frames):
            raise ValueError(f"video {video_id} has no frames: give at least one frame")
        h, w = frames[0].shape[:2]
        read = functools.partial(_channels_for_model, frames, self.image_format == "RGB")
        sizes = {tuple(f.shape[:2]) for f in frames} if isinstance(frames, list) else {(h, w)}
        if len(sizes) > 1:
            raise ValueError(f"frames of one video differ in size: {sorted(sizes)} (H, W)")
        return {
            "image": LazyVideoFrames(read, len(frames), self.augmentations),
            "frame_idx": list(range(len(frames))),
            "height": h,
            "width": w,
            "length": len(frames),
            "video_id": video_id,
        }

    def _read_frame(self, d, t):
        image = utils.read_image(d["file_names"][t], format=self.image_format)
        if image.shape[:2] != (d["height"], d["width"]):
            raise ValueError(_size_mismatch(d, t, image.shape[:2]))
        return image

    def _transform_frames(self, frames, independent=False):
        """Draw ONE transform from the augmentations and apply it to every frame (``independent``:
        one draw per frame, for the copies of a pseudo-video), then one of the per-frame
        augmentations for each frame.

        Returns (list of T uint8 tensors (3, H', W'), list of T TransformLists, one per frame)."""
        if any(f.shape[:2] != frames[0].shape[:2] for f in frames):
            sizes = sorted({f.shape[:2] for f in frames})
            raise ValueError(f"frames of one video differ in size: {sizes} (H, W)")
        images, transforms = [], []
        for t, frame in enumerate(frames):
            if t == 0 or independent:
                aug_input = T.AugInput(frame)
                clip_transform = self.augmentations(aug_input)
                images.append(aug_input.image)
            else:
                images.append(clip_transform.apply_image(frame))
            transforms.append(clip_transform)
        if self.frame_augmentations is not None:
            for t, image in enumerate(images):
                frame_input = T.AugInput(image)
                transforms[t] = transforms[t] + self.frame_augmentations(frame_input)
                images[t] = frame_input.image
        images = [torch.as_tensor(np.ascontiguousarray(im.transpose(2, 0, 1))) for im in images]
        return images, transforms

    def _clip_instances(self, frame_annos, transforms, d, image_sizes, frame_idx):
        """Per-frame Instances with the clip's N (non-crowd) tracks in the same order in every frame;
        ``transforms`` holds each frame's TransformList, ``image_sizes`` each frame's (H', W'),
        ``frame_idx`` each frame's index in the video."""
        track_ids = sorted(
            {a["id"] for annos in frame_annos for a in annos if not a.get("iscrowd", 0)}
        )
        index = {tid: n for n, tid in enumerate(track_ids)}
        classes = {a["id"]: a["category_id"] for annos in frame_annos for a in annos}
        per_frame = []
        for annos, transform, (h, w), t in zip(frame_annos, transforms, image_sizes, frame_idx):
            masks = np.zeros((len(track_ids), h, w), dtype=bool)
            ids = torch.full((len(track_ids),), -1, dtype=torch.long)
            for a in annos:
                n = index.get(a["id"])
                if n is None:  # crowd
                    continue
                mask = transform.apply_segmentation(_decode(a, d, t))
                masks[n] = mask > 0
                if masks[n].any():  # an object cropped out of the frame counts as absent
                    ids[n] = a["id"]
            inst = Instances((h, w))
            inst.gt_classes = torch.tensor([classes[tid] for tid in track_ids], dtype=torch.long)
            inst.gt_ids = ids
            bitmasks = BitMasks(torch.from_numpy(masks))
            inst.gt_masks = bitmasks
            inst.gt_boxes = (
                bitmasks.get_bounding_boxes() if len(track_ids) else Boxes(torch.zeros(0, 4))
            )
            per_frame.append(inst)
        return per_frame
