"""Temporal mAP/AR of video instance segmentation, with the semantics of the official YouTube-VIS API.

The numbers are those of ``youtubevos/cocoapi`` (``ytvos.py`` + ``ytvoseval.py``); the semantics that decide
them are written down in ``reference/ytvis-metric.md``. This is an independent implementation organised for
speed: the spatio-temporal IoU of a video sums integer intersections of the (prediction, ground truth)
pairs that can reach the lowest threshold, computed from the RLE strings by ``vis_core._rle`` (each mask
decoded once; where it is not built, by ``pycocotools.mask.iou`` over frame windows), the greedy
matching skips predictions that cannot match, matchings shared by several area ranges are computed
once, and accumulation is vectorised over IoU thresholds and area ranges. With ``workers=2`` a forked
child takes about half of the videos: it decodes their frames (left undecoded by ``load_predictions``),
computes their mask areas, IoUs and matches, and sends back only areas and match flags.

Legend: T IoU thresholds (10), R recall points (101), K categories, A area ranges (4), M maxDets (3),
P predictions, G ground-truth tracks, D predictions of one (video, category), F frames of a video.
"""

import logging
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Dict, List, Optional, Sequence

import numpy as np
from pycocotools import mask as mask_util

from . import compiled
from .forked import can_fork, run_forked
from .results import PredictionSet, gc_paused, prepare_predictions, read_json

logger = logging.getLogger(__name__)

__all__ = [
    "IOU_THRESHOLDS",
    "RECALL_THRESHOLDS",
    "MAX_DETS",
    "AREA_RANGES",
    "AREA_LABELS",
    "YTVISGroundTruth",
    "YTVISEvalResult",
    "evaluate",
    "video_track_ious",
]

# Exactly the values numpy produces for the official parameters (0.8999999999999999, ...).
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
# Bounds are inclusive on both sides; YouTube-VIS uses 128^2 / 256^2, not COCO's 32^2 / 96^2.
AREA_RANGES = ((0.0, 1e5**2), (0.0, 128.0**2), (128.0**2, 256.0**2), (256.0**2, 1e5**2))
AREA_LABELS = ("all", "small", "medium", "large")
# One pycocotools.mask.iou call costs about as much as this many bounding-box tests of mask pairs:
# frames are batched into windows whose extra (cross-frame) pairs cost about one call.
_PAIRS_PER_CALL = 8000
# Below this many prediction frames, a forked worker costs more than it saves.
_MIN_FRAMES_TO_FORK = 20000


def _mean_nonzero_area(areas) -> float:
    """Mean of the entries that are neither None nor 0, as the official API computes a track's area."""
    kept = [a for a in areas if a]
    if not kept:
        return 0.0
    if set(map(type, kept)) == {int} and sum(kept) < 2**53:
        return sum(kept) / len(kept)  # numpy's float64 sum of these is exact: the same quotient
    return float(np.array(kept).mean())


def _all_compressed(masks: list) -> bool:
    """Whether every ground-truth mask is a dict with a size and str counts (compressed RLE)."""
    if not set(map(type, masks)) <= {dict}:
        return False
    try:
        counts_types = set(map(type, map(itemgetter("counts"), masks)))
    except KeyError:
        return False
    return counts_types <= {str} and all(map(dict.__contains__, masks, repeat("size")))


@dataclass
class _GTTrack:
    ann_id: int
    category_id: int
    iscrowd: bool
    avg_area: Optional[float]  # None until computed from the masks (a file without 'areas')
    rles: List[Optional[dict]]  # F' entries (compressed RLE or None); F' is normally F
    # (F',) int64 area per frame, 0 where None; None until computed
    mask_areas: Optional[np.ndarray]
    sizes_ok: bool  # every present RLE has the video's size


def compute_mask_areas(tracks: Sequence[_GTTrack]) -> None:
    """Per-frame mask areas (and track areas the file does not give) of the tracks that lack them.

    One pycocotools call for all; done for the tracks of a video by the process that evaluates it.
    """
    todo = [t for t in tracks if t.mask_areas is None]
    if not todo:
        return
    present = [[r for r in t.rles if r is not None] for t in todo]
    flat = [r for p in present for r in p]
    areas = mask_util.area(flat) if flat else np.zeros(0, dtype=np.int64)
    start = 0
    for track, masks in zip(todo, present):
        track.mask_areas = np.zeros(len(track.rles), dtype=np.int64)
        track.mask_areas[[i for i, r in enumerate(track.rles) if r is not None]] = areas[
            start : start + len(masks)
        ]
        start += len(masks)
        if track.avg_area is None:
            track.avg_area = _mean_nonzero_area(track.mask_areas.tolist())


