#!/usr/bin/env python
"""Benchmark of vis_core.evaluation on synthetic cases shaped like YouTube-VIS 2021 valid and OVIS valid.

    python tools/benchmark_eval.py --case ytvis2021 [--out-dir /tmp/vis_bench] [--seed 0]
    python tools/benchmark_eval.py --case ovis

Generates (once, cached in --out-dir) a ground-truth JSON and a results.json:
  ytvis2021: 421 videos of 10-36 frames at 360x640 (a tenth at 720x1280), 1-5 objects per video in
             40 categories, 100 predicted tracks per video (42,100 in all);
  ovis:      140 videos of 20-100 frames at 360x640 (a fifth at 720x1280), 2-10 objects in 25
             categories, 100 predicted tracks per video.
Objects are moving ellipses (one vertical run per column, written straight as RLE); predictions
are noisy copies of the objects (some with the wrong class, shifted, or cut in time) plus random
tracks, present in a random sub-range of frames, with empty frames as null.

The evaluation runs in a fresh subprocess exactly as ``python -m vis_core.evaluation`` does (read
both files, validate, evaluate); its wall time and peak resident memory (ru_maxrss) are printed.
"""

import argparse
import json
import os
import subprocess
import sys
import time

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


_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from vis_core.evaluation.results import load_results
from vis_core.evaluation.ytvis_eval import YTVISGroundTruth, evaluate_results
t1 = time.perf_counter()
gt = YTVISGroundTruth.from_json(sys.argv[1])
results = load_results(sys.argv[2])
t2 = time.perf_counter()
r = evaluate_results(results, gt)
t3 = time.perf_counter()
print(json.dumps({"stats": r.stats, "load_s": t2 - t1, "evaluate_s": t3 - t2, "total_s": t3 - t1,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=sorted(CASES), default="ytvis2021")
    parser.add_argument("--out-dir", default=None, help="where the case is cached")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="timed runs (fresh process each)")
    args = parser.parse_args(argv)
    out_dir = args.out_dir or os.path.join("/tmp", f"vis_bench_{args.case}_{args.seed}")
    gt_path, res_path = os.path.join(out_dir, "gt.json"), os.path.join(out_dir, "results.json")
    if not (os.path.isfile(gt_path) and os.path.isfile(res_path)):
        t = time.perf_counter()
        generate(args.case, out_dir, args.seed)
        print(f"generated {out_dir} in {time.perf_counter() - t:.1f} s")
    size_mb = os.path.getsize(res_path) / 2**20
    print(f"case {args.case}: results.json {size_mb:.1f} MB, gt.json "
          f"{os.path.getsize(gt_path) / 2**20:.1f} MB")  # fmt: skip
    for _ in range(args.repeat):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, gt_path, res_path], check=True, capture_output=True,
            text=True,
        )  # fmt: skip
        report = json.loads(out.stdout.strip().splitlines()[-1])
        stats = {k: round(v * 100, 3) for k, v in report.pop("stats").items()}
        print(json.dumps({k: round(v, 3) for k, v in report.items()}))
        print("metrics (percent):", json.dumps(stats))


if __name__ == "__main__":
    main()
