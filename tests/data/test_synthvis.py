"""synthvis: valid YouTube-VIS output, determinism, the CLI's stamp, and the phenomena it promises.

The phenomena (partial and full occlusion, same-class pairs that cross, exits with re-entry) are
measured from the written ground truth (masks, boxes, nulls), not from the generator's internals.
"""

import filecmp
import hashlib
import json
import os
import subprocess
import sys
from itertools import combinations

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

from vis_core.data.synthvis import (
    SYNTHVIS_CATEGORIES,
    SYNTHVIS_QUICK_CATEGORIES,
    generate_synthvis,
    synthvis_exists,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = dict(
    num_train_videos=3, num_val_videos=2, height=64, width=96, min_frames=10, max_frames=16
)


def _load(root, split):
    with open(os.path.join(root, f"{split}.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthvis_small"))
    result = generate_synthvis(root, seed=3, progress=False, **SMALL)
    return root, result


@pytest.fixture(scope="module")
def default_set(tmp_path_factory):
    """The default set (48 + 12 videos at 360x640), as the main job uses it."""
    root = str(tmp_path_factory.mktemp("synthvis_default"))
    result = generate_synthvis(root, progress=False)
    return root, result


# ------------------------------------------------------------------------------------------------
# Format
# ------------------------------------------------------------------------------------------------


def test_layout_and_result(small_set):
    root, result = small_set
    assert synthvis_exists(root)
    assert not result["skipped"]
    for split in ("train", "valid"):
        assert os.path.isfile(result[f"{split}_json"])
        assert os.path.isdir(result[f"{split}_image_root"])
        assert result[f"{split}_image_root"] == os.path.join(root, split, "JPEGImages")
    assert result["stats"]["train"]["videos"] == 3
    assert result["stats"]["valid"]["videos"] == 2


@pytest.mark.parametrize("split", ["train", "valid"])
def test_json_is_valid_ytvis(small_set, split):
    root, _ = small_set
    data = _load(root, split)
    assert set(data) == {"info", "licenses", "videos", "categories", "annotations"}
    cats = data["categories"]
    assert [c["id"] for c in cats] == list(range(1, len(cats) + 1))
    assert len(cats) >= 5
    assert [c["name"] for c in cats] == [c["name"] for c in SYNTHVIS_CATEGORIES]
    assert all(set(c) == {"id", "name", "supercategory"} for c in cats)

    videos = {v["id"]: v for v in data["videos"]}
    assert len(videos) == len(data["videos"]) == (3 if split == "train" else 2)
    for v in data["videos"]:
        assert (v["height"], v["width"]) == (64, 96)
        assert 10 <= v["length"] <= 16
        assert len(v["file_names"]) == v["length"]
        for name in v["file_names"]:
            image = cv2.imread(os.path.join(root, split, "JPEGImages", name))
            assert image is not None and image.shape == (64, 96, 3), name

    ann_ids = [a["id"] for a in data["annotations"]]
    assert len(set(ann_ids)) == len(ann_ids) and min(ann_ids) >= 1
    assert data["annotations"], "no annotations at all"
    for a in data["annotations"]:
        v = videos[a["video_id"]]
        assert 1 <= a["category_id"] <= len(cats)
        assert a["iscrowd"] == 0
        assert (a["height"], a["width"], a["length"]) == (v["height"], v["width"], v["length"])
        for key in ("segmentations", "bboxes", "areas"):
            assert len(a[key]) == v["length"], (a["id"], key)
        assert any(s is not None for s in a["segmentations"]), a["id"]
        for seg, box, area in zip(a["segmentations"], a["bboxes"], a["areas"]):
            if seg is None:
                assert box is None and area is None
                continue
            assert isinstance(seg["counts"], str)
            assert seg["size"] == [v["height"], v["width"]]
            mask = mask_util.decode(seg)
            assert mask.shape == (v["height"], v["width"])
            assert int(mask.sum()) == area > 0
            ys, xs = np.nonzero(mask)
            expected = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert box == [float(x) for x in expected]


def test_visible_masks_do_not_overlap(small_set):
    """Masks are the visible parts after occlusion: two objects never claim the same pixel."""
    root, _ = small_set
    data = _load(root, "train")
    for v in data["videos"]:
        anns = [a for a in data["annotations"] if a["video_id"] == v["id"]]
        for t in range(v["length"]):
            total = np.zeros((v["height"], v["width"]), np.int32)
            for a in anns:
                if a["segmentations"][t] is not None:
                    total += mask_util.decode(a["segmentations"][t])
            assert total.max() <= 1, (v["id"], t)


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="min_frames"):
        generate_synthvis(str(tmp_path), min_frames=20, max_frames=10, progress=False)
    with pytest.raises(ValueError, match="frame size"):
        generate_synthvis(str(tmp_path), height=8, progress=False)


