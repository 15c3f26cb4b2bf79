import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from tests.conftest import write_tiny_ytvis
from vis_core.data import YTVISFormatError, load_ytvis_json, register_ytvis_instances
from vis_core.data.builtin import register_all_builtin


def _decode(seg, h, w):
    if isinstance(seg, dict):
        return mask_util.decode(seg)
    return mask_util.decode(mask_util.merge(mask_util.frPyObjects(seg, h, w)))


def test_round_trip_masks_and_ids(tiny_ytvis):
    json_path, image_root, masks = tiny_ytvis
    dicts = load_ytvis_json(json_path, image_root)
    assert [d["video_id"] for d in dicts] == [1, 2]
    for d in dicts:
        assert d["length"] == len(d["file_names"]) == len(d["annotations"]) == 6
        assert all(os.path.isfile(f) for f in d["file_names"])
        for t, frame in enumerate(d["annotations"]):
            ids = {a["id"] for a in frame}
            # object 2 of each video is null in frames 2 and 3, so it is not listed there
            assert len(ids) == (1 if t in (2, 3) else 2)
            for a in frame:
                expected = masks[(d["video_id"], a["id"])][t]
                np.testing.assert_array_equal(_decode(a["segmentation"], 48, 64), expected)
                assert a["category_id"] in (0, 1)  # contiguous
                x, y, w, h = a["bbox"]
                ys, xs = np.nonzero(expected)
                assert (x, y, w, h) == (
                    xs.min(),
                    ys.min(),
                    xs.max() - xs.min() + 1,
                    ys.max() - ys.min() + 1,
                )


def test_uncompressed_rle_and_polygons(tmp_path):
    json_path, image_root, masks = write_tiny_ytvis(str(tmp_path), num_videos=1)
    data = json.load(open(json_path))
    ann = data["annotations"][0]
    m = masks[(1, 1)][0]
    # frame 0 as uncompressed RLE (list counts), frame 1 as a polygon of the same square
    counts, last, run = [], 0, 0
    for v in m.flatten(order="F"):
        if v != last:
            counts.append(run)
            run, last = 0, v
        run += 1
    counts.append(run)
    ann["segmentations"][0] = {"size": [48, 64], "counts": counts}
    ys, xs = np.nonzero(masks[(1, 1)][1])
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    ann["segmentations"][1] = [
        [float(x0), float(y0), float(x1), float(y0), float(x1), float(y1), float(x0), float(y1)]
    ]
    json.dump(data, open(json_path, "w"))
    (d,) = load_ytvis_json(json_path, image_root)
    a0 = next(a for a in d["annotations"][0] if a["id"] == 1)
    np.testing.assert_array_equal(_decode(a0["segmentation"], 48, 64), m)
    a1 = next(a for a in d["annotations"][1] if a["id"] == 1)
    poly_mask = _decode(a1["segmentation"], 48, 64)
    # rasterised polygon covers the square (pycocotools includes the closing edge)
    assert (poly_mask[masks[(1, 1)][1] > 0] == 1).all()


def test_test_json_without_annotations(tmp_path):
    json_path, image_root, _ = write_tiny_ytvis(str(tmp_path), with_annotations=False)
    dicts = load_ytvis_json(json_path, image_root)
    assert len(dicts) == 2 and all("annotations" not in d for d in dicts)


def _corrupt(tmp_path, edit):
    json_path, image_root, _ = write_tiny_ytvis(str(tmp_path))
    data = json.load(open(json_path))
    edit(data)
    json.dump(data, open(json_path, "w"))
    return json_path, image_root


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda d: d["videos"].append(dict(d["videos"][0])), r"duplicate video id 1"),
        (
            lambda d: d["annotations"][1].update(category_id=7),
            r"annotation 2 \(video 1\): category_id 7 is not in 'categories'",
        ),
        (
            lambda d: d["annotations"][0]["segmentations"].pop(),
            r"annotation 1 \(video 1\): 5 segmentations for a video of length 6",
        ),
        (
            lambda d: d["annotations"][2]["segmentations"][0].update(size=[10, 10]),
            r"annotation 3 \(video 2\), frame 0: RLE size \[10, 10\] differs",
        ),
        (
            lambda d: d["annotations"][0].pop("segmentations"),
            r"annotation 1: missing key\(s\) \['segmentations'\]",
        ),
        (lambda d: d["videos"][1].pop("file_names"), r"video 2: missing key\(s\) \['file_names'\]"),
        (lambda d: d["annotations"][0].update(video_id=9), r"annotation 1: video_id 9 is not in"),
        (lambda d: d.pop("categories"), r"missing key\(s\) \['categories'\]"),
        (lambda d: d["videos"][1].update(file_names=[], length=0), r"video 2 has no frames"),
    ],
)
def test_bad_input_names_file_and_record(tmp_path, edit, pattern):
    json_path, image_root = _corrupt(tmp_path, edit)
    with pytest.raises(YTVISFormatError, match=pattern) as info:
        load_ytvis_json(json_path, image_root)
    assert json_path in str(info.value)


def test_malformed_json_and_missing_files(tmp_path):
    json_path, image_root, _ = write_tiny_ytvis(str(tmp_path))
    os.remove(os.path.join(image_root, "video2", "00003.png"))
    with pytest.raises(
        FileNotFoundError, match=r"video 2: 1 of 6 frame files do not exist.*00003.png"
    ):
        load_ytvis_json(json_path, image_root)
    with open(json_path, "w") as f:
        f.write('{"videos": [')
    with pytest.raises(YTVISFormatError, match="not valid JSON") as info:
        load_ytvis_json(json_path, image_root)
    assert json_path in str(info.value)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_ytvis_json(str(tmp_path / "nope.json"), image_root)


