"""HOTA tracking metrics of video instance segmentation, computed by the ``trackeval`` package.

HOTA (Luiten et al., IJCV 2021) splits tracking quality into detection (DetA) and association (AssA).
The numbers come from TrackEval's own ``HOTA`` metric class; this module only lays our ground truth
and predictions out the way TrackEval's YouTube-VIS reader does:

- one sequence per (video, category), evaluated per category and then combined over the videos;
- a track is present in a frame where its segmentation is not null; the similarity of a ground-truth
  and a predicted mask in a frame is their mask IoU (pycocotools), as TrackEval computes it;
- every prediction takes part (TrackEval's YouTube-VIS reader keeps them all), unless a score
  threshold is given; crowd ground truth is scored like any other track, as TrackEval does;
- the headline values are TrackEval's class average over the categories with at least one ground
  truth or predicted mask, each the mean over TrackEval's 19 localisation thresholds (0.05..0.95).

``trackeval`` is optional: ``pip install --no-deps trackeval==1.0.0`` (see ``REQUIREMENT``). HOTA is much slower than
the mAP: TrackEval solves an assignment per frame and localisation threshold in Python (about 20 s of
CPU on a YouTube-VIS-2021-sized case with 100 predictions per video; ``score_threshold`` cuts it).
"""

import logging
from collections import OrderedDict
from typing import Dict, List

import numpy as np
from pycocotools import mask as mask_util

logger = logging.getLogger(__name__)

__all__ = ["HOTA_KEYS", "REQUIREMENT", "evaluate_hota", "format_hota_table", "hota_metric"]

# The pip requirement: trackeval 1.0.0 is the release that allows numpy<2 on Python 3.11.
REQUIREMENT = "trackeval==1.0.0"
HOTA_KEYS = ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA")


def hota_metric():
    """TrackEval's HOTA metric object; an ImportError that says how to install trackeval if absent."""
    try:
        from trackeval.metrics import HOTA
    except ImportError as error:
        raise ImportError(
            f"HOTA metrics need the trackeval package, which is not installed ({error}). "
            f"Install it with: pip install --no-deps '{REQUIREMENT}'  (the release that allows "
            "numpy<2; its HOTA needs only numpy and scipy, which vis_core already has, while its "
            "declared dependencies would add a second OpenCV)"
        ) from None
    return HOTA({"PRINT_CONFIG": False})


def _sequence(gt_rles: List[list], det_rles: List[list], num_f: int) -> dict:
    """TrackEval's per-sequence data of one (video, category).

    Args:
        gt_rles, det_rles: per track, F entries (RLE dict or None).
    Returns:
        The dict ``trackeval.metrics.HOTA.eval_sequence`` reads: per frame the ids present and the
        (gt, tracker) mask IoUs, and the counts of ids and detections.
    """
    gt_ids, tr_ids, sims = [], [], []
    for f in range(num_f):
        g = [j for j, track in enumerate(gt_rles) if f < len(track) and track[f]]
        d = [i for i, track in enumerate(det_rles) if track[f]]
        sim = np.zeros((len(g), len(d)))
        if g and d:
            ious = mask_util.iou(
                [gt_rles[j][f] for j in g], [det_rles[i][f] for i in d], [0] * len(d)
            )
            sim = np.maximum(np.asarray(ious).reshape(len(g), len(d)), 0.0)  # -1: other size
        gt_ids.append(np.array(g, dtype=int))
        tr_ids.append(np.array(d, dtype=int))
        sims.append(sim)
    # Ids are made contiguous over the tracks that appear at least once.
    gt_used = np.unique(np.concatenate(gt_ids)) if gt_ids else np.zeros(0, int)
    tr_used = np.unique(np.concatenate(tr_ids)) if tr_ids else np.zeros(0, int)
    return {
        "num_timesteps": num_f,
        "gt_ids": [np.searchsorted(gt_used, ids) for ids in gt_ids],
        "tracker_ids": [np.searchsorted(tr_used, ids) for ids in tr_ids],
        "similarity_scores": sims,
        "num_gt_ids": len(gt_used),
        "num_tracker_ids": len(tr_used),
        "num_gt_dets": int(sum(len(ids) for ids in gt_ids)),
        "num_tracker_dets": int(sum(len(ids) for ids in tr_ids)),
    }