# ------------------------------------------------------------------------------------------------
# Determinism and the stamp
# ------------------------------------------------------------------------------------------------


def _same_files(a, b):
    names_a = sorted(os.path.relpath(os.path.join(d, f), a) for d, _, fs in os.walk(a) for f in fs)
    names_b = sorted(os.path.relpath(os.path.join(d, f), b) for d, _, fs in os.walk(b) for f in fs)
    assert names_a == names_b
    return all(
        filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False)
        for n in names_a
        if n != "params.json"  # it records the generation time
    )


def test_deterministic(small_set, tmp_path):
    root, _ = small_set
    again = str(tmp_path / "again")
    generate_synthvis(again, seed=3, progress=False, **SMALL)
    assert _same_files(root, again), "same seed, different bytes"
    other = str(tmp_path / "other")
    generate_synthvis(other, seed=4, progress=False, **SMALL)
    assert _load(other, "train") != _load(root, "train")


def test_skip_force_and_parameter_change(tmp_path):
    root = str(tmp_path / "s")
    params = dict(SMALL, num_train_videos=1, num_val_videos=1, max_frames=10)
    first = generate_synthvis(root, progress=False, **params)
    assert not first["skipped"]
    assert generate_synthvis(root, progress=False, **params)["skipped"]
    assert not generate_synthvis(root, progress=False, force=True, **params)["skipped"]
    changed = generate_synthvis(root, progress=False, **dict(params, num_train_videos=2))
    assert not changed["skipped"]
    assert len(_load(root, "train")["videos"]) == 2
    # an interrupted run (no stamp) does not count as complete
    os.remove(os.path.join(root, "params.json"))
    assert not synthvis_exists(root)
    assert not generate_synthvis(root, progress=False, **dict(params, num_train_videos=2))[
        "skipped"
    ]


def test_cli(tmp_path):
    root = str(tmp_path / "cli")
    cmd = [
        sys.executable,
        os.path.join(REPO, "datasets", "generate_synthvis.py"),
        "--root",
        root,
        "--num-train",
        "1",
        "--num-val",
        "1",
        "--height",
        "48",
        "--width",
        "64",
        "--max-frames",
        "12",
        "--quiet",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "wrote" in out and synthvis_exists(root)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "nothing to do" in out
    assert _load(root, "valid")["videos"][0]["height"] == 48


# ------------------------------------------------------------------------------------------------
# The phenomena, measured from the ground truth of the default set
# ------------------------------------------------------------------------------------------------


def _tracks(data):
    """Per video: (video, [(annotation, masks: list of T bool (H, W) or None)])."""
    out = []
    for v in data["videos"]:
        anns = [a for a in data["annotations"] if a["video_id"] == v["id"]]
        decoded = [
            [None if s is None else mask_util.decode(s).astype(bool) for s in a["segmentations"]]
            for a in anns
        ]
        out.append((v, list(zip(anns, decoded))))
    return out


def _touches(m1, m2):
    """Whether two disjoint masks share a boundary of at least 3 pixels (4-neighbourhood)."""
    grown = cv2.dilate(m1.astype(np.uint8), np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8))
    return int((grown.astype(bool) & m2).sum()) >= 3


