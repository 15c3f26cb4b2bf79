"""Carve a held-out sub-split with ground truth out of a YouTube-VIS-format training JSON.

The validation ground truth of YouTube-VIS and OVIS is private; this gives local AP:

    python -m vis_core.data.split --json datasets/ytvis_2021/train.json --fraction 0.1 --seed 0

writes ``<dir>/<stem>_sub_train.json`` and ``<dir>/<stem>_sub_val.json`` next to the input (or in
``--out-dir``): the videos are split at random (``fraction`` of them held out), never shared between
the two files; each file keeps the annotations of its own videos and the same ``categories``,
``info`` and ``licenses``. The built-in registration offers ``<split>_sub_train`` / ``<split>_sub_val``
when these files exist.
"""

import argparse
import json
import logging
import os
import sys
from typing import Optional, Tuple

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["split_ytvis_json", "sub_split_paths"]


def sub_split_paths(json_file: str, out_dir: Optional[str] = None) -> Tuple[str, str]:
    """The (sub_train, sub_val) JSON paths that ``split_ytvis_json`` writes for ``json_file``."""
    stem = os.path.splitext(os.path.basename(json_file))[0]
    out_dir = out_dir or os.path.dirname(os.path.abspath(json_file))
    return (
        os.path.join(out_dir, f"{stem}_sub_train.json"),
        os.path.join(out_dir, f"{stem}_sub_val.json"),
    )


def split_ytvis_json(
    json_file: str, fraction: float = 0.1, seed: int = 0, out_dir: Optional[str] = None
) -> Tuple[str, str]:
    """Split a YTVIS-format JSON by video into a sub-train and a held-out sub-val file.

    Args:
        json_file: a YouTube-VIS-format JSON with ``videos`` and ``annotations``.
        fraction: share of the videos held out, in (0, 1); at least one video goes to each side.
        seed: seed of the random choice of held-out videos.
        out_dir: where to write; default: next to ``json_file``.
    Returns:
        the paths of the sub-train and sub-val files.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}.")
    try:
        with open(json_file) as f:
            dataset = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{json_file!r} does not exist.") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{json_file!r} is not valid JSON: {error}") from None
    for key in ("videos", "annotations", "categories"):
        if key not in dataset:
            raise ValueError(
                f"{json_file!r} has no {key!r}: a sub-split needs a file with ground truth."
            )
    videos = dataset["videos"]
    if len(videos) < 2:
        raise ValueError(f"{json_file!r} has {len(videos)} video(s); a split needs at least 2.")
    num_val = min(len(videos) - 1, max(1, int(round(fraction * len(videos)))))
    rng = np.random.default_rng(seed)
    val_idx = set(rng.choice(len(videos), size=num_val, replace=False).tolist())
    val_ids = {v["id"] for i, v in enumerate(videos) if i in val_idx}

    def subset(keep_val: bool) -> dict:
        out = {k: v for k, v in dataset.items() if k not in ("videos", "annotations")}
        out["videos"] = [v for v in videos if (v["id"] in val_ids) == keep_val]
        out["annotations"] = [
            a for a in dataset["annotations"] if (a["video_id"] in val_ids) == keep_val
        ]
        return out

    train_path, val_path = sub_split_paths(json_file, out_dir)
    os.makedirs(os.path.dirname(train_path), exist_ok=True)
    for path, part in ((train_path, subset(False)), (val_path, subset(True))):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(part, f)
        os.replace(tmp, path)
        logger.info(
            "Wrote %s: %d videos, %d annotations",
            path,
            len(part["videos"]),
            len(part["annotations"]),
        )
    return train_path, val_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vis_core.data.split",
        description="Split a YouTube-VIS-format training JSON by video into sub_train/sub_val.",
    )
    parser.add_argument("--json", required=True, help="the training JSON to split")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of videos held out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=None, help="default: next to the input JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        train_path, val_path = split_ytvis_json(args.json, args.fraction, args.seed, args.out_dir)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"sub-train: {train_path}\nsub-val:   {val_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
