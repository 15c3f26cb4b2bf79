"""Data loaders for video data sets, built on detectron2's samplers so that `launch` scales them out."""

import itertools
import logging
from collections import deque

import numpy as np
from detectron2.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.data.samplers import RepeatFactorTrainingSampler, TrainingSampler
from detectron2.utils import comm
from detectron2.utils.logger import log_first_n
from tabulate import tabulate

__all__ = [
    "RatioMixedLoader",
    "build_video_test_loader",
    "build_video_train_loader",
    "check_num_classes",
    "get_video_dataset_dicts",
    "video_repeat_factors",
]

TRAIN_SAMPLERS = ("TrainingSampler", "RepeatFactorTrainingSampler")

logger = logging.getLogger(__name__)


def _log_class_histogram(dicts, class_names):
    """Tracks per class over the videos (crowd tracks left out)."""
    counts = np.zeros(len(class_names), dtype=int)
    for d in dicts:
        tracks = {
            a["id"]: a["category_id"]
            for frame in d.get("annotations", [])
            for a in frame
            if not a.get("iscrowd", 0)
        }
        for c in tracks.values():
            counts[c] += 1
    table = tabulate(
        [(n, int(c)) for n, c in zip(class_names, counts)],
        headers=["category", "#tracks"],
        tablefmt="pipe",
    )
    logger.info("Distribution of tracks among %d categories:\n%s", len(class_names), table)


def check_num_classes(key: str, num_classes: int, dataset_name: str, purpose: str) -> None:
    """Raise ValueError when the model's class count (config ``key`` = ``num_classes``) differs from
    the number of ``thing_classes`` of the registered data set ``dataset_name``. ``purpose`` ("training",
    "evaluation") says what was about to start. A set whose metadata is filled at load is loaded."""
    meta = MetadataCatalog.get(dataset_name)
    if meta.get("thing_classes") is None and dataset_name in DatasetCatalog.list():
        DatasetCatalog.get(dataset_name)
    classes = meta.get("thing_classes")
    if classes is None or len(classes) == num_classes:
        return
    shown = classes if len(classes) <= 10 else classes[:10] + ["..."]
    raise ValueError(
        f"{key} = {num_classes}, but data set {dataset_name!r} has {len(classes)} classes "
        f"(thing_classes {shown}); stopped before {purpose}. Set {key} {len(classes)} (on the command "
        f"line or in your config) or use a data set of {num_classes} classes."
    )


def get_video_dataset_dicts(names, filter_empty=True):
    """Load and concatenate the per-video dicts of registered data sets.

    Args:
        names (str or list[str]): registered data set names.
        filter_empty (bool): drop videos without any non-crowd object (training).
    """
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ValueError("get_video_dataset_dicts: no data set names given")
    dicts_per_set = []
    for name in names:
        if name not in DatasetCatalog.list():
            raise KeyError(
                f"Data set {name!r} is not registered; registered video sets: "
                f"{sorted(n for n in DatasetCatalog.list() if MetadataCatalog.get(n).get('evaluator_type') == 'ytvis')}"
                ". Register your own with vis_core.data.register_ytvis_instances."
            )
        dicts = DatasetCatalog.get(name)
        if not dicts:
            raise ValueError(f"Data set {name!r} is empty")
        dicts_per_set.append(dicts)
    _check_same_classes(names)
    dicts = list(itertools.chain.from_iterable(dicts_per_set))
    has_annotations = "annotations" in dicts[0]
    if filter_empty and has_annotations:
        before = len(dicts)
        dicts = [
            d
            for d in dicts
            if any(not a.get("iscrowd", 0) for frame in d["annotations"] for a in frame)
        ]
        if len(dicts) < before:
            log_first_n(
                logging.INFO, f"Removed {before - len(dicts)} videos without annotations", n=1
            )
    if has_annotations:
        _log_class_histogram(dicts, MetadataCatalog.get(names[0]).thing_classes)
    return dicts


def _check_same_classes(names):
    """Several sets trained or tested together must share one class list (ids are contiguous
    indices into it); raise ValueError naming the first two that differ."""
    first = MetadataCatalog.get(names[0]).get("thing_classes")
    for name in names[1:]:
        classes = MetadataCatalog.get(name).get("thing_classes")
        if first is not None and classes is not None and list(classes) != list(first):
            raise ValueError(
                f"Data sets {names[0]!r} and {name!r} are used together but their thing_classes "
                f"differ: {list(first)} vs {list(classes)}. Use sets of the same categories, or map "
                "one onto the other's category ids in its JSON."
            )


