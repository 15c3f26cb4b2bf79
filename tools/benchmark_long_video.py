#!/usr/bin/env python
"""Peak host memory of ``--eval-only`` and of ``tools/demo.py`` on a long video, by video length.

    python tools/benchmark_long_video.py --config-file projects/VISOLO/configs/synthvis/VISOLO_R18.yaml \
        --frames 100,1000 --size 720x1280 [--modes eval,demo] [--workdir /tmp/longvideo] [opts]

Protocol: for each length, a video of that many JPEG frames of the given size (shapes moving over a
still background; written once to --workdir and reused) is registered as a one-video test set. The
model of the config (its MODEL.WEIGHTS, or random weights saved to a file when it has none) then runs
in a fresh process per (mode, length), so one run's peak cannot hide another's:

- ``eval``: the project's ``--eval-only`` path (``train_or_evaluate``: test loader, inference,
  ``YTVISEvaluator`` writing results.json);
- ``demo``: ``tools/demo.py --input <frames>`` (inference, drawing every frame into an mp4, the
  contact sheet and the results file).

Reported per run: the peak resident memory of the process (``VmHWM``), the wall time and the number
of tracks; then, per mode, the ratio of the longest to the shortest video's peak.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from vis_core.utils.benchmark import peak_rss_mb, print_result, run_fresh

__all__ = ["main", "write_video"]


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument(
        "--frames", type=lambda s: [int(n) for n in s.split(",")], default=[100, 1000]
    )
    parser.add_argument("--size", default="720x1280", help="frame size HxW")
    parser.add_argument("--modes", default="eval,demo", help="eval, demo or both")
    parser.add_argument("--workdir", default="output/benchmark_long_video")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--run", nargs=2, metavar=("MODE", "LENGTH"), help=argparse.SUPPRESS)
    parser.add_argument("--weights", default="", help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    return parser


def write_video(root: str, length: int, height: int, width: int, num_classes: int) -> str:
    """A YTVIS-format test set of one video (no annotations, ``num_classes`` categories, as many as
    the model has) under ``root``; returns the JSON path.

    Three discs move across a still textured background, so that models see objects and edges."""
    json_path = os.path.join(root, f"video_{num_classes}_classes.json")
    if os.path.isfile(json_path):
        return json_path
    frames_dir = os.path.join(root, "JPEGImages", "long")
    names = [f"long/{t:05d}.jpg" for t in range(length)]
    if not all(os.path.isfile(os.path.join(root, "JPEGImages", n)) for n in names):
        _write_frames(frames_dir, length, height, width)
    video = {"id": 1, "width": width, "height": height, "length": length, "file_names": names}
    categories = [{"id": i, "name": f"class{i}"} for i in range(1, num_classes + 1)]
    with open(json_path + ".tmp", "w") as f:
        json.dump({"videos": [video], "categories": categories, "annotations": []}, f)
    os.replace(json_path + ".tmp", json_path)  # complete or absent, never half-written
    return json_path


def _write_frames(frames_dir: str, length: int, height: int, width: int) -> None:
    import cv2

    os.makedirs(frames_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    background = rng.integers(40, 90, size=(height, width, 3), dtype=np.uint8)
    for t in range(length):
        frame = background.copy()
        for k, color in enumerate(((220, 60, 60), (60, 200, 60), (60, 90, 220))):
            x = int((0.1 + 0.8 * ((t * (k + 1) / 97.0) % 1.0)) * width)
            y = int((0.25 + 0.25 * k) * height)
            cv2.circle(frame, (x, y), height // 10, color, -1)
        cv2.imwrite(os.path.join(frames_dir, f"{t:05d}.jpg"), frame)


def _run(args):
    """One (mode, length) in this process; prints its result."""
    import torch

    from vis_core.config import get_num_classes
    from vis_core.data import register_ytvis_instances
    from vis_core.engine.project import setup_project_cfg

    torch.set_num_threads(args.threads)
    mode, length = args.run[0], int(args.run[1])
    h, w = (int(v) for v in args.size.split("x"))
    root = os.path.join(args.workdir, f"video_{length}_{h}x{w}")
    num_classes = get_num_classes(setup_project_cfg(args.config_file, list(args.opts)))[1]
    json_path = write_video(root, length, h, w, num_classes)
    name = f"long_video_{length}"
    register_ytvis_instances(name, {}, json_path, os.path.join(root, "JPEGImages"))
    out_dir = os.path.join(args.workdir, f"{mode}_{length}")
    opts = list(args.opts) + ["MODEL.WEIGHTS", args.weights, "DATASETS.TEST", f"('{name}',)"]
    start = time.perf_counter()
    if mode == "eval":
        from vis_core.engine.launcher import train_or_evaluate

        cfg = setup_project_cfg(args.config_file, opts + ["OUTPUT_DIR", out_dir])
        eval_args = argparse.Namespace(eval_only=True, resume=False, config_file=args.config_file)
        train_or_evaluate(cfg, eval_args)
        with open(os.path.join(out_dir, "inference", name, "results.json")) as f:
            tracks = len(json.load(f))
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import demo

        output = os.path.join(out_dir, "long.mp4")
        demo.main(["--config-file", args.config_file, "--input", os.path.join(root, "JPEGImages",
                   "long"), "--output", output] + opts)  # fmt: skip
        with open(os.path.join(out_dir, "long_results.json")) as f:
            tracks = len(json.load(f))
    print_result(
        {"mode": mode, "frames": length, "size": [h, w], "peak_mb": peak_rss_mb(),
         "seconds": time.perf_counter() - start, "tracks": tracks}  # fmt: skip
    )


def _random_weights(args) -> str:
    """MODEL.WEIGHTS of the config, or a file of random weights for it."""
    import torch
    from detectron2.modeling import build_model

    from vis_core.engine.project import setup_project_cfg

    cfg = setup_project_cfg(args.config_file, list(args.opts))
    if cfg.MODEL.WEIGHTS:
        return cfg.MODEL.WEIGHTS
    os.makedirs(args.workdir, exist_ok=True)
    path = os.path.join(args.workdir, "random_weights.pth")
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict()}, path)
    return path


def main(argv=None):
    """Measures (printing a table) and returns the rows: one dict per (mode, frames) with
    ``peak_mb``, ``seconds``, ``tracks``."""
    args = get_parser().parse_args(argv)
    if args.run:
        return _run(args)
    weights = _random_weights(args)
    rows = []
    for mode in args.modes.split(","):
        for length in args.frames:
            command = [
                sys.executable,
                os.path.abspath(__file__),
                "--config-file",
                args.config_file,
                "--size",
                args.size,
                "--workdir",
                args.workdir,
                "--threads",
                str(args.threads),
                "--weights",
                weights,
                "--run",
                mode,
                str(length),
            ]
            rows.append(run_fresh(command + list(args.opts)))  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    from tabulate import tabulate

    print(tabulate(rows, headers="keys", floatfmt=".1f"))
    for mode in args.modes.split(","):
        peaks = [r["peak_mb"] for r in rows if r["mode"] == mode]
        print(f"{mode}: peak at {max(args.frames)} frames / at {min(args.frames)} frames = "
              f"{peaks[-1] / peaks[0]:.2f}x")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