class YTVISGroundTruth:
    """A YouTube-VIS ground-truth file, indexed for evaluation.

    Which videos and categories count is decided by the file's ``videos`` and ``categories`` lists.
    Annotation order is kept within each video (it decides ties in matching).
    """

    def __init__(self, dataset: dict, source: str = "<ground truth>"):
        if not isinstance(dataset, dict):
            raise ValueError(
                f"{source}: a YouTube-VIS ground truth is a JSON object with 'videos', "
                f"'categories' and 'annotations'; got {type(dataset).__name__}."
            )
        for key in ("videos", "categories"):
            if key not in dataset:
                raise ValueError(f"{source}: ground truth has no {key!r} list.")
        self.source = source
        self.has_annotations = "annotations" in dataset
        self.videos: Dict[int, dict] = OrderedDict()
        for video in dataset["videos"]:
            vid = video["id"]
            length = video.get("length")
            if length is None:
                if "file_names" not in video:
                    raise ValueError(
                        f"{source}: video {vid} has neither 'length' nor 'file_names'."
                    )
                length = len(video["file_names"])
            self.videos[vid] = {"height": int(video["height"]), "width": int(video["width"]),
                                "length": int(length)}  # fmt: skip
        self.video_ids = sorted(self.videos)
        self.categories = OrderedDict((c["id"], c) for c in dataset["categories"])
        self.category_ids = sorted(self.categories)
        self.category_names = [self.categories[c].get("name", str(c)) for c in self.category_ids]
        self.tracks: Dict[int, List[_GTTrack]] = defaultdict(list)
        self._index(dataset.get("annotations", []))

    @classmethod
    def from_json(cls, path: str) -> "YTVISGroundTruth":
        with gc_paused():
            return cls(read_json(path, what="ground truth"), source=path)

    def require_annotations(self) -> None:
        """Raise a ValueError naming the file if it has no annotations (nothing to evaluate)."""
        if not self.has_annotations:
            raise ValueError(
                f"{self.source}: the ground truth has no 'annotations'; nothing to evaluate."
            )

    def _index(self, annotations: list):
        cat_set = set(self.category_ids)
        seen_ids = set()
        skipped = 0
        computed_areas = 0
        for ann in annotations:
            ann_id = ann.get("id")
            where = f"{self.source}: annotation {ann_id}"
            if ann_id in seen_ids:
                raise ValueError(f"{where}: the annotation id is used twice; ids must be unique.")
            seen_ids.add(ann_id)
            vid = ann.get("video_id")
            if vid not in self.videos or ann.get("category_id") not in cat_set:
                skipped += 1  # the official API never looks at these
                continue
            if "iscrowd" not in ann:
                raise ValueError(f"{where} (video {vid}) has no 'iscrowd' field; it is required.")
            if "segmentations" not in ann:
                raise ValueError(f"{where} (video {vid}) has no 'segmentations' list.")
            video = self.videos[vid]
            h, w = video["height"], video["width"]
            segs = ann["segmentations"]
            present = [s for s in segs if s is not None]
            if _all_compressed(present):
                rles = list(segs)  # compressed RLE or null: nothing to convert
            else:
                rles = [_gt_rle(seg, h, w, where) for seg in segs]
                present = [r for r in rles if r is not None]
            sizes_ok = all(map((h, w).__eq__, map(tuple, map(itemgetter("size"), present))))
            if ann_id == 0:
                logger.warning(
                    "%s: annotation id 0 in video %s; like the official API, no prediction is ever "
                    "counted as matching it.", self.source, vid,
                )  # fmt: skip
            avg_area = None  # computed from the masks with them (compute_mask_areas)
            if ann.get("areas") is not None:
                avg_area = _mean_nonzero_area(ann["areas"])
            else:
                computed_areas += 1
            self.tracks[vid].append(
                _GTTrack(ann_id, ann["category_id"], bool(ann["iscrowd"]), avg_area, rles, None,
                         sizes_ok)  # fmt: skip
            )
        if skipped:
            logger.info(
                "%s: %d annotations of videos or categories not listed in the file are not evaluated.",
                self.source, skipped,
            )  # fmt: skip
        if computed_areas:
            logger.warning(
                "%s: %d annotations have no 'areas'; their track areas are computed from the masks.",
                self.source, computed_areas,
            )  # fmt: skip


def _gt_rle(seg, h: int, w: int, where: str) -> Optional[dict]:
    """One ground-truth frame as a compressed RLE (polygons and uncompressed RLE converted), or None."""
    if not seg:
        return None
    if isinstance(seg, list):
        return mask_util.merge(mask_util.frPyObjects(seg, h, w))
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if isinstance(seg["counts"], list):
            return mask_util.frPyObjects(seg, *seg["size"])
        return seg
    raise ValueError(
        f"{where}: a segmentation is neither a polygon list nor an RLE dict: {seg!r:.80}"
    )


