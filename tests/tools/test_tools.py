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
    results = json.load(open(tmp_path / "out" / "demo_results.json"))
    assert all(len(r["segmentations"]) == 5 for r in results)


def test_benchmark_fps_prints_the_table(capsys):
    _tool("benchmark_fps").main(["--config-file", VISOLO_CFG, "--frames", "3", "--height", "48",
                                 "--width", "80", "--videos", "1", *SMALL])  # fmt: skip
    out = capsys.readouterr().out
    assert "backbone" in out.lower() and "fps" in out.lower()


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
