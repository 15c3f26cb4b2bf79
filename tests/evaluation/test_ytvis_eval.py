"""Temporal AP/AR: hand-computed cases, properties, and agreement with a slow reference."""

import copy
import logging

import numpy as np
import pytest
from pycocotools import mask as mask_util
from ytvis_eval_cases import enc, make_case
from ytvis_eval_reference import reference_eval, track_iou

from vis_core.evaluation import (
    YTVISGroundTruth,
    evaluate_results,
    prepare_predictions,
)
from vis_core.evaluation.ytvis_eval import video_track_ious

H, W = 10, 10


def box(y0, y1, x0, x1, h=H, w=W):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def gt_json(tracks, length, categories=(1,), h=H, w=W, video_ids=(1,)):
    """tracks: list of (video_id, category_id, masks, iscrowd)."""
    anns = []
    for i, (vid, cat, masks, crowd) in enumerate(tracks):
        anns.append(
            {
                "id": i + 1,
                "video_id": vid,
                "category_id": cat,
                "iscrowd": crowd,
                "segmentations": [None if m is None else enc(m) for m in masks],
                "areas": [None if m is None else int(m.sum()) for m in masks],
            }
        )
    return {
        "videos": [{"id": v, "height": h, "width": w, "length": length} for v in video_ids],
        "categories": [{"id": c, "name": f"cat{c}"} for c in categories],
        "annotations": anns,
    }


def result(vid, cat, score, masks):
    return {
        "video_id": vid,
        "category_id": cat,
        "score": score,
        "segmentations": [None if m is None else enc(m) for m in masks],
    }


def test_iou_hand_computed_partial_overlap_and_absent_frame(rle_backend):
    # frame 0: gt 4x4=16 px, det shifted by 2 columns: inter 8, union 24
    # frame 1: gt absent, det 4 px: union += 4
    # frame 2: both absent: nothing; frame 3: gt 9 px, det empty RLE (counts like null): union += 9
    g = [box(0, 4, 0, 4), None, None, box(5, 8, 5, 8)]
    d = [box(0, 4, 2, 6), box(0, 2, 0, 2), None, np.zeros((H, W), np.uint8)]
    gt = YTVISGroundTruth(gt_json([(1, 1, g, 0)], 4))
    preds = prepare_predictions([result(1, 1, 0.9, d)], gt)
    ious = video_track_ious(
        preds.segmentations, preds.frame_areas(np.array([0])), gt.tracks[1], H, W
    )
    assert ious.shape == (1, 1)
    assert ious[0, 0] == pytest.approx(8 / (24 + 4 + 9), abs=1e-15)
    # ratio of sums, not the mean of per-frame IoUs
    assert ious[0, 0] != pytest.approx(np.mean([8 / 24, 0, 0]))


def test_iou_ratio_decides_match_at_thresholds():
    # One track, IoU = 8/24 + 16/16 over two frames = 24/40 = 0.6: a match at 0.50..0.60 only.
    g = [box(0, 4, 0, 4), box(0, 4, 0, 4)]
    d = [box(0, 4, 2, 6), box(0, 4, 0, 4)]
    res = evaluate_results([result(1, 1, 0.5, d)], gt_json([(1, 1, g, 0)], 2))
    assert res.stats["AP50"] == pytest.approx(1.0)
    assert res.stats["AP75"] == pytest.approx(0.0)
    assert res.stats["AP"] == pytest.approx(0.3)  # 3 of 10 thresholds (0.50, 0.55, 0.60)
    assert res.stats["AR1"] == pytest.approx(0.3)


def test_perfect_predictions_give_100_and_permutation_does_not_matter():
    gt, _ = make_case(3, n_videos=4, n_cats=3)
    # a track with no pixel in any frame can never be found (its IoU is 0): leave those out
    gt["annotations"] = [a for a in gt["annotations"] if any(a["areas"])]
    assert len(gt["annotations"]) >= 3
    videos = {v["id"]: v for v in gt["videos"]}
    perfect = []
    for i, a in enumerate(a for a in gt["annotations"] if not a["iscrowd"]):
        v = videos[a["video_id"]]
        segs = [s if s else None for s in a["segmentations"]]
        assert len(segs) == v["length"]
        perfect.append({"video_id": a["video_id"], "category_id": a["category_id"],
                        "score": 1.0 - i * 1e-3, "segmentations": segs})  # fmt: skip
    res = evaluate_results(copy.deepcopy(perfect), gt)
    for key in ("AP", "AP50", "AP75", "AR10", "AR100"):  # AR1 < 1 where a video has 2 objects
        assert res.stats[key] == pytest.approx(1.0), key
    shuffled = copy.deepcopy(perfect)
    np.random.default_rng(0).shuffle(shuffled)
    res2 = evaluate_results(shuffled, gt)
    assert res2.stats == res.stats


