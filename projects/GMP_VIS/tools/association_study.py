#!/usr/bin/env python
"""GMP-VIS's key claim, isolated from detection: associating instances frame to frame by the QAP
(node affinities + edges) against Hungarian matching on the node affinities alone.

The instances are the ground truth of a YouTube-VIS-format split (masks exact, boxes jittered); each
instance's node embedding is a noisy appearance code, the same per class plus a small code of its
own (look-alike twins of one class are nearly identical), with fresh noise every frame. Each frame's
instances are associated with the active tracks by ``gmp_vis.Tracker``; the resulting tracks are
scored by identity switches (a ground-truth track changing its predicted track between consecutive
frames where it is seen) and by the AP of the tracks (vis_core's evaluator; score = the fraction of
the video a track covers, category = its instances' majority), over all videos and by how many
same-class pairs of the video cross (their boxes overlap in some frame).

    python projects/GMP_VIS/tools/association_study.py --gt datasets/synthvis_quick/valid.json \
        --seeds 1 2 3 --noise 0.1 0.3 0.5
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter, defaultdict
from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util
import torch
from gmp_vis import GraphAssociation, Tracker

from vis_core.evaluation import evaluate_results


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gt", required=True, help="a YouTube-VIS-format JSON with annotations")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="noise seeds")
    p.add_argument("--noise", type=float, nargs="+", default=[0.3], help="embedding noise (norm)")
    p.add_argument("--twin-gap", type=float, default=0.1, help="norm of an instance's own code")
    p.add_argument("--box-jitter", type=float, default=0.05, help="centre noise / box side")
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--match-threshold", type=float, default=0.5)
    p.add_argument("--max-inactive", type=int, default=10, help="frames a track may go unseen")
    p.add_argument("--edge-sigma", type=float, default=0.2)
    p.add_argument(
        "--edge-weights", type=float, nargs="+", default=[1.0], help="QAP edge weights to compare"
    )
    p.add_argument(
        "--size-correction",
        type=int,
        nargs="+",
        default=[1],
        help="QAP with (1) and / or without (0) the unequal-size correction",
    )
    p.add_argument("--json-out", help="write the table here as JSON")
    return p.parse_args(argv)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def crossings(tracks: List[dict]) -> int:
    """Same-class pairs of a video whose boxes overlap in at least one frame."""
    count = 0
    for i, a in enumerate(tracks):
        for b in tracks[i + 1 :]:
            if a["category_id"] != b["category_id"]:
                continue
            for ba, bb in zip(a["bboxes"], b["bboxes"]):
                if ba is None or bb is None:
                    continue
                w = min(ba[0] + ba[2], bb[0] + bb[2]) - max(ba[0], bb[0])
                h = min(ba[1] + ba[3], bb[1] + bb[3]) - max(ba[1], bb[1])
                if w > 0 and h > 0:
                    count += 1
                    break
    return count


def associate_video(video, tracks, association, args, rng, class_codes, noise) -> dict:
    """Frame-to-frame association of one video's ground-truth instances.

    Returns the predicted track id of every (gt track, frame) seen, and the identity switches.
    """
    H, W, T = video["height"], video["width"], video["length"]
    own = {t["id"]: _unit(rng.standard_normal(args.embed_dim)) for t in tracks}
    tracker = Tracker(association, momentum=0.8, max_inactive=args.max_inactive)
    assigned: Dict[int, Dict[int, int]] = defaultdict(dict)  # gt track -> frame -> predicted id
    for f in range(T):
        present = [t for t in tracks if t["bboxes"][f] is not None]
        if not present:
            tracker.step += 1
            continue
        embeds, centres = [], []
        for t in present:
            x, y, w, h = t["bboxes"][f]
            code = class_codes[t["category_id"]] + args.twin_gap * own[t["id"]]
            code = code + noise * _unit(rng.standard_normal(args.embed_dim))
            embeds.append(code)
            cx = x + w / 2 + rng.normal(0, args.box_jitter * max(w, 1))
            cy = y + h / 2 + rng.normal(0, args.box_jitter * max(h, 1))
            centres.append((cx / W, cy / H))
        ids = tracker.update(
            torch.tensor(np.stack(embeds), dtype=torch.float32),
            torch.tensor(centres, dtype=torch.float32),
        )
        for t, k in zip(present, ids):
            assigned[t["id"]][f] = k
    switches = 0
    for frames in assigned.values():
        ks = [frames[f] for f in sorted(frames)]
        switches += sum(a != b for a, b in zip(ks[:-1], ks[1:]))
    return {"assigned": assigned, "switches": switches}


def track_results(video, tracks, assigned) -> List[dict]:
    """The predicted tracks as YouTube-VIS results (masks of the ground truth they hold)."""
    by_gt = {t["id"]: t for t in tracks}
    predicted: Dict[int, Dict[int, int]] = defaultdict(dict)  # predicted id -> frame -> gt track
    for gt_id, frames in assigned.items():
        for f, k in frames.items():
            predicted[k][f] = gt_id
    results = []
    T = video["length"]
    for k, frames in predicted.items():
        segs = [None] * T
        for f, gt_id in frames.items():
            seg = by_gt[gt_id]["segmentations"][f]
            if isinstance(seg["counts"], list):  # uncompressed -> compressed RLE
                seg = mask_util.frPyObjects(seg, *seg["size"])
            segs[f] = {"size": seg["size"], "counts": seg["counts"]}
        category = Counter(by_gt[g]["category_id"] for g in frames.values()).most_common(1)[0][0]
        results.append(
            {
                "video_id": video["id"],
                "category_id": category,
                "score": len(frames) / T,
                "segmentations": segs,
            }
        )
    return results


def subset(gt: dict, video_ids) -> dict:
    keep = set(video_ids)
    return {
        **gt,
        "videos": [v for v in gt["videos"] if v["id"] in keep],
        "annotations": [a for a in gt["annotations"] if a["video_id"] in keep],
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with open(args.gt) as f:
        gt = json.load(f)
    if not gt.get("annotations"):
        sys.exit(f"{args.gt}: no annotations to associate")
    by_video = defaultdict(list)
    for ann in gt["annotations"]:
        by_video[ann["video_id"]].append(ann)
    strata = {}
    for video in gt["videos"]:
        n = crossings(by_video[video["id"]])
        strata.setdefault("0" if n == 0 else "1" if n == 1 else ">=2", []).append(video["id"])
    rows = []
    for noise in args.noise:
        variants = [("qap", w, c) for w in args.edge_weights for c in args.size_correction]
        variants.append(("hungarian", 1.0, False))
        for mode, edge_weight, correction in variants:
            association = GraphAssociation(
                mode=mode,
                edges="geometry",
                edge_sigma=args.edge_sigma,
                edge_weight=edge_weight,
                match_threshold=args.match_threshold,
                size_correction=correction,
            )
            per_seed = []
            for seed in args.seeds:
                rng = np.random.default_rng(seed)
                torch.manual_seed(seed)
                class_codes = {
                    c["id"]: _unit(rng.standard_normal(args.embed_dim)) for c in gt["categories"]
                }
                results, switches = [], {}
                for video in gt["videos"]:
                    tracks = by_video[video["id"]]
                    out = associate_video(video, tracks, association, args, rng, class_codes, noise)
                    switches[video["id"]] = out["switches"]
                    results += track_results(video, tracks, out["assigned"])
                entry = {"idsw": sum(switches.values())}
                entry["AP"] = evaluate_results(results, gt).metrics_percent()["AP"]
                for name, ids in sorted(strata.items()):
                    entry[f"idsw[{name}]"] = sum(switches[v] for v in ids)
                    sub = [r for r in results if r["video_id"] in set(ids)]
                    entry[f"AP[{name}]"] = evaluate_results(sub, subset(gt, ids)).metrics_percent()[
                        "AP"
                    ]
                per_seed.append(entry)
            label = (
                "hungarian"
                if mode == "hungarian"
                else f"qap(w={edge_weight:g},sc={int(correction)})"
            )
            row = {"noise": noise, "mode": label}
            for key in per_seed[0]:
                values = np.array([e[key] for e in per_seed], dtype=float)
                row[key] = (
                    float(values.mean()),
                    float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                )
            rows.append(row)
            print(
                f"noise {noise:.2f} {row['mode']:18s} "
                + "  ".join(f"{k} {m:.2f}+-{s:.2f}" for k, (m, s) in list(row.items())[2:]),
                flush=True,
            )
    counts = {name: len(ids) for name, ids in strata.items()}
    print(f"videos by crossing same-class pairs: {counts} ({len(args.seeds)} seeds, mean +- std)")
    table = {"args": vars(args), "strata": counts, "rows": rows}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(table, f, indent=1)
    return table


if __name__ == "__main__":
    main()
