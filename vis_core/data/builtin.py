"""Built-in data sets: YouTube-VIS 2019/2021, OVIS, synthvis and synthvis_quick, under
``$DETECTRON2_DATASETS``.

Registered once at ``import vis_core.data``; registering again (a second import, another project doing
the same) is a no-op. Nothing is read at registration: a split whose files are absent fails when it is
first used, with a message that names the missing path and how to get it.
"""

import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from .split import sub_split_paths
from .synthvis import SYNTHVIS_CATEGORIES, SYNTHVIS_QUICK_CATEGORIES
from .ytvis import load_ytvis_json, thing_colors

__all__ = [
    "YTVIS_2019_CATEGORIES",
    "YTVIS_2021_CATEGORIES",
    "OVIS_CATEGORIES",
    "register_all_builtin",
]

YTVIS_2019_CATEGORIES = [
    "person",
    "giant_panda",
    "lizard",
    "parrot",
    "skateboard",
    "sedan",
    "ape",
    "dog",
    "snake",
    "monkey",
    "hand",
    "rabbit",
    "duck",
    "cat",
    "cow",
    "fish",
    "train",
    "horse",
    "turtle",
    "bear",
    "motorbike",
    "giraffe",
    "leopard",
    "fox",
    "deer",
    "owl",
    "surfboard",
    "airplane",
    "truck",
    "zebra",
    "tiger",
    "elephant",
    "snowboard",
    "boat",
    "shark",
    "mouse",
    "frog",
    "eagle",
    "earless_seal",
    "tennis_racket",
]  # official ids 1..40 in this order
YTVIS_2021_CATEGORIES = [
    "airplane",
    "bear",
    "bird",
    "boat",
    "car",
    "cat",
    "cow",
    "deer",
    "dog",
    "duck",
    "earless_seal",
    "elephant",
    "fish",
    "flying_disc",
    "fox",
    "frog",
    "giant_panda",
    "giraffe",
    "horse",
    "leopard",
    "lizard",
    "monkey",
    "motorbike",
    "mouse",
    "parrot",
    "person",
    "rabbit",
    "shark",
    "skateboard",
    "snake",
    "snowboard",
    "squirrel",
    "surfboard",
    "tennis_racket",
    "tiger",
    "train",
    "truck",
    "turtle",
    "whale",
    "zebra",
]  # official ids 1..40 in this order
OVIS_CATEGORIES = [
    "Person",
    "Bird",
    "Cat",
    "Dog",
    "Horse",
    "Sheep",
    "Cow",
    "Elephant",
    "Bear",
    "Zebra",
    "Giraffe",
    "Poultry",
    "Giant_panda",
    "Lizard",
    "Parrot",
    "Monkey",
    "Rabbit",
    "Tiger",
    "Fish",
    "Turtle",
    "Bicycle",
    "Motorcycle",
    "Airplane",
    "Boat",
    "Vehical",
]  # official ids 1..25 in this order ("Vehical" is the official spelling)

# (name, root, split) -> (json file candidates, image root candidates), relative to DETECTRON2_DATASETS.
# The first candidate that exists is used; OVIS's file names differ between public codebases.
_YTVIS_SPLITS = {
    "ytvis_2019": ("ytvis_2019", "YouTube-VIS 2019", "https://youtube-vos.org/dataset/vis/"),
    "ytvis_2021": ("ytvis_2021", "YouTube-VIS 2021", "https://youtube-vos.org/dataset/vis/"),
}
_SPLITS = {"train": "train", "val": "valid", "test": "test"}
_HOW_TO_GET = {
    "ytvis_2019": "download YouTube-VIS 2019 from https://youtube-vos.org/dataset/vis/",
    "ytvis_2021": "download YouTube-VIS 2021 from https://youtube-vos.org/dataset/vis/",
    "ovis": "download OVIS from https://songbai.site/ovis/",
    "synthvis": "generate it with `python datasets/generate_synthvis.py`",
    "synthvis_quick": "generate it with `python datasets/generate_synthvis.py --quick`",
}