def evaluate_hota(
    gt, preds, score_threshold: float = 0.0, id_switches: bool = False
) -> Dict[str, object]:
    """HOTA, DetA, AssA, DetRe, DetPr, AssRe, AssPr, LocA of validated predictions.

    Args:
        gt: a ``YTVISGroundTruth``.
        preds: a ``PredictionSet`` validated against it (``prepare_predictions``/``load_predictions``).
        score_threshold: predictions scored below it are left out (0: all, as TrackEval does).
        id_switches: also count identity switches with TrackEval's CLEAR metric (mask IoU >= 0.5)
            on the same sequences, summed over the videos and categories.
    Returns:
        ``{"HOTA": .., "DetA": .., ..., "per_category": {name: HOTA}}`` as fractions in [0, 1]; a
        category with no ground truth and no prediction has NaN and is left out of the average;
        with ``id_switches``, ``"IDSW"`` (a count).
    """
    metric = hota_metric()
    clear = None
    if id_switches:
        from trackeval.metrics import CLEAR

        clear = CLEAR({"PRINT_CONFIG": False, "THRESHOLD": 0.5})
    switches = 0
    keep = np.flatnonzero(preds.scores >= score_threshold)
    # Predictions grouped by (category, video), in file order within a group.
    groups: Dict[tuple, List[int]] = {}
    for i, key in zip(
        keep.tolist(), zip(preds.category_ids[keep].tolist(), preds.video_ids[keep].tolist())
    ):
        groups.setdefault(key, []).append(i)
    gt_groups: Dict[tuple, list] = {}
    for vid in gt.video_ids:
        for t in gt.tracks.get(vid, []):
            gt_groups.setdefault((t.category_id, vid), []).append(t.rles)
    per_class = OrderedDict()
    for cat, name in zip(gt.category_ids, gt.category_names):
        sequences = {}
        for vid in gt.video_ids:
            g, d = gt_groups.get((cat, vid), []), groups.get((cat, vid), [])
            if not g and not d:
                continue  # adds nothing to any sum TrackEval combines
            segs = [preds.segmentations[i] for i in d]
            if g and segs:
                data = _sequence(g, segs, gt.videos[vid]["length"])
            else:  # TrackEval only counts the detections of a sequence without a partner side
                n_g = sum(1 for track in g for s in track if s)
                n_d = sum(1 for track in segs for s in track if s)
                data = {"num_gt_dets": n_g, "num_tracker_dets": n_d}
            sequences[vid] = metric.eval_sequence(data)
            if clear is not None and g and segs:
                switches += int(clear.eval_sequence(data)["IDSW"])
        if sequences:
            per_class[name] = metric.combine_sequences(sequences)
    out = OrderedDict()
    if per_class:
        combined = metric.combine_classes_class_averaged(per_class, ignore_empty_classes=True)
        for key in HOTA_KEYS:
            out[key] = float(np.mean(combined[key]))
    else:
        out.update((key, float("nan")) for key in HOTA_KEYS)
    out["per_category"] = OrderedDict(
        (name, float(np.mean(per_class[name]["HOTA"])) if name in per_class else float("nan"))
        for name in gt.category_names
    )
    if clear is not None:
        out["IDSW"] = switches
    return out


def format_hota_table(hota: Dict[str, object]) -> str:
    """The HOTA metrics (percent) as a text table."""
    from tabulate import tabulate

    row = [f"{100 * hota[k]:.3f}" for k in HOTA_KEYS]
    table = tabulate([row], headers=list(HOTA_KEYS), tablefmt="pipe", stralign="center")
    return f"HOTA metrics (percent, TrackEval, class average):\n{table}"