def test_empty_predictions_give_zero_and_undefined_categories(caplog):
    g = [box(0, 4, 0, 4)]
    gt = gt_json([(1, 1, g, 0)], 1, categories=(1, 2))
    with caplog.at_level(logging.WARNING):
        res = evaluate_results([], gt)
    assert "no predictions" in caplog.text
    assert res.stats["AP"] == 0.0 and res.stats["AR100"] == 0.0
    pc = res.per_category_percent()
    assert pc["cat1"] == 0.0 and np.isnan(pc["cat2"])  # no ground truth: left out, NaN


def test_false_positives_in_category_without_gt_cost_nothing():
    g = [box(0, 4, 0, 4)]
    gt = gt_json([(1, 1, g, 0)], 1, categories=(1, 2))
    hit = result(1, 1, 0.5, g)
    base = evaluate_results([hit], gt).stats
    noisy = evaluate_results([hit, result(1, 2, 0.99, [box(5, 9, 5, 9)])], gt).stats
    assert base["AP"] == noisy["AP"] == pytest.approx(1.0)


def test_per_category_ap():
    g1, g2 = [box(0, 4, 0, 4)], [box(5, 9, 5, 9)]
    gt = gt_json([(1, 1, g1, 0), (1, 2, g2, 0)], 1, categories=(1, 2))
    # cat 1 found; cat 2 predicted in the wrong place
    res = evaluate_results([result(1, 1, 0.9, g1), result(1, 2, 0.9, g1)], gt)
    pc = res.per_category_percent()
    assert pc["cat1"] == pytest.approx(100.0) and pc["cat2"] == pytest.approx(0.0)
    assert res.stats["AP"] == pytest.approx(0.5)


def test_ties_in_scores_are_ordered_by_video_then_file_position():
    # Two videos, one gt each; equal scores. Video 1's detection is a false positive, video 2's a
    # hit. Ties are broken by video id: FP first, so precision at recall 0.5 is 0.5.
    g = [box(0, 4, 0, 4)]
    gt = gt_json([(1, 1, g, 0), (2, 1, g, 0)], 1, video_ids=(1, 2))
    miss = result(1, 1, 0.5, [box(6, 9, 6, 9)])
    hit = result(2, 1, 0.5, g)
    a = evaluate_results([hit, miss], gt)
    b = evaluate_results([miss, hit], gt)
    assert a.stats == b.stats  # the file order across videos does not matter
    assert a.precision[0, 1, 0, 0, 2] == pytest.approx(0.5)  # FP of video 1 comes first
    ref, _ = reference_eval(gt, [hit, miss])
    assert a.stats["AP"] == pytest.approx(ref["AP"], abs=1e-12)


def test_crowd_absorbs_detections_which_are_ignored(rle_backend):
    person = [box(0, 4, 0, 4)]
    crowd = [box(5, 10, 0, 10)]
    gt = gt_json([(1, 1, person, 0), (1, 1, crowd, 1)], 1)
    hits = [result(1, 1, 0.4, person)]
    on_crowd = [result(1, 1, 0.9, crowd), result(1, 1, 0.8, crowd)]  # one crowd absorbs both
    base = evaluate_results(copy.deepcopy(hits), gt).stats
    with_crowd = evaluate_results(copy.deepcopy(hits + on_crowd), gt).stats
    assert with_crowd["AP"] == base["AP"] == pytest.approx(1.0)  # neither TP nor FP
    # Without the crowd annotation the same detections are false positives ranked first.
    no_crowd = gt_json([(1, 1, person, 0)], 1)
    assert evaluate_results(hits + on_crowd, no_crowd).stats["AP"] < 1.0


def test_area_ranges_inclusive_bounds():
    # A track of exactly 128^2 pixels counts as small and as medium.
    h, w = 130, 130
    m = np.zeros((h, w), np.uint8)
    m[:128, :128] = 1
    gt = gt_json([(1, 1, [m], 0)], 1, h=h, w=w)
    res = evaluate_results([result(1, 1, 0.9, [m])], gt).stats
    assert res["APs"] == pytest.approx(1.0) and res["APm"] == pytest.approx(1.0)
    assert res["APl"] == -1.0


def test_maxdets_per_video_and_category():
    g = [box(0, 4, 0, 4)]
    gt = gt_json([(1, 1, g, 0)], 1)
    # the top detection is a miss, the second a hit: AR1 = 0, AR10 = 1
    res = evaluate_results([result(1, 1, 0.9, [box(6, 9, 6, 9)]), result(1, 1, 0.8, g)], gt)
    assert res.stats["AR1"] == 0.0 and res.stats["AR10"] == pytest.approx(1.0)