def _at_border(box, height, width):
    x, y, w, h = box
    return x <= 0 or y <= 0 or x + w >= width or y + h >= height


def _boxes_intersect(b1, b2):
    return (
        b1[0] < b2[0] + b2[2]
        and b2[0] < b1[0] + b1[2]
        and b1[1] < b2[1] + b2[3]
        and b2[1] < b1[1] + b1[3]
    )


def _gaps(seg):
    """(last visible frame before, first visible frame after) of every run of nulls inside a track."""
    shown = [s is not None for s in seg]
    out, t = [], 0
    while t < len(shown):
        if not shown[t] and t > 0 and any(shown[:t]):
            end = t
            while end < len(shown) and not shown[end]:
                end += 1
            if end < len(shown):
                out.append((t - 1, end))
            t = end
        else:
            t += 1
    return out


def measure_phenomena(data):
    """Counts from the ground truth alone.

    - partial occlusion: two objects whose masks share a boundary in a frame (visible masks of
      separate shapes only meet where one covers part of the other), counted per pair and frame;
    - full occlusion: a track that vanishes (null) inside the frame — its box is off the borders
      before and after the gap — while overlapping another object's box on both sides (counted per
      gap, and its null frames in ``full_frames``);
    - exit with re-entry: a gap whose box touches the frame border on both sides;
    - crossing same-class pair: two instances of one category whose masks touch at some frame and
      whose relative position turns by more than 90 degrees between frames where both are seen.
    """
    counts = dict(partial=0, full=0, full_frames=0, exit_reentry=0, same_class_pairs=0, crossings=0)
    for v, tracks in _tracks(data):
        height, width = v["height"], v["width"]
        for t in range(v["length"]):
            shown = [m[t] for _, m in tracks if m[t] is not None]
            counts["partial"] += sum(_touches(m1, m2) for m1, m2 in combinations(shown, 2))
        for a, _ in tracks:
            for before, after in _gaps(a["segmentations"]):
                box0, box1 = a["bboxes"][before], a["bboxes"][after]
                if _at_border(box0, height, width) and _at_border(box1, height, width):
                    counts["exit_reentry"] += 1
                elif not _at_border(box0, height, width) and not _at_border(box1, height, width):
                    others = [b for b, _ in tracks if b["id"] != a["id"]]
                    near0 = any(
                        o["bboxes"][before] and _boxes_intersect(box0, o["bboxes"][before])
                        for o in others
                    )
                    near1 = any(
                        o["bboxes"][after] and _boxes_intersect(box1, o["bboxes"][after])
                        for o in others
                    )
                    counts["full"] += int(near0 and near1)
                    counts["full_frames"] += (after - before - 1) * int(near0 and near1)
        for (a1, m1), (a2, m2) in combinations(tracks, 2):
            if a1["category_id"] != a2["category_id"]:
                continue
            counts["same_class_pairs"] += 1
            both = [t for t in range(v["length"]) if m1[t] is not None and m2[t] is not None]
            if not any(_touches(m1[t], m2[t]) for t in both):
                continue
            centres = np.array(
                [[np.argwhere(m[t]).mean(axis=0) for m in (m1, m2)] for t in both]
            )  # (F, 2, 2) as (y, x)
            rel = centres[:, 1] - centres[:, 0]
            if np.any(rel @ rel.T < 0):
                counts["crossings"] += 1
    return counts


def _measured(generated, split):
    """A generated set's split and the phenomena measured from it (printed with the generator's)."""
    root, result = generated
    data = _load(root, split)
    counts = measure_phenomena(data)
    print(split, "measured from the ground truth:", counts, "generator:", result["stats"][split])
    return data, counts


