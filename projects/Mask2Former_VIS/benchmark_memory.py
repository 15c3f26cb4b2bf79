#!/usr/bin/env python
"""Peak memory of Mask2Former-VIS inference: whole video vs windows, by video length.

    python projects/Mask2Former_VIS/benchmark_memory.py \
        --config-file projects/Mask2Former_VIS/configs/synthvis/Mask2Former_VIS_R18.yaml \
        --cases whole:100 window:100 window:1000 window:1000:0 \
        [--window-size 36] [--height 160] [--width 288] [--device cpu] [--threads 1] [opts]

A case is ``MODE:FRAMES[:CACHE_MB]``: MODE ``whole`` (the published whole-video pass,
TEST.VIS.WINDOW_SIZE 0) or ``window`` (TEST.VIS.WINDOW_SIZE = --window-size), FRAMES the video
length, CACHE_MB an optional MODEL.MASK2FORMER_VIS.WINDOW_CACHE_MB (0: no mask logits kept on the
host between the two passes, every window recomputed).

Protocol: every case runs in a fresh process, so that one case's peak does not hide another's. The
process builds the model (random weights unless MODEL.WEIGHTS is given) and a video of random uint8
frames already at the model's input size (--height x --width, also the output size), then resets
the kernel's peak-RSS counter (``/proc/self/clear_refs``), runs ``model([video])`` under
``torch.no_grad()`` and reads the peak (``VmHWM``). Reported: the resident memory before the call
(Python, torch, the model and the input frames), the peak during it, their difference (what the
inference itself needs, output included) and, on CUDA, ``torch.cuda.max_memory_allocated``.
"""

import argparse
import os
import sys
import time

from vis_core.utils.benchmark import peak_rss_mb, print_result, reset_peak_rss, rss_mb, run_fresh

__all__ = ["main"]


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--cases", nargs="+", default=["whole:100", "window:100", "window:1000"])
    parser.add_argument("--window-size", type=int, default=36, help="frames per window")
    parser.add_argument("--height", type=int, default=160, help="frame height (input and output)")
    parser.add_argument("--width", type=int, default=288, help="frame width (input and output)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--run-case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    return parser


def _parse_case(case):
    parts = case.split(":")
    ok = len(parts) in (2, 3) and parts[0] in ("whole", "window")
    if not ok or not all(p.isdigit() for p in parts[1:]):
        raise ValueError(
            f"bad case {case!r}: expected MODE:FRAMES[:CACHE_MB], MODE whole or window, "
            "FRAMES and CACHE_MB whole numbers"
        )
    cache = int(parts[2]) if len(parts) == 3 else None
    return parts[0], int(parts[1]), cache


def run_case(args):
    """Measure one case in this process; prints one JSON line."""
    import torch
    from detectron2.modeling import build_model

    from vis_core.engine import load_inference_weights
    from vis_core.engine.project import setup_project_cfg

    torch.set_num_threads(args.threads)
    mode, frames, cache = _parse_case(args.run_case)
    opts = list(args.opts) + ["MODEL.DEVICE", args.device]
    opts += ["TEST.VIS.WINDOW_SIZE", str(args.window_size if mode == "window" else 0)]
    if cache is not None:
        opts += ["MODEL.MASK2FORMER_VIS.WINDOW_CACHE_MB", str(cache)]
    cfg = setup_project_cfg(args.config_file, opts)
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        load_inference_weights(model, cfg.MODEL.WEIGHTS)
    g = torch.Generator().manual_seed(0)
    images = [
        torch.randint(0, 256, (3, args.height, args.width), generator=g, dtype=torch.uint8)
        for _ in range(frames)
    ]
    video = {"image": images, "height": args.height, "width": args.width, "video_id": 0}
    video["length"] = frames
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = rss_mb()
    reset = reset_peak_rss()
    start = time.perf_counter()
    with torch.no_grad():
        out = model([video])[0]
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    result = {
        "case": args.run_case,
        "frames": frames,
        "window": args.window_size if mode == "window" else 0,
        "cache_mb": cfg.MODEL.MASK2FORMER_VIS.WINDOW_CACHE_MB if mode == "window" else None,
        "input_mb": frames * 3 * args.height * args.width / 2**20,
        "rss_before_mb": before,
        "peak_rss_mb": peak,
        "peak_reset": reset,
        "inference_mb": peak - before,
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "seconds": seconds,
        "tracks": len(out["pred_scores"]),
        "output": "pred_masks" if "pred_masks" in out else "pred_mask_rles",
    }
    print_result(result)


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.run_case:
        run_case(args)
        return 0
    from tabulate import tabulate

    for case in args.cases:
        _parse_case(case)  # fail early on a bad case
    rows = []
    for case in args.cases:
        cmd = [sys.executable, os.path.abspath(__file__), "--config-file", args.config_file]
        cmd += ["--window-size", str(args.window_size), "--height", str(args.height)]
        cmd += ["--width", str(args.width), "--device", args.device, "--threads", str(args.threads)]
        cmd += ["--run-case", case] + list(args.opts)
        try:
            r = run_fresh(cmd)
        except RuntimeError as error:
            sys.stderr.write(f"{error}\n")
            rows.append([case, "failed"] + [""] * 8)
            continue
        rows.append(
            [
                r["case"],
                r["frames"],
                r["window"] or "whole",
                "-" if r["cache_mb"] is None else f"{r['cache_mb']:.0f}",
                f"{r['input_mb']:.1f}",
                f"{r['rss_before_mb']:.0f}",
                f"{r['peak_rss_mb']:.0f}" + ("" if r["peak_reset"] else " (not reset)"),
                f"{r['inference_mb']:.0f}",
                "-" if r["gpu_peak_mb"] is None else f"{r['gpu_peak_mb']:.0f}",
                f"{r['frames'] / r['seconds']:.1f}",
            ]
        )
    print(
        f"\n{args.config_file} on {args.device} ({args.threads} threads), random frames at "
        f"{args.width}x{args.height} (input = output size)"
    )
    headers = ["case", "frames", "window", "cache MB", "input MB", "RSS before MB",
               "peak RSS MB", "inference MB", "GPU peak MB", "FPS"]  # fmt: skip
    print(tabulate(rows, headers=headers, tablefmt="pipe"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