def test_mixed_rle_sizes_in_ground_truth_add_nothing(rle_backend):
    # A gt frame whose RLE has another size than the video: that frame adds 0 to both sums.
    g = [box(0, 4, 0, 4), box(0, 4, 0, 4, h=H + 2, w=W)]
    gt = YTVISGroundTruth(gt_json([(1, 1, g, 0)], 2))
    d = [box(0, 4, 0, 4), box(0, 4, 0, 4)]
    preds = prepare_predictions([result(1, 1, 0.9, d)], gt)
    ious = video_track_ious(
        preds.segmentations, preds.frame_areas(np.array([0])), gt.tracks[1], H, W
    )
    assert ious[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(40))
def test_agrees_with_slow_reference_on_random_cases(seed, rle_backend):
    gt, res = make_case(1000 + seed)
    ref_stats, ref_prec = reference_eval(gt, res)
    fast = evaluate_results(copy.deepcopy(res), copy.deepcopy(gt))
    for k, v in ref_stats.items():
        assert fast.stats[k] == pytest.approx(v, abs=1e-9), k
    np.testing.assert_allclose(fast.precision, ref_prec, atol=1e-9)


def test_reference_track_iou_matches_fast_iou_on_random_tracks(rle_backend):
    rng = np.random.default_rng(0)
    for _ in range(20):
        t = int(rng.integers(1, 5))
        d = [None if rng.random() < 0.3 else (rng.random((H, W)) < 0.5).astype(np.uint8)
             for _ in range(t)]  # fmt: skip
        g = [None if rng.random() < 0.3 else (rng.random((H, W)) < 0.5).astype(np.uint8)
             for _ in range(t)]  # fmt: skip
        gt = YTVISGroundTruth(gt_json([(1, 1, g, 0)], t))
        preds = prepare_predictions([result(1, 1, 0.9, d)], gt)
        fast = video_track_ious(
            preds.segmentations, preds.frame_areas(np.array([0])), gt.tracks[1], H, W
        )[0, 0]
        as_bool = [None if m is None else m.astype(bool) for m in d]
        g_bool = [None if m is None else m.astype(bool) for m in g]
        assert fast == track_iou(as_bool, g_bool)


def test_uncompressed_rle_and_polygon_ground_truth_accepted(rle_backend):
    m = box(2, 6, 2, 6)
    gt = gt_json([(1, 1, [m], 0)], 1)
    gt["annotations"][0]["segmentations"] = [[[2, 2, 6, 2, 6, 6, 2, 6]]]  # polygon
    unc = {"size": [H, W], "counts": [22, 4, 6, 4, 6, 4, 6, 4, 44]}  # column-major 4x4 at (2,2)
    assert int(mask_util.area(mask_util.frPyObjects(unc, H, W))) == 16
    res = evaluate_results(
        [{"video_id": 1, "category_id": 1, "score": 1.0, "segmentations": [unc]}], gt
    )
    assert res.stats["AP50"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(8))
def test_iou_windows_and_pruning_do_not_change_results(seed, monkeypatch, rle_backend):
    # One frame per pycocotools call (many windows), and no pruning below 0.5: the same numbers.
    import vis_core.evaluation.ytvis_eval as ytvis_eval

    gt, res = make_case(2000 + seed, n_videos=3)
    base = evaluate_results(copy.deepcopy(res), copy.deepcopy(gt))
    monkeypatch.setattr(ytvis_eval, "_PAIRS_PER_CALL", 1)
    windows = evaluate_results(copy.deepcopy(res), copy.deepcopy(gt))
    np.testing.assert_array_equal(windows.precision, base.precision)
    g = YTVISGroundTruth(copy.deepcopy(gt))
    preds = prepare_predictions(copy.deepcopy(res), g)
    for vid, tracks in g.tracks.items():
        idx = np.flatnonzero(preds.video_ids == vid)
        v = g.videos[vid]
        args = ([preds.segmentations[i] for i in idx], preds.frame_areas(idx), tracks,
                v["height"], v["width"])  # fmt: skip
        full = video_track_ious(*args)
        cats = preds.category_ids[idx]
        pruned = video_track_ious(*args, det_categories=cats, min_iou=0.5)
        same_cat = cats[:, None] == np.array([t.category_id for t in tracks])[None, :]
        keep = same_cat & (full >= 0.5)
        np.testing.assert_array_equal(pruned[keep], full[keep])  # exact where it can match
        assert (pruned[~same_cat] == 0).all() and (pruned[same_cat] <= full[same_cat]).all()


def test_ground_truth_without_areas_uses_mask_areas(caplog):
    gt, res = make_case(11, n_videos=3, n_cats=2)
    base = evaluate_results(copy.deepcopy(res), copy.deepcopy(gt)).stats
    no_areas = copy.deepcopy(gt)
    for a in no_areas["annotations"]:
        del a["areas"]  # the case's areas are the masks' own areas
    with caplog.at_level(logging.WARNING):
        assert evaluate_results(copy.deepcopy(res), no_areas).stats == base
    assert "computed from the masks" in caplog.text