def datasets_root():
    """``$DETECTRON2_DATASETS``, default ``./datasets``."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def builtin_split_files(family, split, root=None):
    """Candidate (json_file, image_root) pairs of a built-in split, relative paths joined to ``root``."""
    root = datasets_root() if root is None else root
    folder = _SPLITS[split]
    if family == "ovis":
        jsons = [
            f"ovis/annotations/annotations_{folder}.json",
            f"ovis/annotations_{folder}.json",
            f"ovis/{folder}.json",
        ]
        images = [f"ovis/{folder}", f"ovis/{folder}/JPEGImages"]
        return [(os.path.join(root, j), os.path.join(root, images[0])) for j in jsons] + [
            (os.path.join(root, j), os.path.join(root, images[1])) for j in jsons
        ]
    return [
        (
            os.path.join(root, family, f"{folder}.json"),
            os.path.join(root, family, folder, "JPEGImages"),
        )
    ]


def _lazy_loader(name, family, split):
    def load():
        candidates = builtin_split_files(family, split)
        for json_file, image_root in candidates:
            if os.path.isfile(json_file) and os.path.isdir(image_root):
                _point_metadata_at(name, json_file, image_root)
                return load_ytvis_json(json_file, image_root, name)
        tried = "\n  ".join(f"{j} with frames under {i}" for j, i in candidates)
        raise FileNotFoundError(
            f"Data set {name!r} is registered but its files are missing; looked for:\n  {tried}\n"
            f"To get it, {_HOW_TO_GET[family]} and arrange it as datasets/README.md shows, "
            f"or point DETECTRON2_DATASETS (now {datasets_root()!r}) at the folder that holds it."
        )

    return load


def _point_metadata_at(name, json_file, image_root):
    """Record the files a built-in split was loaded from (they depend on DETECTRON2_DATASETS and on
    which of the candidate names exists), replacing what registration guessed."""
    meta = MetadataCatalog.get(name)
    if meta.get("json_file") == json_file and meta.get("image_root") == image_root:
        return
    fields = {
        k: v for k, v in meta.as_dict().items() if k not in ("name", "json_file", "image_root")
    }
    MetadataCatalog.remove(name)  # detectron2's Metadata refuses to change a field in place
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, **fields)


def _register_once(name, loader, metadata):
    if name in DatasetCatalog.list():
        return
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(evaluator_type="ytvis", **metadata)


def _category_metadata(names):
    return {
        "thing_classes": list(names),
        "thing_colors": thing_colors(len(names)),
        "thing_dataset_id_to_contiguous_id": {i + 1: i for i in range(len(names))},
    }


def register_all_builtin():
    """Register every built-in split, and held-out ``*_sub_train``/``*_sub_val`` splits where they exist."""
    families = {
        "ytvis_2019": YTVIS_2019_CATEGORIES,
        "ytvis_2021": YTVIS_2021_CATEGORIES,
        "ovis": OVIS_CATEGORIES,
        "synthvis": [c["name"] for c in SYNTHVIS_CATEGORIES],
        "synthvis_quick": [c["name"] for c in SYNTHVIS_QUICK_CATEGORIES],
    }
    for family, categories in families.items():
        meta = _category_metadata(categories)
        synthetic = family.startswith("synthvis")
        splits = ("train", "val") if synthetic else ("train", "val", "test")
        for split in splits:
            name = f"{family}_{split}"
            json_file, image_root = builtin_split_files(family, split)[0]
            _register_once(
                name,
                _lazy_loader(name, family, split),
                dict(meta, json_file=json_file, image_root=image_root),
            )
        # Held-out splits carved out of the training set by `python -m vis_core.data.split`.
        for json_file, image_root in builtin_split_files(family, "train"):
            for part, sub_json in zip(("sub_train", "sub_val"), sub_split_paths(json_file)):
                name = f"{family}_{part}"
                if os.path.isfile(sub_json):
                    _register_once(
                        name,
                        lambda j=sub_json, i=image_root, n=name: load_ytvis_json(j, i, n),
                        dict(meta, json_file=sub_json, image_root=image_root),
                    )