def video_track_ious(
    det_rles: Sequence[Sequence[Optional[dict]]],
    det_areas: np.ndarray,
    gt_tracks: Sequence[_GTTrack],
    height: int,
    width: int,
    det_categories: Optional[Sequence[int]] = None,
    min_iou: float = 0.0,
) -> np.ndarray:
    """Spatio-temporal IoU of every (prediction, ground truth) pair of one video.

    IoU = sum_f |d_f & g_f| / sum_f |d_f | g_f| over the frames both lists have (zip to the shorter).

    Args:
        det_rles: D lists of F entries, a compressed RLE of size (height, width) or None.
        det_areas: (D, F) int64 pixel areas, 0 where None.
        gt_tracks: G ground-truth tracks of the video.
        det_categories: (D,) category ids; if given, only pairs of the same category are computed
            (the others get IoU 0).
        min_iou: pairs whose IoU is provably below it (from the areas alone: the intersection of two
            frames is at most the smaller area) get IoU 0; with the lowest matching threshold this
            changes no match and spares pycocotools most pairs of very different sizes.
    Returns:
        (D, G) float64 IoUs.
    """
    num_d, num_g = len(det_rles), len(gt_tracks)
    ious = np.zeros((num_d, num_g))
    if num_d == 0 or num_g == 0:
        return ious
    num_f = det_areas.shape[1]
    compute_mask_areas(gt_tracks)
    # Frames beyond a ground-truth track's own length are not compared (zip to the shorter list).
    gt_len = np.array([min(len(g.rles), num_f) for g in gt_tracks])
    gt_areas = np.zeros((num_g, num_f), dtype=np.int64)
    for j, g in enumerate(gt_tracks):
        gt_areas[j, : gt_len[j]] = g.mask_areas[: gt_len[j]]
    uniform = all(g.sizes_ok for g in gt_tracks)
    # Only non-empty masks of the video's size can intersect: the others are left out of the IoU calls.
    gt_on = gt_areas > 0  # (G, F)
    if not uniform:
        for j, g in enumerate(gt_tracks):
            for f in np.flatnonzero(gt_on[j]).tolist():
                gt_on[j, f] = list(g.rles[f]["size"]) == [height, width]
    if det_categories is None:
        need = np.ones((num_d, num_g), dtype=bool)
    else:
        g_cats = np.array([g.category_id for g in gt_tracks])
        need = np.asarray(det_categories)[:, None] == g_cats[None, :]  # (D, G)
    if uniform:
        det_cum = np.concatenate([np.zeros((num_d, 1), np.int64), np.cumsum(det_areas, 1)], 1)
        sums = det_cum[:, gt_len] + gt_areas.sum(axis=1)[None, :]  # (D, G) sum of both areas
        if min_iou > 0:
            # IoU = I / (sums - I) grows with I, and I <= sum_f min(|d_f|, |g_f|) (0 beyond gt_len).
            i_max = np.minimum(det_areas[:, None, :], gt_areas[None, :, :]).sum(axis=2)  # (D, G)
            need &= i_max >= (min_iou - 1e-9) * (sums - i_max)
    if compiled.rle_ops is not None:
        inter = _intersections_compiled(det_rles, det_areas, gt_tracks, gt_on, need)
    else:
        inter = _intersections(
            det_rles, det_areas, gt_tracks, gt_on, need, det_categories, height, width
        )
    if uniform:
        union = sums - inter  # (D, G)
    else:
        union = _union_mixed_sizes(det_rles, det_areas, gt_tracks, gt_len, inter, height, width)
    np.divide(inter, union, out=ious, where=union > 0)
    return ious


def _intersections_compiled(det_rles, det_areas, gt_tracks, gt_on, need) -> np.ndarray:
    """(D, G) int64 sum over frames of |d_f & g_f|, by ``vis_core._rle`` for the wanted pairs only.

    ``gt_on`` (G, F) marks the ground-truth masks to compare (non-empty, of the video's size) and
    ``need`` (D, G) the pairs wanted; each mask is decoded once.
    """
    num_d, num_g = need.shape
    both = need[:, :, None] & (det_areas > 0)[:, None, :] & gt_on[None, :, :]  # (D, G, F)
    d, g, f = map(np.ascontiguousarray, np.nonzero(both))
    if len(d) == 0:
        return np.zeros((num_d, num_g), dtype=np.int64)
    per_frame = compiled.rle_ops.intersections(det_rles, [t.rles for t in gt_tracks], d, g, f)
    inter = np.bincount(d * num_g + g, np.frombuffer(per_frame, np.int64), num_d * num_g)
    return inter.astype(np.int64).reshape(num_d, num_g)  # float64 sums of integers: exact


