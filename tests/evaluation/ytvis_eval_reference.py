"""A slow, independent reference of the YouTube-VIS temporal AP/AR, written from the metric's spec.

Masks are decoded to numpy arrays and everything is done with plain loops; nothing is shared with
vis_core.evaluation except the input format. Used only by the tests to cross-check the fast code.
"""

import numpy as np
from pycocotools import mask as mask_util

THRS = np.linspace(0.5, 0.95, 10)
RECS = np.linspace(0.0, 1.0, 101)
AREAS = [(0, 1e10), (0, 128**2), (128**2, 256**2), (256**2, 1e10)]
MAXDETS = [1, 10, 100]


def _decode(seg, h, w):
    if not seg:
        return None
    if isinstance(seg, list):
        return mask_util.decode(mask_util.merge(mask_util.frPyObjects(seg, h, w))).astype(bool)
    if isinstance(seg["counts"], list):
        seg = mask_util.frPyObjects(seg, *seg["size"])
    return mask_util.decode(seg).astype(bool)


def track_iou(d_masks, g_masks):
    inter = union = 0
    for d, g in zip(d_masks, g_masks):
        if d is not None and g is not None:
            if d.shape != g.shape:
                continue
            inter += int((d & g).sum())
            union += int((d | g).sum())
        elif d is not None:
            union += int(d.sum())
        elif g is not None:
            union += int(g.sum())
    return inter / union if union > 0 else 0.0


def _mean_area(areas):
    kept = [a for a in areas if a]
    return float(np.mean(kept)) if kept else 0.0


def reference_eval(gt, results):
    """Returns (stats dict of fractions, precision array (T, R, K, A, M))."""
    videos = {v["id"]: v for v in gt["videos"]}
    vid_ids = sorted(videos)
    cat_ids = sorted(c["id"] for c in gt["categories"])
    gts = {}
    for a in gt["annotations"]:
        if a["video_id"] not in videos or a["category_id"] not in cat_ids:
            continue
        v = videos[a["video_id"]]
        masks = [_decode(s, v["height"], v["width"]) for s in a["segmentations"]]
        gts.setdefault((a["video_id"], a["category_id"]), []).append(
            dict(id=a["id"], crowd=bool(a["iscrowd"]), area=_mean_area(a["areas"]), masks=masks)
        )
    dts = {}
    for pos, r in enumerate(results):
        if r["category_id"] not in cat_ids:
            continue
        v = videos[r["video_id"]]
        masks = [_decode(s, v["height"], v["width"]) for s in r["segmentations"]]
        area = _mean_area([None if m is None else int(m.sum()) for m in masks])
        dts.setdefault((r["video_id"], r["category_id"]), []).append(
            dict(score=r["score"], pos=pos, area=area, masks=masks)
        )
    T, R, K, A, M = len(THRS), len(RECS), len(cat_ids), len(AREAS), len(MAXDETS)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    for k, cat in enumerate(cat_ids):
        for a, (lo, hi) in enumerate(AREAS):
            # per video: list of (score, video rank, tp per thr, ignore per thr) in per-video order
            per_video = []
            npos = 0
            for vid in vid_ids:
                g_list = gts.get((vid, cat), [])
                d_list = sorted(dts.get((vid, cat), []), key=lambda d: (-d["score"], d["pos"]))
                d_list = d_list[:100]
                ign = [g["crowd"] or g["area"] < lo or g["area"] > hi for g in g_list]
                npos += sum(not i for i in ign)
                order = [j for j in range(len(g_list)) if not ign[j]] + [
                    j for j in range(len(g_list)) if ign[j]
                ]
                ious = [[track_iou(d["masks"], g_list[j]["masks"]) for j in order] for d in d_list]
                rows = []
                tps = np.zeros((T, len(d_list)), bool)
                igs = np.zeros((T, len(d_list)), bool)
                for t, thr in enumerate(THRS):
                    used = [False] * len(order)
                    for i, d in enumerate(d_list):
                        best, bj = thr, None
                        # regular ground truth first
                        for o, j in enumerate(order):
                            if ign[j]:
                                continue
                            if used[o] or ious[i][o] < best:
                                continue
                            best, bj = ious[i][o], o
                        if bj is None:
                            for o, j in enumerate(order):
                                if not ign[j] or (used[o] and not g_list[j]["crowd"]):
                                    continue
                                if ious[i][o] < best:
                                    continue
                                best, bj = ious[i][o], o
                        out_of_range = d["area"] < lo or d["area"] > hi
                        if bj is None:
                            igs[t, i] = out_of_range
                            continue
                        used[bj] = True
                        j = order[bj]
                        real = g_list[j]["id"] != 0
                        igs[t, i] = ign[j] or (not real and out_of_range)
                        tps[t, i] = real and not igs[t, i]
                for i, d in enumerate(d_list):
                    rows.append((d["score"], i, tps[:, i], igs[:, i]))
                per_video.append(rows)
            if npos == 0:
                continue
            for m, md in enumerate(MAXDETS):
                allrows = [r for rows in per_video for r in rows if r[1] < md]
                allrows = [r for _, r in sorted(enumerate(allrows), key=lambda x: (-x[1][0], x[0]))]
                for t in range(T):
                    tp = fp = 0
                    rc, pr = [], []
                    for r in allrows:
                        if r[3][t]:
                            rc.append(tp / npos)
                            pr.append(tp / (tp + fp + np.spacing(1)))
                            continue
                        if r[2][t]:
                            tp += 1
                        else:
                            fp += 1
                        rc.append(tp / npos)
                        pr.append(tp / (tp + fp + np.spacing(1)))
                    # ignored detections keep their place but add neither tp nor fp
                    recall[t, k, a, m] = rc[-1] if rc else 0
                    for i in range(len(pr) - 2, -1, -1):
                        pr[i] = max(pr[i], pr[i + 1])
                    for ri, rthr in enumerate(RECS):
                        idx = next((i for i, v in enumerate(rc) if v >= rthr), None)
                        precision[t, ri, k, a, m] = pr[idx] if idx is not None else 0.0

    def mean(x):
        x = x[x > -1]
        return float(np.mean(x)) if x.size else -1.0

    t50, t75 = 0, 5
    stats = {
        "AP": mean(precision[:, :, :, 0, 2]),
        "AP50": mean(precision[t50, :, :, 0, 2]),
        "AP75": mean(precision[t75, :, :, 0, 2]),
        "APs": mean(precision[:, :, :, 1, 2]),
        "APm": mean(precision[:, :, :, 2, 2]),
        "APl": mean(precision[:, :, :, 3, 2]),
        "AR1": mean(recall[:, :, 0, 0]),
        "AR10": mean(recall[:, :, 0, 1]),
        "AR100": mean(recall[:, :, 0, 2]),
    }
    return stats, precision
