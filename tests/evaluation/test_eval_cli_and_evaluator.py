"""results.json I/O, bad input, the CLI, YTVISEvaluator (and their agreement), the split CLI."""

import copy
import json
import os
import zipfile

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util
from ytvis_eval_cases import make_case

from vis_core.evaluation import encode_track_masks, evaluate_results
from vis_core.evaluation.__main__ import main as cli_main


@pytest.fixture
def case(tmp_path):
    gt, res = make_case(7, n_videos=3, n_cats=3)
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(res))
    return gt, res, str(gt_path), str(res_path)


def test_cli_writes_metrics_and_plots(case, tmp_path, capsys):
    gt, res, gt_path, res_path = case
    out = tmp_path / "m.json"
    assert cli_main(["--gt", gt_path, "--pred", res_path, "--json-out", str(out),
                     "--plots", str(tmp_path / "plots")]) == 0  # fmt: skip
    metrics = json.loads(out.read_text())
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "per_category"):
        assert key in metrics
    direct = evaluate_results(copy.deepcopy(res), gt)
    assert metrics["AP"] == pytest.approx(direct.stats["AP"] * 100)
    assert set(metrics["per_category"]) == {c["name"] for c in gt["categories"]}
    assert sorted(os.listdir(tmp_path / "plots")) == ["per_category_ap.png", "pr_curves.png"]
    assert "AP50" in capsys.readouterr().out