def _intersections(
    det_rles, det_areas, gt_tracks, gt_on, need, det_categories, height, width
) -> np.ndarray:
    """(D, G) int64 sum over frames of |d_f & g_f|, with few pycocotools calls.

    ``gt_on`` (G, F) marks the ground-truth masks to compare: non-empty and of the video's size
    (height, width), which every prediction has. ``need`` (D, G) marks the pairs wanted: tracks in
    no wanted pair are left out (pairs of same-category tracks that are both in are computed too).

    ``pycocotools.mask.iou`` examines every (prediction, ground truth) pair of its two lists, so the
    frames of a window (and the categories) go into one call: each mask is labelled with the size
    (H, W + label) where the label tells its frame and category apart. Masks of equal labels are
    compared exactly as with their true size, since the intersection and the area of two run-length
    encodings depend on their runs only, and the bounding-box test that pycocotools runs first uses H
    only; masks of different labels get -1 from pycocotools (different sizes) and add nothing.
    With iscrowd=1 pycocotools returns |d & g| / |d|, from which the integer intersection is exact.
    """
    num_d, num_f = det_areas.shape
    num_g = len(gt_tracks)
    inter = np.zeros((num_d, num_g), dtype=np.int64)
    if det_categories is None:
        d_cat, g_cat, n_cat = np.zeros(num_d, np.int64), np.zeros(num_g, np.int64), 1
    else:
        names, codes = np.unique(
            np.r_[np.asarray(det_categories), [g.category_id for g in gt_tracks]],
            return_inverse=True,
        )
        d_cat, g_cat, n_cat = codes[:num_d], codes[num_d:], len(names)
    # A mask is compared only in a frame where a wanted partner of it has a mask.
    need_i = need.astype(np.int64)
    det_on = det_areas > 0  # (D, F)
    det_on, gt_on = det_on & (need_i @ gt_on > 0), gt_on & (need_i.T @ det_on > 0)
    d_i, d_f = np.nonzero(det_on)  # present frames, grouped by prediction
    g_j, g_f = np.nonzero(gt_on)
    if len(d_i) == 0 or len(g_j) == 0:
        return inter
    d_area = det_areas[d_i, d_f].astype(np.float64)
    per_frame = max(1.0, len(d_i) / num_f) * max(1.0, len(g_j) / num_f)
    window = int(max(1, min(num_f, round(np.sqrt(_PAIRS_PER_CALL / per_frame)))))
    for f0 in range(0, num_f, window):
        ds = np.flatnonzero((d_f >= f0) & (d_f < f0 + window))
        gs = np.flatnonzero((g_f >= f0) & (g_f < f0 + window))
        if len(ds) == 0 or len(gs) == 0:
            continue
        d_lab = ((d_f[ds] - f0) * n_cat + d_cat[d_i[ds]]).tolist()
        g_lab = ((g_f[gs] - f0) * n_cat + g_cat[g_j[gs]]).tolist()
        d_counts = [det_rles[i][f]["counts"] for i, f in zip(d_i[ds].tolist(), d_f[ds].tolist())]
        g_counts = [
            gt_tracks[j].rles[f]["counts"] for j, f in zip(g_j[gs].tolist(), g_f[gs].tolist())
        ]
        dts = [{"size": (height, width + lab), "counts": c} for lab, c in zip(d_lab, d_counts)]
        gts = [{"size": (height, width + lab), "counts": c} for lab, c in zip(g_lab, g_counts)]
        ratio = np.asarray(mask_util.iou(dts, gts, [1] * len(gts))).reshape(len(ds), len(gs))
        pair_inter = np.rint(np.maximum(ratio, 0.0) * d_area[ds, None])  # (m, n) exact integers
        rows = np.flatnonzero(np.diff(d_i[ds], prepend=-1))  # first entry of each track
        cols = np.flatnonzero(np.diff(g_j[gs], prepend=-1))
        pair_inter = np.add.reduceat(np.add.reduceat(pair_inter, rows, axis=0), cols, axis=1)
        inter[d_i[ds][rows][:, None], g_j[gs][cols][None, :]] += pair_inter.astype(np.int64)
    return inter


def _union_mixed_sizes(det_rles, det_areas, gt_tracks, gt_len, inter, height, width):
    """Union sums when some ground-truth masks are not of the video's size (slow, rare path).

    A frame where both masks exist but differ in size adds 0 to both sums, as in the official API.
    """
    num_d, num_g = det_areas.shape[0], len(gt_tracks)
    union = np.zeros((num_d, num_g), dtype=np.int64)
    for j, g in enumerate(gt_tracks):
        for f in range(int(gt_len[j])):
            g_rle = g.rles[f]
            d_here = np.array([det_rles[i][f] is not None for i in range(num_d)])
            d_area = det_areas[:, f]
            if g_rle is None:
                union[:, j] += np.where(d_here, d_area, 0)
                continue
            same = list(g_rle["size"]) == [height, width]
            both = d_area + g.mask_areas[f] if same else np.zeros(num_d, np.int64)
            union[:, j] += np.where(d_here, both, g.mask_areas[f])
    # inter already excludes pairs of different sizes; subtract it where it was counted.
    return union - inter


