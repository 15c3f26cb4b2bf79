"""HOTA through trackeval: perfect predictions, a swapped identity, the CLI, trackeval missing."""

import json
import sys

import numpy as np
import pytest
from ytvis_eval_cases import enc

from vis_core.evaluation import YTVISGroundTruth, prepare_predictions
from vis_core.evaluation.__main__ import main as cli_main
from vis_core.evaluation.hota import evaluate_hota

H, W, T = 12, 12, 4


def box(y0, x0, size=4):
    m = np.zeros((H, W), np.uint8)
    m[y0 : y0 + size, x0 : x0 + size] = 1
    return m


# Two objects of one category that stay in place over T frames, and one of another category.
OBJ_A = [box(0, 0)] * T
OBJ_B = [box(6, 6)] * T
OBJ_C = [box(0, 7, 3)] * T


def gt_json():
    anns = [
        {"id": i + 1, "video_id": 1, "category_id": cat, "iscrowd": 0,
         "segmentations": [enc(m) for m in masks], "areas": [int(m.sum()) for m in masks]}
        for i, (cat, masks) in enumerate([(1, OBJ_A), (1, OBJ_B), (2, OBJ_C)])
    ]  # fmt: skip
    return {
        "videos": [{"id": 1, "height": H, "width": W, "length": T}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": anns,
    }


def result(cat, masks, score=0.9):
    return {"video_id": 1, "category_id": cat, "score": score,
            "segmentations": [enc(m) for m in masks]}  # fmt: skip


def _hota(results):
    gt = YTVISGroundTruth(gt_json())
    return evaluate_hota(gt, prepare_predictions(results, gt))


def test_perfect_predictions_give_hota_one():
    pytest.importorskip("trackeval")
    hota = _hota([result(1, OBJ_A), result(1, OBJ_B), result(2, OBJ_C)])
    for key in ("HOTA", "DetA", "AssA", "LocA"):
        assert hota[key] == pytest.approx(1.0), key
    assert hota["per_category"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_swapped_identity_lowers_association_only():
    pytest.importorskip("trackeval")
    # Each predicted track follows object A for two frames and object B for the other two.
    half = T // 2
    swapped = [result(1, OBJ_A[:half] + OBJ_B[half:]), result(1, OBJ_B[:half] + OBJ_A[half:])]
    hota = _hota(swapped + [result(2, OBJ_C)])
    # Category a: every detection is right (DetA 1), each (gt, track) pair shares 2 of 4 frames:
    # AssA = 2 / (2 + 2 + 2) = 1/3, HOTA = sqrt(DetA * AssA) at every localisation threshold.
    assert hota["per_category"]["a"] == pytest.approx(np.sqrt(1 / 3))
    assert hota["per_category"]["b"] == pytest.approx(1.0)
    assert hota["DetA"] == pytest.approx(1.0)
    assert hota["AssA"] == pytest.approx((1 / 3 + 1) / 2)
    assert hota["HOTA"] == pytest.approx((np.sqrt(1 / 3) + 1) / 2)


def test_identity_switches_count_each_change_of_predicted_track():
    pytest.importorskip("trackeval")
    gt = YTVISGroundTruth(gt_json())
    perfect = [result(1, OBJ_A), result(1, OBJ_B), result(2, OBJ_C)]
    assert evaluate_hota(gt, prepare_predictions(perfect, gt), id_switches=True)["IDSW"] == 0
    half = T // 2
    swapped = [result(1, OBJ_A[:half] + OBJ_B[half:]), result(1, OBJ_B[:half] + OBJ_A[half:])]
    out = evaluate_hota(gt, prepare_predictions(swapped + [result(2, OBJ_C)], gt), id_switches=True)
    assert out["IDSW"] == 2  # objects A and B each change track once
    assert "IDSW" not in evaluate_hota(gt, prepare_predictions(perfect, gt))


def test_false_positive_track_lowers_detection_and_score_threshold_drops_it():
    pytest.importorskip("trackeval")
    results = [result(1, OBJ_A), result(1, OBJ_B), result(2, OBJ_C), result(2, OBJ_A, 0.1)]
    gt = YTVISGroundTruth(gt_json())
    preds = prepare_predictions(results, gt)
    hota = evaluate_hota(gt, preds)
    assert hota["per_category"]["b"] == pytest.approx(np.sqrt(0.5))  # DetA = 4 / (4 + 4), AssA 1
    assert evaluate_hota(gt, preds, score_threshold=0.5)["HOTA"] == pytest.approx(1.0)


def test_evaluator_reports_hota_when_asked(tmp_path):
    pytest.importorskip("trackeval")
    import torch
    from test_eval_cli_and_evaluator import _register_tiny

    from vis_core.evaluation import YTVISEvaluator

    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt_json()))
    _register_tiny("test_hota_tiny", str(gt_path), gt_json())
    masks = np.stack([np.stack(OBJ_A), np.stack(OBJ_B), np.stack(OBJ_C)]).astype(bool)
    out = {"pred_scores": torch.tensor([0.9, 0.8, 0.7]), "pred_classes": torch.tensor([0, 0, 1]),
           "pred_masks": torch.from_numpy(masks)}  # fmt: skip
    inp = {"video_id": 1, "height": H, "width": W, "length": T}
    for hota in (False, True):
        evaluator = YTVISEvaluator("test_hota_tiny", distributed=False, hota=hota)
        evaluator.reset()
        evaluator.process([inp], [out])
        metrics = evaluator.evaluate()
        assert metrics["segm"]["AP"] == pytest.approx(100.0)
        assert ("hota" in metrics) == hota
    assert metrics["hota"]["HOTA"] == pytest.approx(100.0)


def test_cli_hota_in_table_and_json(tmp_path, capsys):
    pytest.importorskip("trackeval")
    gt_path, res_path, out = tmp_path / "gt.json", tmp_path / "res.json", tmp_path / "m.json"
    gt_path.write_text(json.dumps(gt_json()))
    res_path.write_text(json.dumps([result(1, OBJ_A), result(1, OBJ_B), result(2, OBJ_C)]))
    args = ["--gt", str(gt_path), "--pred", str(res_path), "--json-out", str(out)]
    assert cli_main(args) == 0
    assert "hota" not in json.loads(out.read_text())  # only when asked for
    assert "HOTA" not in capsys.readouterr().out
    assert cli_main(args + ["--hota"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["hota"]["HOTA"] == pytest.approx(100.0)
    assert metrics["hota"]["per_category"] == {"a": pytest.approx(100.0), "b": pytest.approx(100.0)}
    assert metrics["AP"] == pytest.approx(100.0)
    assert "HOTA" in capsys.readouterr().out


def test_missing_trackeval_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "trackeval", None)  # makes `import trackeval` fail
    monkeypatch.setitem(sys.modules, "trackeval.metrics", None)
    gt = YTVISGroundTruth(gt_json())
    with pytest.raises(ImportError, match="pip install --no-deps .trackeval==1.0.0."):
        evaluate_hota(gt, prepare_predictions([result(1, OBJ_A)], gt))
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(gt_json()))
    res_path.write_text(json.dumps([result(1, OBJ_A)]))
    out = tmp_path / "m.json"
    code = cli_main(
        ["--gt", str(gt_path), "--pred", str(res_path), "--hota", "--json-out", str(out)]
    )
    assert code == 3
    assert "pip install --no-deps 'trackeval==1.0.0'" in capsys.readouterr().err
    assert not out.exists()
