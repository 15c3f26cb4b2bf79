#!/usr/bin/env python
"""Frames per second of any project's model, by one stated protocol, with the backbone-alone ceiling.

    python tools/benchmark_fps.py --config-file projects/VISOLO/configs/synthvis/VISOLO_R18.yaml \
        [--device cuda] [--amp] [--frames 36] [--height 360] [--width 640] [--videos 3] [opts]

Protocol: random-content videos of --frames frames at --height x --width (the original size; the model's
test-time resize applies); one warm-up video is run first and excluded. For each timed video:
  - model FPS   = frames / time of ``model([video])`` (everything the model does: backbone, heads,
                  association/tracking, upsampling to the original size and, for models that produce
                  ``pred_mask_rles``, RLE encoding),
  - data FPS    = frames / time to turn decoded frames into the model input (resize, to tensor),
  - encode FPS  = frames / time to encode dense ``pred_masks`` outputs to RLE (0 if the model did it),
  - end-to-end  = frames / (data + model + encode).
The backbone alone runs on the same resized frames, one frame per call ("online") and all frames in one
call ("clip"), as the ceilings. Peak memory: CUDA max allocated on a GPU, peak RSS of the process on the CPU.
Random weights unless MODEL.WEIGHTS is given (speed does not depend on them, except through the number
of tracks an untrained model keeps).
"""

import argparse
import contextlib
import time

import numpy as np
import torch
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger
from tabulate import tabulate

from vis_core.data import YTVISDatasetMapper
from vis_core.engine import load_inference_weights
from vis_core.engine.project import setup_project_cfg
from vis_core.evaluation.results import encode_track_masks
from vis_core.modeling.backbone import frames_per_clip
from vis_core.utils.benchmark import peak_memory_mb


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--amp", action="store_true", help="autocast (bf16 on CUDA and CPU)")
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--videos", type=int, default=3, help="timed videos (after one warm-up)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    return parser


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _backbone_fps(model, images, cfg, device, autocast):
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN, device=device).view(-1, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD, device=device).view(-1, 1, 1)
    div = max(model.backbone.size_divisibility, 32)
    frames = torch.stack([(im.to(device).float() - mean) / std for im in images])
    h, w = frames.shape[-2:]
    frames = torch.nn.functional.pad(frames, (0, -w % div, 0, -h % div))  # (T, 3, H', W')
    results = {}
    for mode, batches in (("online", list(frames.split(1))), ("clip", [frames])):
        # a clip-level backbone (TeViT's MsgShifT) reads each call's frames as one clip
        with autocast(), frames_per_clip(model.backbone, len(batches[0])):
            model.backbone(batches[0])  # warm-up
        _sync(device)
        start = time.perf_counter()
        with autocast():
            for batch in batches:
                with frames_per_clip(model.backbone, len(batch)):
                    model.backbone(batch)
        _sync(device)
        results[mode] = len(frames) / (time.perf_counter() - start)
    return results


def main(argv=None) -> dict:
    """Prints the table; returns the figures (FPS and peak memory in MB) as a dict."""
    args = get_parser().parse_args(argv)
    setup_logger(name="vis_core")
    cfg = setup_project_cfg(args.config_file, list(args.opts) + ["MODEL.DEVICE", args.device])
    model = build_model(cfg)
    model.eval()
    if cfg.MODEL.WEIGHTS:
        load_inference_weights(model, cfg.MODEL.WEIGHTS)
    mapper = YTVISDatasetMapper(cfg, is_train=False)
    device_type = "cuda" if args.device.startswith("cuda") else "cpu"
    autocast = (
        (lambda: torch.autocast(device_type, dtype=torch.bfloat16))
        if args.amp
        else contextlib.nullcontext
    )
    rng = np.random.default_rng(0)
    times = {"data": 0.0, "model": 0.0, "encode": 0.0}
    tracks = []
    for k in range(args.videos + 1):
        frames = [
            rng.integers(0, 255, (args.height, args.width, 3), dtype=np.uint8)
            for _ in range(args.frames)
        ]
        start = time.perf_counter()
        video = mapper.video_input(frames, video_id=k)
        data_time = time.perf_counter() - start
        _sync(args.device)
        start = time.perf_counter()
        with torch.no_grad(), autocast():
            output = model([video])[0]
        _sync(args.device)
        model_time = time.perf_counter() - start
        encode_time = 0.0  # stays 0 (printed "-") for models that encode their masks themselves
        if "pred_masks" in output:
            start = time.perf_counter()
            encode_track_masks(output["pred_masks"])
            encode_time = time.perf_counter() - start
        if k == 0:
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            continue  # warm-up
        times["data"] += data_time
        times["model"] += model_time
        times["encode"] += encode_time
        tracks.append(len(output["pred_scores"]))
    n = args.frames * args.videos
    with torch.no_grad():
        backbone = _backbone_fps(model, video["image"], cfg, args.device, autocast)

    def fps(seconds):
        return f"{n / seconds:.1f}" if seconds > 0 else "-"

    rows = [
        ["model (backbone, heads, tracking, output masks)", fps(times["model"])],
        ["data (resize, to tensor)", fps(times["data"])],
        ["RLE encoding of dense outputs (- if the model encodes)", fps(times["encode"])],
        ["end to end (data + model + encoding)", fps(sum(times.values()))],
        ["backbone alone, one frame per call", f"{backbone['online']:.1f}"],
        ["backbone alone, whole clip per call", f"{backbone['clip']:.1f}"],
    ]
    print(
        f"\n{args.config_file} on {args.device}{' (amp bf16)' if args.amp else ''}: "
        f"{args.videos} videos x {args.frames} frames at {args.width}x{args.height} "
        f"(model input {tuple(video['image'][0].shape[1:])}), {np.mean(tracks):.0f} tracks/video, "
        f"peak memory {peak_memory_mb(args.device):.0f} MB"
    )
    print(tabulate(rows, headers=["stage", "FPS"], tablefmt="pipe"))
    return {
        "model_fps": n / times["model"] if times["model"] > 0 else None,
        "end_to_end_fps": n / sum(times.values()) if sum(times.values()) > 0 else None,
        "backbone_fps_online": backbone["online"],
        "backbone_fps_clip": backbone["clip"],
        "peak_memory_mb": peak_memory_mb(args.device),
    }


if __name__ == "__main__":
    main()