def _bad(res, i, **changes):
    res = copy.deepcopy(res)
    res[i].update(changes)
    return res


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r, gt: _bad(r, 0, video_id=99999), "unknown video id"),
        (lambda r, gt: _bad(r, 0, category_id=99999), "unknown category"),
        (lambda r, gt: _bad(r, 0, segmentations=r[0]["segmentations"][:-1] or [None, None]),
         "one entry per frame"),  # fmt: skip
        (lambda r, gt: _bad(r, 0, segmentations=[{"size": [1, 1], "counts": "1"}]
                            * len(r[0]["segmentations"])), "RLE of size"),  # fmt: skip
        (lambda r, gt: _bad(r, 0, score="high"), "score must be a finite number"),
        (lambda r, gt: [{k: v for k, v in r[0].items() if k != "score"}], "missing key 'score'"),
    ],
)
def test_bad_results_are_rejected_with_clear_error_and_no_output(case, tmp_path, capsys,
                                                                  mutate, message):  # fmt: skip
    gt, res, gt_path, _ = case
    bad_path = tmp_path / "bad.json"
    bad_path.write_text(json.dumps(mutate(res, gt)))
    out = tmp_path / "never.json"
    assert cli_main(["--gt", gt_path, "--pred", str(bad_path), "--json-out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Result #0" in err
    assert not out.exists()


def test_nan_score_in_memory_is_rejected(case):
    gt, res, _, _ = case
    with pytest.raises(ValueError, match="Result #0 .*score must be a finite number"):
        evaluate_results(_bad(res, 0, score=float("nan")), gt)


def test_not_json_is_rejected(case, tmp_path, capsys):
    _, _, gt_path, _ = case
    p = tmp_path / "results.json"
    p.write_text("{not json")
    assert cli_main(["--gt", gt_path, "--pred", str(p), "--json-out", str(tmp_path / "x")]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_encode_track_masks_roundtrip_and_null_for_empty():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 4, 8, 6)) < 0.3
    masks[1, 2] = False
    rles = encode_track_masks(torch.from_numpy(masks))
    assert rles[1][2] is None
    for i in range(3):
        for t in range(4):
            if rles[i][t] is not None:
                np.testing.assert_array_equal(
                    mask_util.decode(rles[i][t]).astype(bool), masks[i, t]
                )


def _register_tiny(name, gt_path, gt):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    cats = sorted(c["id"] for c in gt["categories"])
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(
        json_file=gt_path, thing_classes=[f"c{c}" for c in cats], evaluator_type="ytvis",
        thing_dataset_id_to_contiguous_id={c: i for i, c in enumerate(cats)},
    )  # fmt: skip
    return {i: c for i, c in enumerate(cats)}


def test_evaluator_agrees_with_cli(case, tmp_path):
    from vis_core.evaluation import YTVISEvaluator

    gt, res, gt_path, _ = case
    to_dataset = _register_tiny("test_ytvis_eval_tiny", gt_path, gt)
    to_contig = {v: k for k, v in to_dataset.items()}
    videos = {v["id"]: v for v in gt["videos"]}
    evaluator = YTVISEvaluator("test_ytvis_eval_tiny", output_dir=str(tmp_path / "out"))
    evaluator.reset()
    for n, vid in enumerate(sorted(videos)):
        v = videos[vid]
        mine = [r for r in res if r["video_id"] == vid]
        inp = {"video_id": vid, "height": v["height"], "width": v["width"], "length": v["length"]}
        out = {
            "pred_scores": torch.tensor([r["score"] for r in mine], dtype=torch.float32),
            "pred_classes": torch.tensor([to_contig[r["category_id"]] for r in mine]),
        }
        if n % 2 == 0:  # dense masks
            dense = np.zeros((len(mine), v["length"], v["height"], v["width"]), bool)
            for i, r in enumerate(mine):
                for t, s in enumerate(r["segmentations"]):
                    if s is not None:
                        dense[i, t] = mask_util.decode(s).astype(bool)
            out["pred_masks"] = torch.from_numpy(dense)
        else:  # streamed RLEs
            out["pred_mask_rles"] = [r["segmentations"] for r in mine]
        evaluator.process([inp], [out])
    metrics = evaluator.evaluate()["segm"]
    written = tmp_path / "out" / "results.json"
    with zipfile.ZipFile(tmp_path / "out" / "results.zip") as zf:
        assert zf.namelist() == ["results.json"]
        assert json.loads(zf.read("results.json")) == json.loads(written.read_text())
    saved = json.loads(written.read_text())
    assert len(saved) == len(res)
    assert all(s is None or mask_util.area(s) > 0 for r in saved for s in r["segmentations"])
    cli_out = tmp_path / "cli.json"
    assert cli_main(["--gt", gt_path, "--pred", str(written), "--json-out", str(cli_out)]) == 0
    cli = json.loads(cli_out.read_text())
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"):
        if cli[key] is None:
            assert np.isnan(metrics[key])
        else:
            assert metrics[key] == pytest.approx(cli[key], abs=1e-9), key
    # scores went through float32 in the model output; the metrics equal the original file's
    direct = evaluate_results(copy.deepcopy(res), gt).metrics_percent()
    assert metrics["AP"] == pytest.approx(direct["AP"], abs=1e-9)


def test_evaluator_refuses_invalid_results_before_writing(case, tmp_path):
    from vis_core.evaluation import YTVISEvaluator

    gt, res, gt_path, _ = case
    _register_tiny("test_ytvis_eval_nan", gt_path, gt)
    v = gt["videos"][0]
    evaluator = YTVISEvaluator("test_ytvis_eval_nan", output_dir=str(tmp_path / "out"))
    inp = {"video_id": v["id"], "height": v["height"], "width": v["width"], "length": v["length"]}
    masks = torch.zeros(1, v["length"], v["height"], v["width"], dtype=torch.bool)
    masks[0, :, :2, :2] = True
    out = {"pred_scores": torch.tensor([float("nan")]), "pred_classes": torch.tensor([0])}
    evaluator.process([inp], [dict(out, pred_masks=masks)])
    with pytest.raises(ValueError, match=r"invalid, so no results.json was written.*finite number"):
        evaluator.evaluate()
    assert not os.path.exists(tmp_path / "out" / "results.json")


def test_split_cli_disjoint_by_video(case, tmp_path):
    from vis_core.data.split import main as split_main

    gt, _, gt_path, _ = case
    assert split_main(["--json", gt_path, "--fraction", "0.34", "--seed", "1",
                       "--out-dir", str(tmp_path / "s")]) == 0  # fmt: skip
    tr = json.loads((tmp_path / "s" / "gt_sub_train.json").read_text())
    va = json.loads((tmp_path / "s" / "gt_sub_val.json").read_text())
    tr_ids, va_ids = {v["id"] for v in tr["videos"]}, {v["id"] for v in va["videos"]}
    assert tr_ids.isdisjoint(va_ids) and tr_ids | va_ids == {v["id"] for v in gt["videos"]}
    assert len(va_ids) == 1
    assert tr["categories"] == va["categories"] == gt["categories"]
    assert all(a["video_id"] in va_ids for a in va["annotations"])
    assert len(tr["annotations"]) + len(va["annotations"]) == len(gt["annotations"])
    assert split_main(["--json", gt_path, "--fraction", "1.5"]) == 2


def test_load_predictions_typed_generic_and_without_msgspec_agree(case, tmp_path, monkeypatch):
    import vis_core.evaluation.results as results_mod
    from vis_core.evaluation import YTVISGroundTruth, evaluate, load_predictions

    gt, res, gt_path, res_path = case
    g = YTVISGroundTruth.from_json(gt_path)
    typed = evaluate(g, load_predictions(res_path, g)).stats
    assert typed == evaluate_results(copy.deepcopy(res), gt).stats
    # An uncompressed RLE does not fit the typed decoder: the generic path takes the file.
    unc = copy.deepcopy(res)
    i, f = next((i, f) for i, r in enumerate(unc) for f, s in enumerate(r["segmentations"]) if s)
    dense = mask_util.decode(unc[i]["segmentations"][f])
    runs, prev, n = [], 0, 0
    for v in dense.ravel(order="F"):
        if v != prev:
            runs.append(n)
            prev, n = v, 0
        n += 1
    unc[i]["segmentations"][f] = {"size": list(dense.shape), "counts": runs + [n]}
    p = tmp_path / "unc.json"
    p.write_text(json.dumps(unc))
    assert evaluate(g, load_predictions(str(p), g)).stats == typed
    monkeypatch.setattr(results_mod, "msgspec", None)
    assert evaluate(g, load_predictions(res_path, g)).stats == typed


def test_cli_as_a_process_exits_with_its_status(case, tmp_path):
    # `python -m vis_core.evaluation` leaves its objects to the OS (os._exit): output and status kept.
    import subprocess
    import sys

    gt, res, gt_path, res_path = case
    out = tmp_path / "m.json"
    run = subprocess.run(
        [sys.executable, "-m", "vis_core.evaluation", "--gt", gt_path, "--pred", res_path,
         "--json-out", str(out), "--workers", "2"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "AP50" in run.stdout and "Metrics written to" in run.stdout
    direct = evaluate_results(copy.deepcopy(res), gt)
    assert json.loads(out.read_text())["AP"] == pytest.approx(direct.stats["AP"] * 100)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_bad(res, 0, video_id=99999)))
    run = subprocess.run(
        [sys.executable, "-m", "vis_core.evaluation", "--gt", gt_path, "--pred", str(bad)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2 and "unknown video id" in run.stderr
