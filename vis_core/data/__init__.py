"""Video data: YTVIS/OVIS loading, registration, the video mapper, loaders and the synthetic data set.

Importing this package registers the built-in splits (idempotently); see ``builtin.py``.
"""

from .build import (
    build_video_test_loader,
    build_video_train_loader,
    check_num_classes,
    get_video_dataset_dicts,
)
from .builtin import register_all_builtin
from .coco_clips import (
    coco_category_map,
    load_coco_pseudo_videos,
    register_all_coco_pseudo_videos,
    register_coco_pseudo_videos,
)
from .dataset_mapper import YTVISDatasetMapper, build_video_augmentation
from .ytvis import (
    YTVISFormatError,
    load_ytvis_json,
    register_ytvis_from_config,
    register_ytvis_instances,
)

register_all_builtin()
register_all_coco_pseudo_videos()

__all__ = [
    "YTVISDatasetMapper",
    "YTVISFormatError",
    "build_video_augmentation",
    "build_video_test_loader",
    "build_video_train_loader",
    "coco_category_map",
    "load_coco_pseudo_videos",
    "register_all_coco_pseudo_videos",
    "register_coco_pseudo_videos",
    "check_num_classes",
    "get_video_dataset_dicts",
    "load_ytvis_json",
    "register_all_builtin",
    "register_ytvis_from_config",
    "register_ytvis_instances",
]
