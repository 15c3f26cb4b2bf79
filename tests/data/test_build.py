"""Training loaders: DATALOADER.SAMPLER_TRAIN (per-video repeat factors), several train sets."""

import itertools
import json
import math

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.samplers import RepeatFactorTrainingSampler, TrainingSampler

from tests.conftest import write_tiny_ytvis
from vis_core.config import add_vis_config
from vis_core.data import (
    YTVISDatasetMapper,
    build_video_train_loader,
    get_video_dataset_dicts,
    register_ytvis_instances,
)
from vis_core.data.build import build_train_sampler, video_repeat_factors


def _register(name, root, rare=False):
    """A tiny set of 4 videos (classes red, green); with ``rare``, a third class 'blue' holds only
    the second track of video 1."""
    for catalog in (DatasetCatalog, MetadataCatalog):
        if name in catalog.list():
            catalog.remove(name)
    json_path, image_root, _ = write_tiny_ytvis(root, num_videos=4)
    if rare:
        data = json.load(open(json_path))
        data["categories"].append({"id": 3, "name": "blue", "supercategory": "object"})
        data["annotations"][1]["category_id"] = 3  # video 1's track 2
        json.dump(data, open(json_path, "w"))
    register_ytvis_instances(name, {}, json_path, image_root)
    return name


def _cfg(names, sampler):
    cfg = add_vis_config(get_cfg())
    cfg.DATASETS.TRAIN = tuple(names)
    cfg.DATALOADER.SAMPLER_TRAIN = sampler
    cfg.DATALOADER.REPEAT_THRESHOLD = 0.5
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 1
    cfg.INPUT.MIN_SIZE_TRAIN = (32,)
    return cfg


def test_repeat_factors_per_video_from_track_categories(tmp_path):
    name = _register("build_rare", str(tmp_path), rare=True)
    dicts = get_video_dataset_dicts(name)
    # f(red) = 4/4, f(green) = 3/4, f(blue) = 1/4; r(c) = max(1, sqrt(0.5 / f(c))); a video takes
    # the factor of its rarest category.
    factors = video_repeat_factors(dicts, 0.5)
    assert factors.tolist() == pytest.approx([math.sqrt(2), 1.0, 1.0, 1.0])
    assert video_repeat_factors(dicts, 0.5, sqrt=False).tolist() == pytest.approx([2, 1, 1, 1])

    cfg = _cfg([name], "RepeatFactorTrainingSampler")
    sampler = build_train_sampler(cfg, dicts)
    assert isinstance(sampler, RepeatFactorTrainingSampler)
    # Video 1 is drawn about sqrt(2) times as often as each other video.
    drawn = torch.tensor(list(itertools.islice(iter(sampler), 4000)))
    counts = torch.bincount(drawn, minlength=4).float()
    assert counts[0] / counts[1:].mean() == pytest.approx(math.sqrt(2), rel=0.15)
    assert isinstance(build_train_sampler(_cfg([name], "TrainingSampler"), dicts), TrainingSampler)

    loader = build_video_train_loader(cfg, YTVISDatasetMapper(cfg, is_train=True))
    batch = next(iter(loader))
    assert len(batch) == 1 and len(batch[0]["instances"]) == cfg.INPUT.SAMPLING_FRAME_NUM


def test_unknown_sampler_is_refused(tmp_path):
    name = _register("build_plain", str(tmp_path))
    cfg = _cfg([name], "RandomSubsetTrainingSampler")
    with pytest.raises(ValueError, match=r"DATALOADER.SAMPLER_TRAIN = 'RandomSubsetTrainingSampler'"
                       r" is not supported.*'TrainingSampler', 'RepeatFactorTrainingSampler'"):  # fmt: skip
        build_video_train_loader(cfg, YTVISDatasetMapper(cfg, is_train=True))


def test_train_sets_must_share_their_classes(tmp_path):
    a = _register("build_set_a", str(tmp_path / "a"))
    b = _register("build_set_b", str(tmp_path / "b"))
    c = _register("build_set_c", str(tmp_path / "c"), rare=True)
    assert len(get_video_dataset_dicts([a, b])) == 8
    with pytest.raises(ValueError, match=r"'build_set_a' and 'build_set_c' .* thing_classes differ: "
                       r"\['red', 'green'\] vs \['red', 'green', 'blue'\]"):  # fmt: skip
        get_video_dataset_dicts([a, c])
