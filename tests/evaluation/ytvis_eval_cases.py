"""Random YouTube-VIS ground truth and results for the evaluation tests."""

import numpy as np
from pycocotools import mask as mu


def rand_mask(rng, h, w):
    m = np.zeros((h, w), np.uint8)
    kind = rng.integers(3)
    if kind == 0:
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        y1, x1 = rng.integers(y0, h + 1), rng.integers(x0, w + 1)
        m[y0:y1, x0:x1] = 1
    elif kind == 1:
        m = (rng.random((h, w)) < rng.random() * 0.5).astype(np.uint8)
    else:
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(1, max(h, w))
        yy, xx = np.mgrid[:h, :w]
        m = (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r).astype(np.uint8)
    return m


def enc(m):
    r = mu.encode(np.asfortranarray(m))
    r["counts"] = r["counts"].decode()
    return r


def perturb(rng, m):
    m = m.copy()
    h, w = m.shape
    k = rng.integers(0, 4)
    if k == 0:
        return m
    if k == 1:
        return np.roll(m, rng.integers(-3, 4), axis=int(rng.integers(2)))
    if k == 2:
        flip = rng.random((h, w)) < 0.1
        return (m ^ flip).astype(np.uint8)
    return rand_mask(rng, h, w)


def make_case(seed, n_videos=None, n_cats=None, tie_scores=None):
    rng = np.random.default_rng(seed)
    n_videos = n_videos or int(rng.integers(1, 6))
    n_cats = n_cats or int(rng.integers(1, 5))
    scale = rng.choice([1, 4, 16, 40])  # to hit small/medium/large area ranges (128^2 = 16384)
    videos, anns, res = [], [], []
    cat_ids = sorted(rng.choice(np.arange(1, 20), n_cats, replace=False).tolist())
    ann_id = 1
    vid_ids = rng.choice(np.arange(1, 100), n_videos, replace=False).tolist()
    tie = tie_scores if tie_scores is not None else rng.random() < 0.3
    for vid in vid_ids:
        h = int(rng.integers(4, 12) * scale)
        w = int(rng.integers(4, 12) * scale)
        T = int(rng.integers(1, 6))
        videos.append(
            {
                "id": vid,
                "height": h,
                "width": w,
                "length": T,
                "file_names": [f"{vid}/{t}.jpg" for t in range(T)],
            }
        )
        gts = []
        for _ in range(int(rng.integers(0, 5))):
            masks = []
            for t in range(T):
                masks.append(None if rng.random() < 0.25 else rand_mask(rng, h, w))
            if rng.random() < 0.1:
                masks = [np.zeros((h, w), np.uint8) if m is None else m for m in masks]
            cat = int(rng.choice(cat_ids))
            segs = [None if m is None else enc(m) for m in masks]
            areas = [None if m is None else int(m.sum()) for m in masks]
            anns.append(
                {
                    "id": ann_id,
                    "video_id": vid,
                    "category_id": cat,
                    "iscrowd": int(rng.random() < 0.15),
                    "segmentations": segs,
                    "areas": areas,
                    "bboxes": [None] * T,
                    "height": h,
                    "width": w,
                    "length": T,
                }
            )
            ann_id += 1
            gts.append((cat, masks))
        for _ in range(int(rng.integers(0, 8))):
            if gts and rng.random() < 0.7:
                cat, base = gts[int(rng.integers(len(gts)))]
                if rng.random() < 0.2:
                    cat = int(rng.choice(cat_ids))
                masks = [
                    (
                        None
                        if (m is None and rng.random() < 0.7)
                        else perturb(rng, m if m is not None else rand_mask(rng, h, w))
                    )
                    for m in base
                ]
            else:
                cat = int(rng.choice(cat_ids))
                masks = [None if rng.random() < 0.2 else rand_mask(rng, h, w) for _ in range(T)]
            score = float(rng.integers(1, 4) / 4) if tie else float(rng.random())
            res.append(
                {
                    "video_id": vid,
                    "category_id": cat,
                    "score": score,
                    "segmentations": [None if m is None else enc(m) for m in masks],
                }
            )
    rng.shuffle(res)
    gt = {
        "videos": videos,
        "categories": [{"id": c, "name": f"c{c}"} for c in cat_ids],
        "annotations": anns,
        "info": {},
        "licenses": [],
    }
    return gt, res
