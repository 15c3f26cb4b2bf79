"""Shared test fixtures: tiny YouTube-VIS-format data sets written to a temporary folder."""

import glob
import importlib.util
import json
import os
import sys

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _make_projects_importable():
    """Where the repository is used without `pip install -e .` (PYTHONPATH=repo), put each project's
    folder on the path of this process and of the processes it starts, as the install would."""
    for init in sorted(glob.glob(os.path.join(REPO, "projects", "*", "*", "__init__.py"))):
        package_dir = os.path.dirname(init)
        if importlib.util.find_spec(os.path.basename(package_dir)) is None:
            project = os.path.dirname(package_dir)
            sys.path.append(project)
            paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            os.environ["PYTHONPATH"] = os.pathsep.join(paths + [project])


_make_projects_importable()


def write_tiny_ytvis(
    root, *, num_videos=2, length=6, height=48, width=64, with_annotations=True, seed=0
):
    """Write a tiny YTVIS-format data set: each video has a textured background and two squares.

    Object 1 (category 1) moves right by 2 px a frame; object 2 (category 2) is static and absent
    (null) in frames 2 and 3. Frames are PNG, so pixels are exact. Returns (json_path, image_root,
    masks) where masks[(video_id, track_id)] is a list of T (H, W) uint8 masks or None.
    """
    rng = np.random.default_rng(seed)
    image_root = os.path.join(root, "JPEGImages")
    videos, annotations, masks = [], [], {}
    ann_id = 1
    for v in range(1, num_videos + 1):
        name = f"video{v}"
        os.makedirs(os.path.join(image_root, name), exist_ok=True)
        files = []
        tracks = {1: [], 2: []}
        for t in range(length):
            image = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
            m1 = np.zeros((height, width), np.uint8)
            x = 4 + 2 * t
            m1[10:20, x : x + 10] = 1
            m2 = np.zeros((height, width), np.uint8)
            m2[30:40, 40:52] = 1
            image[m1 > 0] = (200, 50, 50)
            if t in (2, 3):
                tracks[2].append(None)
            else:
                image[m2 > 0] = (50, 200, 50)
                tracks[2].append(m2)
            tracks[1].append(m1)
            fname = f"{name}/{t:05d}.png"
            cv2.imwrite(os.path.join(image_root, fname), image)
            files.append(fname)
        videos.append(
            {"id": v, "width": width, "height": height, "length": length, "file_names": files}
        )
        for tid, cat in ((1, 1), (2, 2)):
            segs, boxes, areas = [], [], []
            for m in tracks[tid]:
                if m is None:
                    segs.append(None), boxes.append(None), areas.append(None)
                    continue
                rle = mask_util.encode(np.asfortranarray(m))
                rle["counts"] = rle["counts"].decode("ascii")
                segs.append(rle)
                boxes.append(mask_util.toBbox(rle).tolist())
                areas.append(int(m.sum()))
            annotations.append(
                {
                    "id": ann_id,
                    "video_id": v,
                    "category_id": cat,
                    "iscrowd": 0,
                    "segmentations": segs,
                    "bboxes": boxes,
                    "areas": areas,
                    "width": width,
                    "height": height,
                    "length": length,
                }
            )
            masks[(v, ann_id)] = tracks[tid]
            ann_id += 1
    data = {
        "info": {},
        "licenses": [],
        "videos": videos,
        "categories": [
            {"id": 1, "name": "red", "supercategory": "object"},
            {"id": 2, "name": "green", "supercategory": "object"},
        ],
    }
    if with_annotations:
        data["annotations"] = annotations
    json_path = os.path.join(root, "tiny.json")
    with open(json_path, "w") as f:
        json.dump(data, f)
    return json_path, image_root, masks


@pytest.fixture
def tiny_ytvis(tmp_path):
    return write_tiny_ytvis(str(tmp_path))
