"""COCO-format instance sets as pseudo-videos: each image is a one-frame video whose training clips
repeat it T times, each copy augmented on its own (the COCO stage and the COCO/video mix of VISOLO,
IDOL, DVIS and others).

One dataset dict per image, in the video format of ``ytvis.py`` with ``length`` 1 and
``pseudo_video`` True: the mapper then samples frame 0 T times and draws the clip's augmentation
anew for every copy, so the copies differ as frames of a video would, with the same object ids.

COCO categories are relabelled to a video set's classes by a category map; objects of other
categories are dropped, and so are images left without an object (both counted in the log).
"""

import json
import logging
import os
from typing import Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from .builtin import OVIS_CATEGORIES, YTVIS_2019_CATEGORIES, YTVIS_2021_CATEGORIES, datasets_root
from .ytvis import YTVISFormatError, _bbox_of, _frame_segmentation, thing_colors

__all__ = [
    "COCO_TO_VIDEO_CLASSES",
    "coco_category_map",
    "load_coco_pseudo_videos",
    "register_all_coco_pseudo_videos",
    "register_coco_pseudo_videos",
]

logger = logging.getLogger(__name__)

# COCO class name -> video set class name: the correspondences the field trains with (the published
# COCO->YTVIS-2019/2021/OVIS maps: bicycles count as motorbikes, skis as snowboards, and in OVIS
# cars, buses and trucks as vehicles).
COCO_TO_VIDEO_CLASSES: Dict[str, Dict[str, str]] = {
    "ytvis_2019": {
        "person": "person", "bicycle": "motorbike", "car": "sedan", "motorcycle": "motorbike",
        "airplane": "airplane", "train": "train", "truck": "truck", "boat": "boat", "cat": "cat",
        "dog": "dog", "horse": "horse", "cow": "cow", "elephant": "elephant", "bear": "bear",
        "zebra": "zebra", "giraffe": "giraffe", "skis": "snowboard", "snowboard": "snowboard",
        "skateboard": "skateboard", "surfboard": "surfboard", "tennis racket": "tennis_racket",
    },
    "ytvis_2021": {
        "person": "person", "bicycle": "motorbike", "car": "car", "motorcycle": "motorbike",
        "airplane": "airplane", "train": "train", "truck": "truck", "boat": "boat", "bird": "bird",
        "cat": "cat", "dog": "dog", "horse": "horse", "cow": "cow", "elephant": "elephant",
        "bear": "bear", "zebra": "zebra", "giraffe": "giraffe", "frisbee": "flying_disc",
        "skis": "snowboard", "snowboard": "snowboard", "skateboard": "skateboard",
        "surfboard": "surfboard", "tennis racket": "tennis_racket",
    },
    "ovis": {
        "person": "Person", "bicycle": "Bicycle", "car": "Vehical", "motorcycle": "Motorcycle",
        "airplane": "Airplane", "bus": "Vehical", "truck": "Vehical", "boat": "Boat", "cat": "Cat",
        "dog": "Dog", "horse": "Horse", "sheep": "Sheep", "cow": "Cow", "elephant": "Elephant",
        "bear": "Bear", "zebra": "Zebra", "giraffe": "Giraffe",
    },
}  # fmt: skip

_VIDEO_CLASSES = {
    "ytvis_2019": YTVIS_2019_CATEGORIES,
    "ytvis_2021": YTVIS_2021_CATEGORIES,
    "ovis": OVIS_CATEGORIES,
}


def coco_category_map(family: str) -> Dict[int, int]:
    """{COCO category id: the video set's category id} for ``family`` ("ytvis_2019", "ytvis_2021",
    "ovis"), from detectron2's COCO category list and the video set's class list."""
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    if family not in COCO_TO_VIDEO_CLASSES:
        raise KeyError(
            f"no COCO category map for {family!r}; known: {sorted(COCO_TO_VIDEO_CLASSES)}"
        )
    coco_ids = {c["name"]: c["id"] for c in COCO_CATEGORIES if c["isthing"]}
    video_ids = {name: i + 1 for i, name in enumerate(_VIDEO_CLASSES[family])}
    return {coco_ids[c]: video_ids[v] for c, v in COCO_TO_VIDEO_CLASSES[family].items()}


