#!/usr/bin/env python
"""Peak host memory of VISOLO's streaming inference (``init_state`` / ``step``) by video length.

    python projects/VISOLO/benchmark_memory.py \
        --config-file projects/VISOLO/configs/synthvis/VISOLO_R18.yaml \
        --frames 100,1000 [--video DIR] [--threads 1] [MODEL.WEIGHTS model_final.pth] [opts]

Protocol: each length runs in a fresh process, so one run's peak cannot hide another's. The process
builds the model (random weights unless MODEL.WEIGHTS is given), then streams a video of the given
length frame by frame: each frame is read from disk, turned into the model input by the test-mode
mapper (the evaluator's resize), passed to ``model.step`` and dropped; ``model.finalize`` gives the
common video output at the end. The video is the frames of ``--video`` (default: the first
synthvis_val video) played forwards and backwards until the length is reached, so every length has
the same frame size and content statistics. Reported per length: resident memory after the model is
built and one frame has been stepped (``base``: Python, torch, the model), the peak resident memory
of the process (``VmHWM``), their difference (what streaming itself holds: memory queue, lost
bank, tracks with their RLE masks, the output), the tracks of the output and the time per frame of
the first and last 50 frames (a memory that grew would make later frames slower).
"""

import argparse
import glob
import os
import sys
import time

from vis_core.utils.benchmark import peak_rss_mb, print_result, rss_mb, run_fresh

__all__ = ["main"]

DEFAULT_VIDEO_GLOB = "datasets/synthvis/valid/JPEGImages/*"


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument(
        "--frames",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[100, 1000],
        help="video lengths, comma-separated",
    )
    parser.add_argument(
        "--video", default="", help="folder of frames (default: the first synthvis_val video)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--run-length", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    return parser


def _ping_pong(n, length):
    """Frame indices 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ... of a length-``length`` video."""
    if n == 1:
        return [0] * length
    period = 2 * (n - 1)
    return [k % period if k % period < n else period - k % period for k in range(length)]


def run_length(args):
    """Stream one video of ``args.run_length`` frames in this process; prints its result."""
    import cv2
    import torch
    from detectron2.modeling import build_model

    from vis_core.data import YTVISDatasetMapper
    from vis_core.engine import load_inference_weights
    from vis_core.engine.project import setup_project_cfg

    torch.set_num_threads(args.threads)
    cfg = setup_project_cfg(args.config_file, list(args.opts) + ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        load_inference_weights(model, cfg.MODEL.WEIGHTS)
    mapper = YTVISDatasetMapper(cfg, is_train=False)
    files = sorted(glob.glob(os.path.join(args.video, "*.jpg")))
    if not files:
        raise FileNotFoundError(f"--video {args.video!r} holds no .jpg frames")
    order = _ping_pong(len(files), args.run_length)

    def model_input(index):
        frame = cv2.imread(files[order[index]])  # (H, W, 3) BGR, as the test loader reads it
        return mapper.video_input([frame], video_id=0), frame.shape[:2]

    first, (height, width) = model_input(0)
    state = model.init_state(height, width)
    times = []
    with torch.no_grad():
        start = time.perf_counter()
        model.step(state, first["image"][0])
        times.append(time.perf_counter() - start)
        base = rss_mb()
        for k in range(1, args.run_length):
            video, _ = model_input(k)
            start = time.perf_counter()
            model.step(state, video["image"][0])
            times.append(time.perf_counter() - start)
        output = model.finalize(state)
    peak = peak_rss_mb()  # since the process started
    rle_bytes = sum(
        len(rle["counts"]) for track in output["pred_mask_rles"] for rle in track if rle is not None
    )
    window = min(50, len(times))
    print_result(
        {
            "frames": args.run_length,
            "size": [height, width],
            "model_input": list(first["image"][0].shape[1:]),
            "base_mb": base,
            "peak_mb": peak,
            "streaming_mb": peak - base,
            "tracks": len(output["pred_scores"]),
            "memory_entries": len(state.memory),
            "lost_bank": len(state.lost),
            "rle_kb": rle_bytes / 1024,
            "ms_first": 1000 * sum(times[:window]) / window,
            "ms_last": 1000 * sum(times[-window:]) / window,
        }
    )


def main(argv=None):
    args = get_parser().parse_args(argv)
    if not args.video:
        videos = sorted(glob.glob(DEFAULT_VIDEO_GLOB))
        if not videos:
            raise FileNotFoundError(
                f"no video in {DEFAULT_VIDEO_GLOB}: run python datasets/generate_synthvis.py "
                "or pass --video DIR"
            )
        args.video = videos[0]
    if args.run_length is not None:
        return run_length(args)
    rows = []
    for length in args.frames:
        command = [sys.executable, os.path.abspath(__file__), "--config-file", args.config_file,
                   "--video", args.video, "--threads", str(args.threads),
                   "--run-length", str(length)] + list(args.opts)  # fmt: skip
        rows.append(run_fresh(command))
    from tabulate import tabulate

    first = rows[0]
    print(
        f"\n{args.config_file}: streaming init_state/step on {args.video} played forwards and "
        f"backwards, frames {first['size'][1]}x{first['size'][0]} (model input "
        f"{first['model_input'][1]}x{first['model_input'][0]}), CPU, {args.threads} thread(s)"
    )
    table = [
        [r["frames"], f"{r['base_mb']:.0f}", f"{r['peak_mb']:.0f}", f"{r['streaming_mb']:.1f}",
         r["tracks"], r["memory_entries"], r["lost_bank"], f"{r['rle_kb']:.0f}",
         f"{r['ms_first']:.1f}", f"{r['ms_last']:.1f}"]
        for r in rows
    ]  # fmt: skip
    headers = ["frames", "base MB", "peak MB", "peak - base MB", "tracks", "memory entries",
               "lost bank", "RLE KB", "ms/frame first 50", "ms/frame last 50"]  # fmt: skip
    print(tabulate(table, headers=headers, tablefmt="pipe"))
    for r in rows[1:]:
        print(
            f"peak at {r['frames']} frames / peak at {first['frames']} frames: "
            f"{r['peak_mb'] / first['peak_mb']:.3f}x (target <= 1.5x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
