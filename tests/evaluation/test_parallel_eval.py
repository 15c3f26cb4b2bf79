"""Mask areas and IoUs shared with a forked worker: the same numbers as in one process."""

import copy
import json
import os

import numpy as np
import pytest
from ytvis_eval_cases import make_case

import vis_core.evaluation.ytvis_eval as ytvis_eval
from vis_core.evaluation import YTVISGroundTruth, evaluate, evaluate_results, prepare_predictions
from vis_core.evaluation.forked import can_fork, run_forked, wait_for_workers

pytestmark = pytest.mark.skipif(not can_fork(), reason="needs os.fork")


def _assert_same(a, b):
    for name in ("precision", "recall", "scores"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.stats == b.stats and a.per_category == b.per_category


@pytest.mark.parametrize("seed", range(12))
def test_forked_worker_gives_the_serial_numbers(seed, monkeypatch):
    gt, res = make_case(3000 + seed, n_videos=int(np.random.default_rng(seed).integers(2, 7)))
    if seed % 3 == 0:  # track areas computed from the masks, by the process of each video
        for a in gt["annotations"]:
            del a["areas"]
    serial = evaluate_results(copy.deepcopy(res), copy.deepcopy(gt), workers=1)
    monkeypatch.setattr(ytvis_eval, "_MIN_FRAMES_TO_FORK", 0)  # fork even for tiny cases
    forked = evaluate_results(copy.deepcopy(res), copy.deepcopy(gt), workers=2)
    _assert_same(serial, forked)


def test_areas_of_both_parts_are_kept(monkeypatch):
    gt_json, res = make_case(7, n_videos=5)
    gt = YTVISGroundTruth(gt_json)
    expected = prepare_predictions(copy.deepcopy(res), gt).avg_areas
    monkeypatch.setattr(ytvis_eval, "_MIN_FRAMES_TO_FORK", 0)
    preds = prepare_predictions(copy.deepcopy(res), gt)
    evaluate(gt, preds, workers=2)
    assert not preds.has_pending_areas()
    np.testing.assert_array_equal(preds.avg_areas, expected)


def test_failed_worker_part_is_computed_in_the_parent(monkeypatch):
    gt, res = make_case(21, n_videos=5)
    serial = evaluate_results(copy.deepcopy(res), copy.deepcopy(gt), workers=1)

    def child_dies(child, parent):
        def crash():
            raise RuntimeError("worker lost")

        return run_forked(crash, parent)

    monkeypatch.setattr(ytvis_eval, "_MIN_FRAMES_TO_FORK", 0)
    monkeypatch.setattr(ytvis_eval, "run_forked", child_dies)
    _assert_same(serial, evaluate_results(copy.deepcopy(res), copy.deepcopy(gt), workers=2))


def test_run_forked_returns_both_values(monkeypatch):
    pids, fork = [], os.fork

    def recording_fork():
        pid = fork()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", recording_fork)
    assert run_forked(lambda: np.arange(3), lambda: "parent")[0] is True
    ok, child, parent = run_forked(lambda: {"a": np.ones(2)}, lambda: 5)
    assert ok and parent == 5 and child["a"].tolist() == [1.0, 1.0]
    wait_for_workers()
    assert len(pids) == 2
    for pid in pids:  # both children have been reaped (other tests' children may still live)
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


@pytest.mark.parametrize("which", [0, -1])  # a result of the first or of the last video
@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda r: r.update(segmentations=r["segmentations"] + [None]), "one entry per frame"),
        (lambda r: r.update(segmentations=[{"size": [1, 1], "counts": "1"}]
                            * len(r["segmentations"])), "RLE of size"),  # fmt: skip
    ],
)
def test_bad_frames_found_by_either_process_are_named(tmp_path, monkeypatch, which, corrupt,
                                                      message):  # fmt: skip
    from vis_core.evaluation import load_predictions

    gt_json, res = make_case(5, n_videos=4)
    vids = sorted({r["video_id"] for r in res})
    index = next(i for i, r in enumerate(res) if r["video_id"] == vids[which])
    corrupt(res[index])
    path = tmp_path / "results.json"
    path.write_text(json.dumps(res))
    gt = YTVISGroundTruth(gt_json)
    monkeypatch.setattr(ytvis_eval, "_MIN_FRAMES_TO_FORK", 0)
    preds = load_predictions(str(path), gt)  # frames are checked when decoded, by either process
    with pytest.raises(ValueError, match=f"Result #{index} .*{message}"):
        evaluate(gt, preds, workers=2)


def test_lazily_decoded_frames_equal_the_file(tmp_path):
    from vis_core.evaluation import load_predictions

    gt_json, res = make_case(9, n_videos=3)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(res))
    preds = load_predictions(str(path), YTVISGroundTruth(gt_json))
    as_json = json.loads  # sizes come back as tuples
    first = preds.frame_lists(np.array([1]))
    assert as_json(json.dumps(first)) == [res[1]["segmentations"]]
    assert as_json(json.dumps(preds.segmentations)) == [r["segmentations"] for r in res]