def _areas_ious_matches(gt, preds, jobs, pred_video_rank, cat_index, workers: int) -> dict:
    """Mask areas of every prediction, IoUs and matches of every video with ground truth.

    Args:
        jobs: video id -> (categories, spans, (D,) prediction indices) of ``evaluate``.
        pred_video_rank: (P,) rank of each prediction's video in ``gt.video_ids``.
        workers: with 2 or more (and fork available, and enough masks to be worth a process), a
            forked child computes about half of the videos, balanced by frames.
    Returns:
        video id -> ``_match_video``'s output; the areas are stored in ``preds``.
    """
    n_v = len(gt.video_ids)
    frames = np.bincount(pred_video_rank, weights=preds.num_frames, minlength=n_v)
    share = np.zeros(n_v, dtype=bool)  # videos of the child
    if workers > 1 and can_fork() and frames.sum() >= _MIN_FRAMES_TO_FORK:
        loads = [0.0, 0.0]
        for v in np.argsort(-frames, kind="stable").tolist():
            side = int(loads[1] < loads[0])
            share[v] = side == 1
            loads[side] += frames[v]
    vid_rank = {vid: i for i, vid in enumerate(gt.video_ids)}

    def part(child: bool):
        selected = share[pred_video_rank] == child  # (P,) predictions of this part's videos
        areas = preds.area_parts(selected) if preds.has_pending_areas() else None
        if areas is not None:
            preds.set_area_part(selected, *areas)
        matches = {}
        for vid, (cats, spans, det_idx) in jobs.items():
            if share[vid_rank[vid]] == child:
                video = gt.videos[vid]
                det_areas = preds.frame_areas(det_idx)  # (D, F)
                ious = video_track_ious(
                    preds.frame_lists(det_idx), det_areas,
                    gt.tracks[vid], video["height"], video["width"],
                    det_categories=preds.category_ids[det_idx], min_iou=float(IOU_THRESHOLDS[0]),
                )  # fmt: skip
                # The track areas, as PredictionSet.avg_areas computes them.
                n_on = (det_areas > 0).sum(axis=1)
                avg = np.divide(det_areas.sum(axis=1), n_on, out=np.zeros(len(n_on)),
                                where=n_on > 0)  # fmt: skip
                matches[vid] = _match_video(gt.tracks[vid], cats, spans, ious, avg, cat_index)
        return selected, areas, matches

    if not share.any():
        return part(False)[2]
    child_ok, from_child, (_, _, matches) = run_forked(lambda: part(True), lambda: part(False))
    if not child_ok:
        matches.update(part(True)[2])  # raises the error the child met, if it had one
        return matches
    selected_c, areas_c, matches_c = from_child
    if areas_c is not None:
        preds.set_area_part(selected_c, *areas_c)
    matches.update(matches_c)
    return matches


def _match_video(tracks, cats, spans, ious, det_avg_area, cat_index):
    """Greedy matching of the predictions of one video, in every area range and at every threshold.

    Args:
        tracks: the G ground-truth tracks of the video.
        cats, spans: its categories (indices) with ground truth and the [start, end) positions of
            their predictions in the kept order of ``evaluate``.
        ious: (D, G) IoUs, D the predictions of the spans one after the other.
        det_avg_area: (D,) track areas of those predictions.
    Returns:
        [(category index, (A,) ground-truth tracks that count)], and [(start, end, true positives,
        false positives)] with (A, T, end - start) bool flags of the predictions of each span.
    """
    lo = np.array([r[0] for r in AREA_RANGES])[:, None]  # (A, 1)
    hi = np.array([r[1] for r in AREA_RANGES])[:, None]
    det_oor = (det_avg_area[None, :] < lo) | (det_avg_area[None, :] > hi)  # (A, D)
    compute_mask_areas(tracks)
    g_cat = np.array([cat_index[g.category_id] for g in tracks])
    g_crowd = np.array([g.iscrowd for g in tracks])
    g_area = np.array([g.avg_area for g in tracks])
    g_ids = np.array([g.ann_id for g in tracks])
    g_ignore = g_crowd[None, :] | (g_area[None, :] < lo) | (g_area[None, :] > hi)  # (A, G)
    npig, matched = [], []
    row = 0
    for k, (start, end) in zip(cats, spans):
        gt_js = np.flatnonzero(g_cat == k)
        ignore_k = g_ignore[:, gt_js]  # (A, G_k)
        npig.append((k, (~ignore_k).sum(axis=1)))
        if end == start:
            continue
        sub = ious[row : row + end - start][:, gt_js]
        oor = det_oor[:, None, row : row + end - start]  # (A, 1, D_k)
        row += end - start
        crowd, ids = g_crowd[gt_js], g_ids[gt_js]
        if len(gt_js) == 1:  # one ground truth: its matching does not depend on the range
            has = _greedy_match(sub, ignore_k[0], crowd) >= 0  # (T, D)
            m_ign = has[None] & ignore_k[:, :1, None]  # (A, T, D)
            m_real = (has & (ids[0] != 0))[None]  # id 0 never counts as a match
        else:
            cache = {}
            for ignore in ignore_k:
                key = ignore.tobytes()
                if key not in cache:
                    gt_order = np.argsort(ignore, kind="mergesort")
                    m = _greedy_match(sub[:, gt_order], ignore[gt_order], crowd[gt_order])
                    has = m >= 0
                    m_safe = np.where(has, m, 0)
                    m_ign = has & ignore[gt_order][m_safe]
                    m_real = has & (ids[gt_order][m_safe] != 0)
                    cache[key] = (m_ign, m_real)
            m_ign, m_real = (np.stack(x) for x in zip(*(cache[i.tobytes()] for i in ignore_k)))
        ign = m_ign | (~m_real & oor)  # (A, T, D)
        matched.append((start, end, m_real & ~ign, ~m_real & ~ign))
    return npig, matched