def video_repeat_factors(dicts, repeat_thresh, sqrt=True):
    """Per-video repeat factors for RepeatFactorTrainingSampler: a video counts as one "image"
    whose categories are those of its tracks, and detectron2's formula (LVIS: r = max(1, sqrt(t /
    f(c))) of the video's rarest category c, f(c) the fraction of videos holding c) gives its
    factor. Returns a float tensor with one factor per dict."""
    per_video = [
        {
            "annotations": [
                {"category_id": c}
                for c in {a["category_id"] for frame in d.get("annotations", []) for a in frame}
            ]
        }
        for d in dicts
    ]
    return RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
        per_video, repeat_thresh, sqrt=sqrt
    )


def build_train_sampler(cfg, dicts):
    """The sampler named by ``cfg.DATALOADER.SAMPLER_TRAIN`` over ``dicts`` (one per video)."""
    name = cfg.DATALOADER.SAMPLER_TRAIN
    if name == "TrainingSampler":
        return TrainingSampler(len(dicts))
    if name == "RepeatFactorTrainingSampler":
        factors = video_repeat_factors(
            dicts, cfg.DATALOADER.REPEAT_THRESHOLD, sqrt=cfg.DATALOADER.REPEAT_SQRT
        )
        logger.info(
            "RepeatFactorTrainingSampler: %d videos, %.1f clips per epoch (threshold %g)",
            len(dicts),
            float(factors.sum()),
            cfg.DATALOADER.REPEAT_THRESHOLD,
        )
        return RepeatFactorTrainingSampler(factors)
    raise ValueError(
        f"DATALOADER.SAMPLER_TRAIN = {name!r} is not supported for video training; choose one of "
        f"{list(TRAIN_SAMPLERS)} (RepeatFactorTrainingSampler repeats videos of rare categories, "
        "DATALOADER.REPEAT_THRESHOLD)"
    )


class RatioMixedLoader:
    """Batches whose every sample comes from loader i with probability ratios[i] / sum(ratios).

    Each loader yields batches of its own set; their samples wait in a pool per loader until drawn.
    Infinite, as detectron2's training loaders.
    """

    def __init__(self, loaders, ratios, batch_size: int, seed=None):
        if len(loaders) != len(ratios) or not loaders:
            raise ValueError(f"RatioMixedLoader: {len(loaders)} loaders but ratios {list(ratios)}")
        if min(ratios) < 0 or sum(ratios) <= 0:
            raise ValueError(f"RatioMixedLoader: ratios {list(ratios)} must be >= 0, not all 0")
        self.loaders, self.batch_size, self.seed = loaders, int(batch_size), seed
        self.probs = np.asarray(ratios, dtype=float) / float(sum(ratios))

    def __iter__(self):
        iters = [iter(loader) for loader in self.loaders]
        pools = [deque() for _ in iters]
        rng = np.random.default_rng(self.seed)
        while True:
            batch = []
            for i in rng.choice(len(iters), size=self.batch_size, p=self.probs):
                if not pools[i]:
                    pools[i].extend(next(iters[i]))
                batch.append(pools[i].popleft())
            yield batch


def _train_loader(cfg, names, mapper):
    dicts = get_video_dataset_dicts(names, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    return build_detection_train_loader(
        dataset=dicts,
        mapper=mapper,
        sampler=build_train_sampler(cfg, dicts),
        total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
        aspect_ratio_grouping=False,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )


def build_video_train_loader(cfg, mapper):
    """Infinite training loader over ``cfg.DATASETS.TRAIN``; batches are lists of clip dicts, drawn
    by ``DATALOADER.SAMPLER_TRAIN`` (TrainingSampler or RepeatFactorTrainingSampler).

    With ``DATASETS.DATASET_RATIO`` (one ratio per train set) every sample of a batch is drawn from
    train set i with probability ratio i (e.g. YouTube-VIS 0.75 and COCO pseudo-videos 0.25, as
    VISOLO's official training); without it the sets are concatenated.
    """
    names, ratios = list(cfg.DATASETS.TRAIN), list(cfg.DATASETS.DATASET_RATIO)
    if not ratios:
        return _train_loader(cfg, names, mapper)
    if len(ratios) != len(names):
        raise ValueError(
            f"DATASETS.DATASET_RATIO {ratios} needs one ratio per DATASETS.TRAIN set {names}"
        )
    _check_same_classes(names)
    loaders = [_train_loader(cfg, [n], mapper) for n in names]
    per_rank = cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
    seed = None if cfg.SEED < 0 else cfg.SEED + comm.get_rank()
    return RatioMixedLoader(loaders, ratios, per_rank, seed)


def build_video_test_loader(cfg, dataset_name, mapper):
    """Inference loader over one data set: one whole video per batch, every video once (sharded by rank)."""
    dicts = get_video_dataset_dicts(dataset_name, filter_empty=False)
    return build_detection_test_loader(
        dataset=dicts, mapper=mapper, num_workers=cfg.DATALOADER.TEST_NUM_WORKERS
    )
