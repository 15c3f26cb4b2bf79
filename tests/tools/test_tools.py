"""The method-agnostic tools on a real project config: demo, FPS benchmark, strict weight loading."""

import importlib.util
import json
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from vis_core.engine import load_inference_weights
from vis_core.engine.project import find_project_root, setup_project_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VISOLO_CFG = os.path.join(REPO, "projects/VISOLO/configs/synthvis/VISOLO_R18.yaml")
M2F_CFG = os.path.join(REPO, "projects/Mask2Former_VIS/configs/synthvis/Mask2Former_VIS_R18.yaml")
SMALL = ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "112"]


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_frames(folder, n=5, h=48, w=80):
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    for t in range(n):
        frame = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(os.path.join(folder, f"{t:05d}.jpg"), frame)


def test_project_config_is_found_from_any_config():
    assert find_project_root(VISOLO_CFG).endswith(os.path.join("projects", "VISOLO"))
    cfg = setup_project_cfg(M2F_CFG, ["SEED", "3"])
    assert cfg.SEED == 3 and cfg.is_frozen()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_project_root("nope.yaml")


def test_demo_writes_video_sheet_and_results(tmp_path):
    _write_frames(str(tmp_path / "frames"))
    out = str(tmp_path / "out" / "demo.mp4")
    _tool("demo").main(["--config-file", VISOLO_CFG, "--input", str(tmp_path / "frames"),
                        "--output", out, *SMALL])  # fmt: skip
    assert os.path.getsize(out) > 0
    sheet = cv2.imread(str(tmp_path / "out" / "demo_sheet.png"))
    assert sheet is not None and sheet.ndim == 3
    # Every tile (4 per row, 320 px wide) carries its frame number, white on a black box.
    for left in (0, 320, 640, 960):
        corner = sheet[:12, left + 2 : left + 40]
        assert (corner == 0).all(axis=2).any() and (corner > 200).all(axis=2).any(), left
    results = json.load(open(tmp_path / "out" / "demo_results.json"))
    assert all(len(r["segmentations"]) == 5 for r in results)


def test_benchmark_fps_prints_the_table(capsys):
    _tool("benchmark_fps").main(["--config-file", VISOLO_CFG, "--frames", "3", "--height", "48",
                                 "--width", "80", "--videos", "1", *SMALL])  # fmt: skip
    out = capsys.readouterr().out
    assert "backbone" in out.lower() and "fps" in out.lower()


def test_benchmark_fps_runs_a_clip_level_backbone(capsys):
    """TeViT's MsgShifT backbone reads each call as one clip: the backbone-alone ceilings need the
    frames per clip (it raised before)."""
    cfg = os.path.join(REPO, "projects/TeViT/configs/youtubevis_2019/TeViT_MsgShifT.yaml")
    _tool("benchmark_fps").main(["--config-file", cfg, "--frames", "3", "--height", "48",
                                 "--width", "80", "--videos", "1", "MODEL.WEIGHTS", "", *SMALL])  # fmt: skip
    lines = capsys.readouterr().out.lower().splitlines()
    rows = [line for line in lines if "backbone" in line]
    assert rows and all(any(c.isdigit() for c in row) for row in rows), lines


def test_weights_of_another_architecture_are_refused(tmp_path):
    m2f = build_model(setup_project_cfg(M2F_CFG, ["MODEL.DEVICE", "cpu"]))
    path = str(tmp_path / "m2f.pth")
    torch.save({"model": m2f.state_dict()}, path)
    visolo = build_model(setup_project_cfg(VISOLO_CFG, ["MODEL.DEVICE", "cpu"]))
    with pytest.raises(ValueError, match="do not fit this"):
        load_inference_weights(visolo, path)
    with pytest.raises(ValueError, match="MODEL.WEIGHTS"):
        load_inference_weights(visolo, "")
    # Its own weights load.
    own = str(tmp_path / "visolo.pth")
    torch.save({"model": visolo.state_dict()}, own)
    load_inference_weights(visolo, own)


def _tiny_set(tmp_path, name):
    """A registered-from-the-config 2-class set whose category ids are 5 and 9 (not 1, 2)."""
    from tests.conftest import write_tiny_ytvis

    json_path, image_root, _ = write_tiny_ytvis(str(tmp_path / name), num_videos=1)
    data = json.load(open(json_path))
    data["categories"] = [dict(c, id=5 if c["id"] == 1 else 9) for c in data["categories"]]
    for a in data["annotations"]:
        a["category_id"] = 5 if a["category_id"] == 1 else 9
    json.dump(data, open(json_path, "w"))
    return ["DATASETS.YTVIS_JSON", str([[name, json_path, image_root]]),
            "DATASETS.TEST", f"('{name}',)", "DATASETS.TRAIN", "()"]  # fmt: skip


def test_demo_labels_from_the_configs_data_set_and_fps_of_the_input(tmp_path):
    frames = str(tmp_path / "frames")
    _write_frames(frames, n=4)
    video = str(tmp_path / "input.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 7.0, (80, 48))
    for f in sorted(os.listdir(frames)):
        writer.write(cv2.imread(os.path.join(frames, f)))
    writer.release()
    data = _tiny_set(tmp_path, "demo_tiny_5_9")
    out = str(tmp_path / "demo.mp4")
    opts = SMALL + data + ["MODEL.VISOLO.NUM_CLASSES", "2"]
    _tool("demo").main(["--config-file", VISOLO_CFG, "--video-input", video, "--output", out,
                        "--confidence-threshold", "0", "--opts", *opts])  # fmt: skip
    capture = cv2.VideoCapture(out)
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(7.0)
    capture.release()
    results = json.load(open(tmp_path / "demo_results.json"))
    assert results and {r["category_id"] for r in results} <= {5, 9}  # the data set's ids

    demo = _tool("demo")
    wrong = SMALL + data + ["MODEL.VISOLO.NUM_CLASSES", "3"]
    with pytest.raises(ValueError, match=r"MODEL.VISOLO.NUM_CLASSES = 3, but data set "
                       r"'demo_tiny_5_9' has 2 classes.*drawing the demo's labels"):  # fmt: skip
        demo.main(["--config-file", VISOLO_CFG, "--input", frames, "--output", out, *wrong])
    none = SMALL + ["DATASETS.TEST", "()", "DATASETS.TRAIN", "()"]
    with pytest.raises(ValueError, match=r"none of DATASETS.TEST \+ DATASETS.TRAIN = \[\] has "
                       r"thing_classes.*DATASETS.YTVIS_JSON"):  # fmt: skip
        demo.main(["--config-file", VISOLO_CFG, "--input", frames, "--output", out, *none])