def _greedy_match(ious: np.ndarray, gt_ignore: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """Greedy matching of one (video, category, area range) at every IoU threshold.

    Args:
        ious: (D, G) IoUs, predictions in descending score order, ground truth with ignored ones last.
        gt_ignore, gt_crowd: (G,) bool.
    Returns:
        (T, D) int64 index of the matched ground truth (in the given order), -1 where unmatched.
    """
    num_d, num_g = ious.shape
    matches = np.full((len(IOU_THRESHOLDS), num_d), -1, dtype=np.int64)
    if num_d == 0 or num_g == 0:
        return matches
    if num_g == 1:  # the common case, vectorised: the first prediction that reaches a threshold
        reach = ious[None, :, 0] >= np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]  # (T, D)
        if not gt_crowd[0]:  # a crowd region takes every prediction that reaches it
            reach &= np.cumsum(reach, axis=1) == 1
        matches[reach] = 0
        return matches
    best_iou = ious.max(axis=1)
    rows = ious.tolist()
    ignore = gt_ignore.tolist()
    crowd = gt_crowd.tolist()
    for t, thr in enumerate(IOU_THRESHOLDS.tolist()):
        candidates = np.flatnonzero(best_iou >= thr).tolist()  # the others cannot match
        if not candidates:
            break  # thresholds only grow
        taken = [False] * num_g
        for d in candidates:
            row = rows[d]
            best = min(thr, 1 - 1e-10)
            m = -1
            for g in range(num_g):
                if taken[g] and not crowd[g]:
                    continue
                if m > -1 and not ignore[m] and ignore[g]:
                    break  # holds a regular ground truth: never moves on to an ignored one
                if row[g] < best:
                    continue
                best = row[g]  # ">=": on a tie the later ground truth wins
                m = g
            if m > -1:
                matches[t, d] = m
                taken[m] = True
    return matches


@dataclass
class YTVISEvalResult:
    """Accumulated evaluation, laid out as the official API's ``eval`` dict."""

    precision: np.ndarray  # (T, R, K, A, M), -1 where a category has no countable ground truth
    recall: np.ndarray  # (T, K, A, M)
    scores: np.ndarray  # (T, R, K, A, M) score at each recall point
    category_ids: List[int]
    category_names: List[str]
    stats: Dict[str, float] = field(default_factory=dict)  # fractions, -1 where undefined
    per_category: Dict[str, float] = field(default_factory=dict)  # AP per category name

    def metrics_percent(self) -> "OrderedDict[str, float]":
        """The headline metrics in percent, NaN where undefined (as detectron2 prints them)."""
        return OrderedDict((k, v * 100 if v >= 0 else float("nan")) for k, v in self.stats.items())

    def per_category_percent(self) -> "OrderedDict[str, float]":
        return OrderedDict(
            (k, v * 100 if v >= 0 else float("nan")) for k, v in self.per_category.items()
        )


def _summary_value(result: YTVISEvalResult, ap: bool, iou_thr=None, area="all", max_dets=100):
    a = [i for i, lbl in enumerate(AREA_LABELS) if lbl == area]
    m = [i for i, md in enumerate(MAX_DETS) if md == max_dets]
    s = result.precision if ap else result.recall
    if iou_thr is not None:
        s = s[np.where(iou_thr == IOU_THRESHOLDS)[0]]
    s = s[:, :, :, a, m] if ap else s[:, :, a, m]
    valid = s[s > -1]
    return float(np.mean(valid)) if len(valid) else -1.0


def _summarize(result: YTVISEvalResult):
    result.stats = OrderedDict(
        [
            ("AP", _summary_value(result, True)),
            ("AP50", _summary_value(result, True, iou_thr=0.5)),
            ("AP75", _summary_value(result, True, iou_thr=0.75)),
            ("APs", _summary_value(result, True, area="small")),
            ("APm", _summary_value(result, True, area="medium")),
            ("APl", _summary_value(result, True, area="large")),
            ("AR1", _summary_value(result, False, max_dets=1)),
            ("AR10", _summary_value(result, False, max_dets=10)),
            ("AR100", _summary_value(result, False, max_dets=100)),
            ("ARs", _summary_value(result, False, area="small")),
            ("ARm", _summary_value(result, False, area="medium")),
            ("ARl", _summary_value(result, False, area="large")),
        ]
    )
    per_cat = OrderedDict()
    for k, name in enumerate(result.category_names):
        p = result.precision[:, :, k, 0, -1]
        valid = p[p > -1]
        per_cat[name] = float(np.mean(valid)) if len(valid) else -1.0
    result.per_category = per_cat


