"""COCO-format sets as pseudo-videos, the COCO -> video-set category maps, and ratio-mixed loading."""

import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T

from vis_core.config import add_vis_config
from vis_core.data import (
    YTVISDatasetMapper,
    build_video_train_loader,
    coco_category_map,
    load_coco_pseudo_videos,
    register_coco_pseudo_videos,
)
from vis_core.data.build import RatioMixedLoader


def test_category_maps_are_the_published_ones():
    # The COCO -> YouTube-VIS 2019 / 2021 / OVIS maps the field trains with (ids, not names).
    assert coco_category_map("ytvis_2019") == {
        1: 1, 2: 21, 3: 6, 4: 21, 5: 28, 7: 17, 8: 29, 9: 34, 17: 14, 18: 8, 19: 18, 21: 15, 22: 32,
        23: 20, 24: 30, 25: 22, 35: 33, 36: 33, 41: 5, 42: 27, 43: 40,
    }  # fmt: skip
    assert coco_category_map("ytvis_2021") == {
        1: 26, 2: 23, 3: 5, 4: 23, 5: 1, 7: 36, 8: 37, 9: 4, 16: 3, 17: 6, 18: 9, 19: 19, 21: 7,
        22: 12, 23: 2, 24: 40, 25: 18, 34: 14, 35: 31, 36: 31, 41: 29, 42: 33, 43: 34,
    }  # fmt: skip
    assert coco_category_map("ovis") == {
        1: 1, 2: 21, 3: 25, 4: 22, 5: 23, 6: 25, 8: 25, 9: 24, 17: 3, 18: 4, 19: 5, 20: 6, 21: 7,
        22: 8, 23: 9, 24: 10, 25: 11,
    }  # fmt: skip
    with pytest.raises(KeyError, match="no COCO category map for 'kitti'"):
        coco_category_map("kitti")
    for name in ("coco_ytvis_2019_train", "coco_ytvis_2021_train", "coco_ovis_train"):
        assert name in DatasetCatalog.list()


