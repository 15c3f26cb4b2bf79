#!/usr/bin/env python
"""Benchmark of vis_core.evaluation on synthetic cases shaped like YouTube-VIS 2021 valid and OVIS valid.

    python tools/benchmark_eval.py --case ytvis2021 [--out-dir /tmp] [--seed 0] [--repeat 3]
        [--workers N]
    python tools/benchmark_eval.py --case ovis --compare-cmd "python my_official_run.py {gt} {pred}"

Generates (once, cached in OUT_DIR/vis_bench_<case>_<seed>) a ground-truth JSON and a results.json:
  ytvis2021: 421 videos of 10-36 frames at 360x640 (a tenth at 720x1280), 1-5 objects per video in
             40 categories, 100 predicted tracks per video (42,100 in all);
  ovis:      140 videos of 20-100 frames at 360x640 (a fifth at 720x1280), 2-10 objects in 25
             categories, 100 predicted tracks per video.
Objects are moving ellipses (one vertical run per column, written straight as RLE); predictions
are noisy copies of the objects (some with the wrong class, shifted, or cut in time) plus random
tracks, present in a random sub-range of frames, with empty frames as null.

Each timed run is the command line itself, ``python -m vis_core.evaluation --gt GT --pred RES
--json-out M`` in a fresh process (interpreter start, imports, reading both files, validation,
evaluation, printing), repeated ``--repeat`` times: wall time, CPU time (user + system, less
sensitive than wall time to other jobs on the machine; with a forked worker it is the sum over both
processes) and peak resident memory (ru_maxrss: the largest of the processes, not their sum) of
each run are printed, with the minimum, and the load average of the machine before the runs. ``--compare-cmd`` times another evaluator on the same files the
same way (for example a local copy of the official API driven by a small script), and prints the
ratios.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from typing import List

import numpy as np
from pycocotools import mask as mask_util

CASES = {
    "ytvis2021": dict(videos=421, frames=(10, 36), objects=(1, 5), categories=40, big=0.1),
    "ovis": dict(videos=140, frames=(20, 100), objects=(2, 10), categories=25, big=0.2),
}
PREDS_PER_VIDEO = 100


def ellipse_counts(h, w, cx, cy, rx, ry):
    """Uncompressed column-major RLE counts of an ellipse, or None if it misses the frame."""
    x0, x1 = max(0, int(np.ceil(cx - rx))), min(w, int(np.floor(cx + rx)) + 1)
    if x1 <= x0:
        return None
    xs = np.arange(x0, x1)
    half = ry * np.sqrt(np.clip(1 - ((xs - cx) / rx) ** 2, 0, None))
    top = np.clip(np.round(cy - half), 1, h).astype(np.int64)  # >= 1: no zero-length gaps
    bot = np.clip(np.round(cy + half), 1, h).astype(np.int64)
    keep = bot > top
    if not keep.any():
        return None
    xs, top, bot = xs[keep], top[keep], bot[keep]
    starts, ends = xs * h + top, xs * h + bot
    counts = np.empty(2 * len(xs) + 1, dtype=np.int64)
    counts[0] = starts[0]
    counts[1:-1:2] = ends - starts
    counts[2:-1:2] = starts[1:] - ends[:-1]
    counts[-1] = h * w - ends[-1]
    return counts.tolist()


def track_rles(rng, h, w, length, first, last, base=None, jitter=0.0):
    """One track: ellipse parameters drift over frames; RLE (str counts) or None per frame."""
    if base is None:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(5, w / 5), rng.uniform(5, h / 4)
        vx, vy = rng.normal(0, 3), rng.normal(0, 2)
    else:
        cx, cy, rx, ry, vx, vy = base
    params = (cx, cy, rx, ry, vx, vy)
    objs, idx = [], []
    for f in range(first, last):
        p = [cx + vx * f, cy + vy * f, rx, ry]
        if jitter:
            p = [v + rng.normal(0, jitter * max(rx, ry) * 0.3) for v in p[:2]] + [
                max(2.0, v * (1 + rng.normal(0, jitter))) for v in p[2:]
            ]
        counts = ellipse_counts(h, w, *p)
        if counts is not None:
            objs.append({"size": [h, w], "counts": counts})
            idx.append(f)
    segs = [None] * length
    if objs:
        for f, rle in zip(idx, mask_util.frPyObjects(objs, h, w)):
            segs[f] = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
    return segs, params


def generate(case: str, out_dir: str, seed: int):
    cfg = CASES[case]
    rng = np.random.default_rng(seed)
    videos, anns, results = [], [], []
    cats = list(range(1, cfg["categories"] + 1))
    ann_id = 1
    for vid in range(1, cfg["videos"] + 1):
        h, w = (720, 1280) if rng.random() < cfg["big"] else (360, 640)
        length = int(rng.integers(cfg["frames"][0], cfg["frames"][1] + 1))
        videos.append(
            {"id": vid, "width": w, "height": h, "length": length,
             "file_names": [f"{vid:05d}/{f:05d}.jpg" for f in range(length)]}
        )  # fmt: skip
        objects = []
        for _ in range(int(rng.integers(cfg["objects"][0], cfg["objects"][1] + 1))):
            first = int(rng.integers(0, max(1, length // 3)))
            last = int(rng.integers(max(first + 1, 2 * length // 3), length + 1))
            segs, params = track_rles(rng, h, w, length, first, last)
            cat = int(rng.choice(cats))
            areas = [None if s is None else int(mask_util.area(s)) for s in segs]
            bboxes = [None if s is None else mask_util.toBbox(s).tolist() for s in segs]
            anns.append(
                {"id": ann_id, "video_id": vid, "category_id": cat, "iscrowd": 0,
                 "segmentations": segs, "areas": areas, "bboxes": bboxes, "height": h,
                 "width": w, "length": length}
            )  # fmt: skip
            ann_id += 1
            objects.append((cat, params, first, last))
        for p in range(PREDS_PER_VIDEO):
            if p < 4 * len(objects) and rng.random() < 0.8:
                cat, params, first, last = objects[p % len(objects)]
                if rng.random() < 0.3:
                    cat = int(rng.choice(cats))
                first = max(0, first + int(rng.integers(-2, 3)))
                last = min(length, max(first + 1, last + int(rng.integers(-2, 3))))
                segs, _ = track_rles(rng, h, w, length, first, last, params, jitter=0.1)
                score = float(rng.uniform(0.2, 1.0))
            else:
                first = int(rng.integers(0, length))
                last = int(rng.integers(first + 1, length + 1))
                segs, _ = track_rles(rng, h, w, length, first, last)
                cat, score = int(rng.choice(cats)), float(rng.uniform(0.0, 0.5))
            results.append(
                {"video_id": vid, "score": round(score, 4), "category_id": cat,
                 "segmentations": segs}
            )  # fmt: skip
    gt = {
        "info": {"description": f"synthetic {case}-like benchmark case, seed {seed}"},
        "licenses": [],
        "videos": videos,
        "categories": [{"id": c, "name": f"class_{c}", "supercategory": "object"} for c in cats],
        "annotations": anns,
    }
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "gt.json"), "w") as f:
        json.dump(gt, f)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f)


# Runs one command and reports its wall time, CPU time and peak resident memory (a process of its own,
# so that the peak of one run is not mixed with the peak of another).
_MEASURE = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - t
use = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": proc.returncode, "wall_s": wall, "cpu_s": use.ru_utime + use.ru_stime,
                  "peak_rss_mb": use.ru_maxrss / 1024, "stderr_tail": proc.stderr[-2000:]}))
"""