def evaluate(gt: YTVISGroundTruth, preds: PredictionSet, workers: int = 1) -> YTVISEvalResult:
    """Temporal AP/AR of validated predictions against a ground truth, as the official API.

    Args:
        gt: the ground truth.
        preds: predictions validated against ``gt`` (``results.prepare_predictions``).
        workers: processes that compute mask areas and IoUs (the slowest part), videos shared out
            between them; above 1, a forked child takes part of the videos (POSIX only; serial
            where fork is unavailable or the input is small). The numbers do not depend on it.
            Do not fork a process whose other threads may hold locks (a CUDA context, for example).
    """
    n_t, n_r, n_a, n_m = (
        len(IOU_THRESHOLDS),
        len(RECALL_THRESHOLDS),
        len(AREA_RANGES),
        len(MAX_DETS),
    )
    cat_ids = gt.category_ids
    n_k = len(cat_ids)
    cat_index = {c: k for k, c in enumerate(cat_ids)}
    vid_rank = {v: i for i, v in enumerate(gt.video_ids)}

    # Order predictions by (category, video, -score, position in the file), keep the top maxDets[-1]
    # of each (video, category): the order in which the official API concatenates and sorts them.
    n_p = len(preds)
    cat_k = np.array([cat_index[c] for c in preds.category_ids.tolist()], dtype=np.int64)
    vid_r = np.array([vid_rank[v] for v in preds.video_ids.tolist()], dtype=np.int64)
    order = np.lexsort((np.arange(n_p), -preds.scores, vid_r, cat_k))
    group = cat_k[order] * (len(gt.video_ids) + 1) + vid_r[order]
    starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1] if n_p else np.zeros(0, np.int64)
    rank = np.arange(n_p) - np.repeat(starts, np.diff(np.r_[starts, n_p]))
    keep = rank < MAX_DETS[-1]
    order, rank = order[keep], rank[keep]
    o_cat, o_vid = cat_k[order], vid_r[order]
    o_score = preds.scores[order]
    n_o = len(order)

    # Positions (in the kept order) of each (video, category) block: [start, end) runs of `order`.
    block_key = o_vid * n_k + o_cat
    bounds = np.r_[0, np.flatnonzero(np.diff(block_key)) + 1, n_o] if n_o else np.zeros(1, np.int64)
    blocks = {
        key: (start, end)
        for key, start, end in zip(
            block_key[bounds[:-1]].tolist(), bounds[:-1].tolist(), bounds[1:].tolist()
        )
    }

    # The predictions of each video compared with its ground truth: those of categories it has.
    jobs = OrderedDict()
    for vid in gt.video_ids:
        tracks = gt.tracks.get(vid)
        if tracks:
            v = vid_rank[vid]
            cats = np.unique([cat_index[g.category_id] for g in tracks]).tolist()
            spans = [blocks.get(v * n_k + k, (0, 0)) for k in cats]
            jobs[vid] = (cats, spans, order[np.concatenate([np.arange(a, b) for a, b in spans])])
    video_matches = _areas_ious_matches(gt, preds, jobs, vid_r, cat_index, workers)

    o_area = preds.avg_areas[order]
    # Out-of-range flags of predictions per area range: (A, n_o).
    det_oor = np.stack([(o_area < lo) | (o_area > hi) for lo, hi in AREA_RANGES])
    # Defaults for predictions that match nothing: false positive unless out of range.
    dt_tp = np.zeros((n_a, n_t, n_o), dtype=bool)
    dt_fp = np.broadcast_to(~det_oor[:, None, :], (n_a, n_t, n_o)).copy()
    npig = np.zeros((n_k, n_a), dtype=np.int64)

    for npig_v, matched in video_matches.values():
        for k, counts in npig_v:
            npig[k] += counts
        for start, end, tp, fp in matched:
            dt_tp[:, :, start:end] = tp
            dt_fp[:, :, start:end] = fp

    precision = -np.ones((n_t, n_r, n_k, n_a, n_m))
    recall = -np.ones((n_t, n_k, n_a, n_m))
    scores = -np.ones((n_t, n_r, n_k, n_a, n_m))
    cat_bounds = np.searchsorted(o_cat, np.arange(n_k + 1))
    for k in range(n_k):
        sl = slice(cat_bounds[k], cat_bounds[k + 1])
        areas = np.flatnonzero(npig[k] > 0)  # (A',) area ranges with ground truth that counts
        if len(areas) == 0:
            continue
        prev = None
        for mi, max_det in enumerate(MAX_DETS):
            sel = np.flatnonzero(rank[sl] < max_det) + sl.start
            if prev is not None and len(sel) == len(prev):  # no (video, category) had more
                precision[:, :, k, areas, mi] = precision[:, :, k, areas, mi - 1]
                recall[:, k, areas, mi] = recall[:, k, areas, mi - 1]
                scores[:, :, k, areas, mi] = scores[:, :, k, areas, mi - 1]
                continue
            prev = sel
            srt = sel[np.argsort(-o_score[sel], kind="mergesort")]
            n_rows = len(areas) * n_t  # every (area range, IoU threshold) at once
            p, r, sc = _precision_recall(
                dt_tp[areas][:, :, srt].reshape(n_rows, -1),  # (A', T, N) -> (A'*T, N)
                dt_fp[areas][:, :, srt].reshape(n_rows, -1), o_score[srt],
                np.repeat(npig[k, areas], n_t),
            )  # fmt: skip
            precision[:, :, k, areas, mi] = p.reshape(len(areas), n_t, n_r).transpose(1, 2, 0)
            recall[:, k, areas, mi] = r.reshape(len(areas), n_t).T
            scores[:, :, k, areas, mi] = sc.reshape(len(areas), n_t, n_r).transpose(1, 2, 0)
    result = YTVISEvalResult(precision, recall, scores, list(cat_ids), list(gt.category_names))
    _summarize(result)
    return result