def load_coco_pseudo_videos(
    json_file: str, image_root: str, category_map: Dict[int, int], num_classes: int
) -> List[dict]:
    """The images of a COCO instances JSON as one-frame pseudo-videos.

    Args:
        category_map: {COCO category id: the video set's category id (1-based, contiguous id + 1)};
            objects of other categories are dropped.
        num_classes: the video set's number of classes (ids beyond it are an error in the map).
    Raises:
        YTVISFormatError: the JSON is not COCO instances format; the message names file and record.
    """
    if not os.path.isfile(json_file):
        raise FileNotFoundError(
            f"COCO instances JSON {json_file!r} does not exist; get COCO 2017 (cocodataset.org) and "
            "arrange it as datasets/README.md shows, or point DETECTRON2_DATASETS at its folder"
        )
    try:
        with open(json_file) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise YTVISFormatError(f"{json_file}: cannot be read as JSON ({e})") from e
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise YTVISFormatError(f"{json_file}: a COCO instances JSON needs '{key}'")
    bad = {k: v for k, v in category_map.items() if not 1 <= v <= num_classes}
    if bad:
        raise ValueError(f"category map for {json_file}: target ids {bad} outside 1..{num_classes}")
    known = {c["id"] for c in data["categories"]}
    objects: Dict[int, list] = {}
    dropped = 0
    for ann in data["annotations"]:
        where = f"{json_file}: annotation {ann.get('id')} (image {ann.get('image_id')})"
        for key in ("id", "image_id", "category_id", "segmentation"):
            if key not in ann:
                raise YTVISFormatError(f"{where}: missing '{key}'")
        if ann["category_id"] not in known:
            raise YTVISFormatError(f"{where}: category_id {ann['category_id']} not in 'categories'")
        if ann["category_id"] not in category_map:
            dropped += 1
            continue
        objects.setdefault(ann["image_id"], []).append(ann)
    videos = []
    for image in data["images"]:
        anns = objects.get(image["id"])
        if not anns:
            continue
        h, w = image["height"], image["width"]
        frame = []
        for ann in anns:
            where = f"{json_file}: annotation {ann['id']} (image {image['id']})"
            seg = _frame_segmentation(ann["segmentation"], h, w, where)
            if seg is None:
                continue
            frame.append(
                {
                    "id": ann["id"],
                    "category_id": category_map[ann["category_id"]] - 1,
                    "bbox": ann.get("bbox") or _bbox_of(seg, h, w),
                    "bbox_mode": BoxMode.XYWH_ABS,
                    "segmentation": seg,
                    "iscrowd": ann.get("iscrowd", 0),
                }
            )
        videos.append(
            {
                "file_names": [os.path.join(image_root, image["file_name"])],
                "height": h,
                "width": w,
                "length": 1,
                "video_id": image["id"],
                "annotations": [frame],
                "pseudo_video": True,
            }
        )
    logger.info(
        "COCO pseudo-videos from %s: %d images with objects of the mapped classes (of %d), %d "
        "objects of unmapped classes dropped",
        json_file,
        len(videos),
        len(data["images"]),
        dropped,
    )
    return videos


def register_coco_pseudo_videos(
    name: str,
    json_file: str,
    image_root: str,
    category_map: Dict[int, int],
    thing_classes: Sequence[str],
    metadata: Optional[dict] = None,
) -> None:
    """Register a COCO instances JSON as the pseudo-video training set ``name`` (loaded lazily),
    with the video set's ``thing_classes`` (so that it mixes with that set in DATASETS.TRAIN)."""
    DatasetCatalog.register(
        name,
        lambda: load_coco_pseudo_videos(json_file, image_root, category_map, len(thing_classes)),
    )
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=image_root,
        evaluator_type="ytvis",
        thing_classes=list(thing_classes),
        thing_colors=thing_colors(len(thing_classes)),
        thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(thing_classes))},
        **(metadata or {}),
    )


def register_all_coco_pseudo_videos(root: Optional[str] = None) -> None:
    """``coco_ytvis_2019_train``, ``coco_ytvis_2021_train``, ``coco_ovis_train``: COCO train2017
    ($DETECTRON2_DATASETS/coco/annotations/instances_train2017.json, images in coco/train2017)
    relabelled to each video set's classes on load."""
    root = datasets_root() if root is None else root
    json_file = os.path.join(root, "coco", "annotations", "instances_train2017.json")
    image_root = os.path.join(root, "coco", "train2017")
    for family, classes in _VIDEO_CLASSES.items():
        name = f"coco_{family}_train"
        if name not in DatasetCatalog.list():
            register_coco_pseudo_videos(
                name, json_file, image_root, coco_category_map(family), classes
            )