def measure(command: List[str]) -> dict:
    """Wall time, CPU time (user + system) and peak RSS of ``command`` run to its end."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command], check=True, capture_output=True, text=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    if report["rc"] != 0:
        raise RuntimeError(f"{command} failed ({report['rc']}):\n{report['stderr_tail']}")
    return report


def _summary(name: str, runs: List[dict]) -> dict:
    best = {k: min(r[k] for r in runs) for k in ("wall_s", "cpu_s", "peak_rss_mb")}
    spread = {k: [round(r[k], 2) for r in runs] for k in ("wall_s", "cpu_s")}
    print(f"{name}: min wall {best['wall_s']:.2f} s, min CPU {best['cpu_s']:.2f} s, peak RSS "
          f"{best['peak_rss_mb']:.0f} MB over {len(runs)} runs; all wall {spread['wall_s']}, "
          f"all CPU {spread['cpu_s']}")  # fmt: skip
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=sorted(CASES), default="ytvis2021")
    parser.add_argument(
        "--out-dir", default="/tmp", help="cases are cached in OUT_DIR/vis_bench_<case>_<seed>"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (fresh process each)")
    parser.add_argument(
        "--workers", type=int, default=None,
        help="passed to the CLI (processes for areas and IoUs; default: the CLI's, 2 on 2+ CPUs)",
    )  # fmt: skip
    parser.add_argument(
        "--compare-cmd",
        help="another evaluator to time on the same files, e.g. 'python run_official.py {gt} {pred}'"
        " ({gt} and {pred} are replaced by the paths)",
    )
    args = parser.parse_args(argv)
    out_dir = os.path.join(args.out_dir, f"vis_bench_{args.case}_{args.seed}")
    gt_path, res_path = os.path.join(out_dir, "gt.json"), os.path.join(out_dir, "results.json")
    if not (os.path.isfile(gt_path) and os.path.isfile(res_path)):
        t = time.perf_counter()
        generate(args.case, out_dir, args.seed)
        print(f"generated {out_dir} in {time.perf_counter() - t:.1f} s")
    size_mb = os.path.getsize(res_path) / 2**20
    print(f"case {args.case}: results.json {size_mb:.1f} MB, gt.json "
          f"{os.path.getsize(gt_path) / 2**20:.1f} MB")  # fmt: skip
    metrics_path = os.path.join(out_dir, "metrics.json")
    cli = [sys.executable, "-m", "vis_core.evaluation", "--gt", gt_path, "--pred", res_path,
           "--json-out", metrics_path]  # fmt: skip
    if args.workers is not None:
        cli += ["--workers", str(args.workers)]
    if hasattr(os, "getloadavg"):
        print("load average (1, 5, 15 min): %.2f %.2f %.2f" % os.getloadavg())
    print("ours:", " ".join(cli[1:]))
    ours = _summary("ours", [measure(cli) for _ in range(args.repeat)])
    with open(metrics_path) as f:
        metrics = json.load(f)
    metrics.pop("per_category")
    print("metrics (percent):", json.dumps({k: round(v, 3) for k, v in metrics.items()}))
    if args.compare_cmd:
        other = shlex.split(args.compare_cmd.format(gt=gt_path, pred=res_path))
        print("compared:", " ".join(other))
        theirs = _summary("compared", [measure(other) for _ in range(args.repeat)])
        print(f"ratio (compared / ours): wall {theirs['wall_s'] / ours['wall_s']:.1f}x, "
              f"CPU {theirs['cpu_s'] / ours['cpu_s']:.1f}x, "
              f"peak RSS {theirs['peak_rss_mb'] / ours['peak_rss_mb']:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