def _precision_recall(tps, fps, sorted_scores, npig):
    """Precision at the recall points and final recall, for many rows (IoU thresholds, ranges) at once.

    Args:
        tps, fps: (L, N) bool, predictions in descending score order.
        sorted_scores: (N,)
        npig: (L,) number of ground-truth tracks that count, per row (> 0).
    Returns:
        (L, R) precision, (L,) recall, (L, R) score at each recall point.
    """
    n_l, n = tps.shape
    if n == 0:
        return (
            np.zeros((n_l, len(RECALL_THRESHOLDS))),
            np.zeros(n_l),
            np.zeros((n_l, len(RECALL_THRESHOLDS))),
        )
    tp_sum = np.cumsum(tps, axis=1)  # (L, N) int
    fp_sum = np.cumsum(fps, axis=1)
    rc = tp_sum / npig[:, None]
    pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # monotone from the right
    # searchsorted(rc[l], RECALL_THRESHOLDS, "left") for every l in one call, exactly: rc < r holds
    # iff tp_sum < k_r, the least integer with k_r / npig >= r (the same float division), and
    # integer rows offset by l * stride stay sorted as one array.
    values, which = np.unique(npig, return_inverse=True)
    k_r = np.stack([_least_count_reaching(RECALL_THRESHOLDS, v) for v in values.tolist()])[which]
    stride = max(n, int(npig.max())) + 1
    offsets = np.arange(n_l, dtype=np.int64) * stride
    inds = (
        np.searchsorted(
            (tp_sum + offsets[:, None]).ravel(), (k_r + offsets[:, None]).ravel(), side="left"
        ).reshape(n_l, -1)
        - (np.arange(n_l) * n)[:, None]
    )  # (L, R) in [0, N]
    valid = inds < n
    safe = np.where(valid, inds, 0)
    precision = np.where(valid, np.take_along_axis(pr, safe, axis=1), 0.0)
    return precision, rc[:, -1], np.where(valid, sorted_scores[safe], 0.0)


def _least_count_reaching(thresholds: np.ndarray, npig: int) -> np.ndarray:
    """(R,) int64: for each threshold r, the least integer k >= 0 with k / npig >= r (float64)."""
    guess = np.ceil(thresholds * npig).astype(np.int64)
    cand = np.maximum(guess[:, None] + np.arange(-2, 3)[None, :], 0)  # (R, 5), the error is < 1
    reach = cand / npig >= thresholds[:, None]
    return cand[np.arange(len(thresholds)), np.argmax(reach, axis=1)]


def evaluate_results(results, gt, source: str = "results", workers: int = 1) -> YTVISEvalResult:
    """Evaluate an in-memory list of result dicts against a ground truth.

    Args:
        results: list of ``{"video_id", "category_id", "score", "segmentations"}`` dicts.
        gt: a ``YTVISGroundTruth``, a path to a ground-truth JSON, or its loaded dict.
        workers: as in ``evaluate``.
    """
    if isinstance(gt, str):
        gt = YTVISGroundTruth.from_json(gt)
    elif isinstance(gt, dict):
        gt = YTVISGroundTruth(gt)
    gt.require_annotations()
    with gc_paused():
        return evaluate(gt, prepare_predictions(results, gt, source=source), workers=workers)


def format_metrics_table(result: YTVISEvalResult) -> str:
    """The headline metrics and per-category AP (percent) as text tables."""
    metrics = result.metrics_percent()
    head = _pipe_table(list(metrics), [[f"{v:.3f}" for v in metrics.values()]], center=True)
    items = [(name, f"{v:.3f}") for name, v in result.per_category_percent().items()]
    cols = 3
    rows = [sum(items[i : i + cols], ()) for i in range(0, len(items), cols)]
    per_cat = _pipe_table(["category", "AP"] * cols, rows, center=False)
    return f"Temporal segm metrics (percent):\n{head}\nPer-category segm AP:\n{per_cat}"


def _pipe_table(headers: List[str], rows: List[Sequence[str]], center: bool) -> str:
    """A Markdown (pipe) table of strings, cells centred or left-aligned; short rows padded."""
    rows = [list(r) + [""] * (len(headers) - len(r)) for r in rows]
    widths = [max(len(c) for c in col) for col in zip(headers, *rows)]
    align = str.center if center else str.ljust
    edge = ":" if center else "-"
    lines = [
        "| " + " | ".join(align(c, w) for c, w in zip(cells, widths)) + " |"
        for cells in [headers] + rows
    ]
    lines.insert(1, "|" + "|".join(":" + "-" * w + edge for w in widths) + "|")
    return "\n".join(lines)