def write_tiny_coco(tiny_ytvis):
    """A COCO instances JSON of three frames of the tiny YTVIS set (two objects each), plus an
    object of a third category that the map leaves out."""
    json_path, image_root, masks = tiny_ytvis
    video = json.load(open(json_path))["videos"][0]
    images, annotations = [], []
    for k, t in enumerate((0, 1, 4)):
        images.append(
            {"id": 10 + k, "file_name": video["file_names"][t], "height": 48, "width": 64}
        )
        for ann_id, cat in ((1, 1), (2, 2)):
            m = masks[(1, ann_id)][t]
            rle = mask_util.encode(np.asfortranarray(m))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({"id": 100 * k + ann_id, "image_id": 10 + k, "category_id": cat,
                                "segmentation": rle, "iscrowd": 0})  # fmt: skip
        annotations.append({"id": 100 * k + 9, "image_id": 10 + k, "category_id": 3,
                            "segmentation": [[1, 1, 5, 1, 5, 5]], "iscrowd": 0})  # fmt: skip
    images.append({"id": 99, "file_name": video["file_names"][5], "height": 48, "width": 64})
    categories = [{"id": i, "name": n} for i, n in ((1, "red"), (2, "green"), (3, "blue"))]
    path = os.path.join(os.path.dirname(json_path), "coco.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return path, image_root, masks


def test_coco_images_load_as_one_frame_pseudo_videos(tiny_ytvis):
    path, image_root, _ = write_tiny_coco(tiny_ytvis)
    videos = load_coco_pseudo_videos(path, image_root, {1: 1, 2: 2}, num_classes=2)
    assert [v["video_id"] for v in videos] == [10, 11, 12]  # image 99 has no object: left out
    v = videos[0]
    assert v["length"] == 1 and v["pseudo_video"] and len(v["file_names"]) == 1
    (frame,) = v["annotations"]
    assert [(a["id"], a["category_id"]) for a in frame] == [(1, 0), (2, 1)]  # blue dropped
    with pytest.raises(ValueError, match=r"target ids \{1: 5\} outside 1..2"):
        load_coco_pseudo_videos(path, image_root, {1: 5}, num_classes=2)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_coco_pseudo_videos(path + ".missing", image_root, {1: 1}, num_classes=2)


def test_each_copy_of_a_pseudo_video_is_augmented_on_its_own_with_the_same_ids(tiny_ytvis):
    path, image_root, masks = write_tiny_coco(tiny_ytvis)
    d = load_coco_pseudo_videos(path, image_root, {1: 1, 2: 2}, num_classes=2)[0]
    mapper = YTVISDatasetMapper(
        is_train=True,
        augmentations=[T.ResizeShortestEdge([24, 48], 200, "choice"), T.RandomFlip(prob=0.5)],
        image_format="BGR",
        sampling_frame_num=5,
        sampling_frame_range=20,
    )
    np.random.seed(0)
    seen_sizes, seen_flips = set(), set()
    for _ in range(6):
        clip = mapper(d)
        assert clip["frame_idx"] == [0] * 5
        for image, inst in zip(clip["image"], clip["instances"]):
            h, w = image.shape[1:]
            assert inst.image_size == (h, w) and inst.gt_ids.tolist() == [1, 2]
            seen_sizes.add((h, w))
            # object 1 is the painted square: its mask follows this copy's own transform
            ys, xs = np.nonzero(inst.gt_masks.tensor[0].numpy())
            red = image[0].numpy() > 150  # conftest paints object 1 (200, 50, 50) in BGR
            assert red[ys, xs].mean() > 0.9
            seen_flips.add(bool(xs.mean() > w / 2))
    assert seen_sizes == {(24, 32), (48, 64)} and seen_flips == {True, False}


class _Numbers:
    """A loader of batches of 4 samples labelled by the loader's tag."""

    def __init__(self, tag):
        self.tag = tag

    def __iter__(self):
        while True:
            yield [self.tag] * 4


def test_ratio_mixed_loader_draws_each_sample_by_the_ratios():
    mixed = iter(RatioMixedLoader([_Numbers("a"), _Numbers("b")], [0.75, 0.25], 8, seed=0))
    samples = [s for _ in range(500) for s in next(mixed)]
    assert abs(samples.count("a") / len(samples) - 0.75) < 0.02
    only_a = iter(RatioMixedLoader([_Numbers("a"), _Numbers("b")], [1, 0], 8, seed=0))
    assert set(next(only_a)) == {"a"}
    with pytest.raises(ValueError, match="2 loaders but ratios"):
        RatioMixedLoader([_Numbers("a"), _Numbers("b")], [1.0], 8)


def test_dataset_ratio_is_checked_against_the_train_sets(tiny_ytvis):
    path, image_root, _ = write_tiny_coco(tiny_ytvis)
    for name, classes in (("tiny_coco_rg", ["red", "green"]), ("tiny_coco_xy", ["x", "y"])):
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_coco_pseudo_videos(name, path, image_root, {1: 1, 2: 2}, classes)
    cfg = add_vis_config(get_cfg())
    cfg.DATASETS.TRAIN = ("tiny_coco_rg", "tiny_coco_xy")
    cfg.DATASETS.DATASET_RATIO = [0.5]
    with pytest.raises(ValueError, match="needs one ratio per DATASETS.TRAIN set"):
        build_video_train_loader(cfg, mapper=None)
    cfg.DATASETS.DATASET_RATIO = [0.5, 0.5]
    with pytest.raises(ValueError, match="thing_classes differ"):
        build_video_train_loader(cfg, mapper=None)
    cfg.DATASETS.TRAIN = ("tiny_coco_rg", "tiny_coco_rg")
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.INPUT.MIN_SIZE_TRAIN = (24,)
    batch = next(iter(build_video_train_loader(cfg, YTVISDatasetMapper(cfg, is_train=True))))
    assert len(batch) == 2 and all(
        len(clip["image"]) == cfg.INPUT.SAMPLING_FRAME_NUM for clip in batch
    )