@pytest.mark.parametrize("split", ["train", "valid"])
def test_default_set_has_the_phenomena(default_set, split):
    data, counts = _measured(default_set, split)
    # the defaults: 360x640, videos of 10..60 frames
    assert {(v["height"], v["width"]) for v in data["videos"]} == {(360, 640)}
    lengths = [v["length"] for v in data["videos"]]
    assert min(lengths) >= 10 and max(lengths) <= 60
    videos = len(data["videos"])
    # every phenomenon occurs, in a good share of the videos
    assert counts["partial"] >= 3 * videos
    assert counts["full"] >= max(videos // 8, 1)
    assert counts["exit_reentry"] >= max(videos // 6, 1)
    assert counts["crossings"] >= videos // 3
    # every category occurs in both splits
    assert {a["category_id"] for a in data["annotations"]} == set(
        range(1, len(SYNTHVIS_CATEGORIES) + 1)
    )


def test_default_set_is_quick_to_make(default_set):
    _, result = default_set
    # generous bound (the machine is shared); the report gives the measured time
    assert result["seconds"] < 120, result["seconds"]


# ------------------------------------------------------------------------------------------------
# The hard set stays what it was; the quick variant
# ------------------------------------------------------------------------------------------------

# sha256 of the SMALL set's JSON (seed 3) as the generator wrote it before the quick variant
# existed: the hard set is the long-run benchmark, its output must not change for the same parameters.
HARD_SMALL_SHA256 = {
    "train": "228cf1df1dceb4784c3123ad9033315b6ea38cf2643bb8f663683039f6720f0e",
    "valid": "8f582425d8642c3694907b4afe8372501ca7c60f5cebbd6b2a235544c599d36a",
}


def test_hard_set_json_is_unchanged(small_set):
    root, _ = small_set
    for split, digest in HARD_SMALL_SHA256.items():
        with open(os.path.join(root, f"{split}.json"), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, split


@pytest.fixture(scope="module")
def quick_set(tmp_path_factory):
    """The quick set with its defaults (64 + 24 videos at 96x160), as the main job uses it."""
    root = str(tmp_path_factory.mktemp("synthvis_quick"))
    result = generate_synthvis(root, variant="quick", progress=False)
    return root, result


def _late_entries(data):
    """Tracks first seen after frame 0 with their box at the frame border (they come in)."""
    count = 0
    for a in data["annotations"]:
        first = next(t for t, s in enumerate(a["segmentations"]) if s is not None)
        count += first > 0 and _at_border(a["bboxes"][first], a["height"], a["width"])
    return count


@pytest.mark.parametrize("split", ["train", "valid"])
def test_quick_set_has_the_phenomena(quick_set, split):
    data, counts = _measured(quick_set, split)
    late = _late_entries(data)
    print(split, "late entries:", late)
    assert {(v["height"], v["width"]) for v in data["videos"]} == {(96, 160)}
    lengths = [v["length"] for v in data["videos"]]
    assert min(lengths) >= 20 and max(lengths) <= 32
    videos = len(data["videos"])
    assert videos == {"train": 64, "valid": 24}[split]
    # every phenomenon occurs in both splits, in a good share of the videos
    assert counts["partial"] >= 3 * videos
    assert counts["full"] >= videos // 6
    assert counts["exit_reentry"] >= videos // 6
    assert counts["crossings"] >= videos // 6
    assert late >= videos // 6
    # several instances of one class in most videos; every class in both splits
    same_class = sum(
        len(cats) > len(set(cats))
        for cats in (
            [a["category_id"] for a in data["annotations"] if a["video_id"] == v["id"]]
            for v in data["videos"]
        )
    )
    assert same_class >= videos // 2
    assert {a["category_id"] for a in data["annotations"]} == {1, 2, 3, 4}
    assert [c["name"] for c in data["categories"]] == [c["name"] for c in SYNTHVIS_QUICK_CATEGORIES]


def test_quick_set_looks_simple(quick_set):
    """Distinct solid class colours, a static background: measured from the frames and masks."""
    root, result = quick_set
    data = _load(root, "train")
    image_root = result["train_image_root"]
    colours = {c: [] for c in (1, 2, 3, 4)}
    background_std = []
    for v, tracks in _tracks(data)[:12]:
        frames = np.stack(
            [cv2.imread(os.path.join(image_root, f)).astype(np.float32) for f in v["file_names"]]
        )  # (T, H, W, 3) BGR
        ever = np.zeros(frames.shape[1:3], bool)
        for a, masks in tracks:
            for t, m in enumerate(masks):
                if m is not None:
                    ever |= m
                    inner = cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
                    if inner.sum() >= 10:
                        colours[a["category_id"]].append(frames[t][inner].mean(axis=0))
        ring = cv2.dilate(ever.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        background_std.append(float(frames[:, ~ring].std(axis=0).mean()))
    means = {c: np.mean(v, axis=0) for c, v in colours.items()}
    spread = {c: float(np.std(v, axis=0).max()) for c, v in colours.items()}
    for c1, c2 in combinations(means, 2):  # class colours far apart compared to their spread
        distance = float(np.linalg.norm(means[c1] - means[c2]))
        assert distance > 3 * max(spread[c1], spread[c2]), (c1, c2, distance, spread)
    # the camera does not move: background pixels stay put up to JPEG noise
    assert max(background_std) < 3.0, background_std


def test_quick_set_is_deterministic_and_distinct(tmp_path):
    small = dict(num_train_videos=2, num_val_videos=1, height=48, width=80, min_frames=8)
    roots = [str(tmp_path / name) for name in ("a", "b", "c", "hard")]
    results = [generate_synthvis(r, variant="quick", progress=False, **small) for r in roots[:2]]
    generate_synthvis(roots[2], variant="quick", seed=1, progress=False, **small)
    generate_synthvis(roots[3], progress=False, **dict(small, max_frames=32))
    for split in ("train", "valid"):
        assert filecmp.cmp(f"{roots[0]}/{split}.json", f"{roots[1]}/{split}.json", shallow=False)
        assert not filecmp.cmp(f"{roots[0]}/{split}.json", f"{roots[2]}/{split}.json")
        assert not filecmp.cmp(f"{roots[0]}/{split}.json", f"{roots[3]}/{split}.json")
    frames = sorted(os.listdir(os.path.join(results[0]["train_image_root"], "vid0000")))
    for frame in frames:
        a, b = (os.path.join(r, "train", "JPEGImages", "vid0000", frame) for r in roots[:2])
        assert filecmp.cmp(a, b, shallow=False)
    assert results[0]["params"]["variant"] == "quick" and results[0]["params"]["max_frames"] == 32
    assert _load(roots[3], "train")["categories"][0]["name"] == SYNTHVIS_CATEGORIES[0]["name"]
    # the variant is part of the stamp: the same folder with the other variant is rewritten
    assert not generate_synthvis(roots[3], variant="quick", progress=False, **small)["skipped"]
    assert _load(roots[3], "train")["categories"][0]["name"] == "red_disc"
    with pytest.raises(ValueError, match="unknown variant 'easy'"):
        generate_synthvis(roots[0], variant="easy")


def test_quick_cli_and_registration(tmp_path):
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path))
    cmd = [sys.executable, os.path.join(REPO, "datasets", "generate_synthvis.py"), "--quick",
           "--num-train", "1", "--num-val", "1", "--max-frames", "20", "--quiet"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    root = str(tmp_path / "synthvis_quick")
    assert "wrote" in out and synthvis_exists(root)
    assert _load(root, "valid")["videos"][0]["height"] == 96
    assert not os.path.exists(tmp_path / "synthvis")
    code = (
        "from detectron2.data import DatasetCatalog, MetadataCatalog; import vis_core.data; "
        "d = DatasetCatalog.get('synthvis_quick_val'); "
        "print(len(d), MetadataCatalog.get('synthvis_quick_val').thing_classes)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    names = [c["name"] for c in SYNTHVIS_QUICK_CATEGORIES]
    assert out.strip().splitlines()[-1] == f"1 {names}"