def test_register_custom_set(tiny_ytvis):
    json_path, image_root, _ = tiny_ytvis
    name = "test_custom_tiny"
    DatasetCatalog.remove(name) if name in DatasetCatalog.list() else None
    MetadataCatalog.remove(name) if name in MetadataCatalog.list() else None
    register_ytvis_instances(name, {}, json_path, image_root)
    meta = MetadataCatalog.get(name)
    assert meta.evaluator_type == "ytvis" and meta.json_file == json_path
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == 2
    assert meta.thing_classes == ["red", "green"]
    assert meta.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1}
    assert len(meta.thing_colors) == 2


def test_builtin_registration_idempotent_and_lazy(tmp_path, monkeypatch):
    import importlib

    import vis_core.data

    register_all_builtin()
    importlib.reload(vis_core.data)  # importing again must not fail
    names = DatasetCatalog.list()
    for n in [
        "ytvis_2019_train",
        "ytvis_2019_val",
        "ytvis_2019_test",
        "ytvis_2021_train",
        "ytvis_2021_val",
        "ovis_train",
        "ovis_val",
        "ovis_test",
        "synthvis_train",
        "synthvis_val",
    ]:
        assert n in names
    assert len(MetadataCatalog.get("ytvis_2019_train").thing_classes) == 40
    assert len(MetadataCatalog.get("ytvis_2021_val").thing_classes) == 40
    assert len(MetadataCatalog.get("ovis_train").thing_classes) == 25
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    with pytest.raises(
        FileNotFoundError, match=r"(?s)ytvis_2019_train.*ytvis_2019/train.json.*youtube-vos"
    ):
        DatasetCatalog.get("ytvis_2019_train")
    with pytest.raises(FileNotFoundError, match=r"(?s)annotations_train.json"):
        DatasetCatalog.get("ovis_train")


def test_builtin_ovis_accepts_common_file_names(tmp_path, monkeypatch):
    json_path, image_root, _ = write_tiny_ytvis(str(tmp_path / "src"))
    ovis = tmp_path / "ovis"
    (ovis / "annotations").mkdir(parents=True)
    data = json.load(open(json_path))
    data["categories"] = [{"id": 1, "name": "Person"}, {"id": 2, "name": "Bird"}]
    json.dump(data, open(ovis / "annotations" / "annotations_valid.json", "w"))
    os.symlink(image_root, ovis / "valid")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    dicts = DatasetCatalog.get("ovis_val")
    assert len(dicts) == 2
    assert MetadataCatalog.get("ovis_val").json_file.endswith("annotations/annotations_valid.json")


def test_held_out_split_is_registered(tmp_path, monkeypatch):
    from vis_core.data.split import main as split_main

    root = tmp_path / "ytvis_2021"
    json_path, image_root, _ = write_tiny_ytvis(str(root / "train"), num_videos=5)
    os.rename(json_path, root / "train.json")
    data = json.load(open(root / "train.json"))
    data["categories"] = [{"id": 1, "name": "airplane"}, {"id": 2, "name": "bear"}]
    json.dump(data, open(root / "train.json", "w"))
    split_main(["--json", str(root / "train.json"), "--fraction", "0.4", "--seed", "0"])
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    register_all_builtin()
    train = DatasetCatalog.get("ytvis_2021_sub_train")
    val = DatasetCatalog.get("ytvis_2021_sub_val")
    assert len(train) + len(val) == 5 and len(val) == 2
    assert not {d["video_id"] for d in train} & {d["video_id"] for d in val}
    assert MetadataCatalog.get("ytvis_2021_sub_val").json_file.endswith("train_sub_val.json")
    assert all(a for d in val for a in d["annotations"])


@pytest.mark.parametrize("compiled", [True, False], ids=["vis_core._rle", "pycocotools"])
def test_compressed_rle_is_checked_at_load(tmp_path, monkeypatch, compiled):
    import vis_core.data.ytvis as ytvis

    if not compiled:
        monkeypatch.setattr(ytvis, "rle_ops", None)
    elif ytvis.rle_ops is None:
        pytest.skip("vis_core._rle is not built")

    def edit(d):
        seg = d["annotations"][2]["segmentations"][4]  # annotation 3, video 2, frame 4
        seg["counts"] += "1"  # one run more: the runs exceed height x width

    json_path, image_root = _corrupt(tmp_path, edit)
    what = "its runs cover .* pixels, but its size 48x64 has 3072" if compiled else "Invalid RLE"
    with pytest.raises(
        YTVISFormatError,
        match=rf"annotation 3 \(video 2\), frame 4: invalid compressed RLE: {what}.*re-encode",
    ) as info:
        load_ytvis_json(json_path, image_root)
    assert json_path in str(info.value)

    def truncate(d):
        seg = d["annotations"][0]["segmentations"][1]
        seg["counts"] = seg["counts"][:-1]

    json_path, image_root = _corrupt(tmp_path / "truncated", truncate)
    with pytest.raises(YTVISFormatError, match=r"annotation 1 \(video 1\), frame 1: invalid"):
        load_ytvis_json(json_path, image_root)
