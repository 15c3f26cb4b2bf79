"""tools/seed_sweep.py: the runs it plans, the table it builds from the runs' metrics.json files."""

import importlib.util
import json
import os
import statistics

import pytest

from vis_core.data.synthvis import generate_synthvis

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = os.path.join(REPO, "projects/VISOLO/configs/synthvis_quick/VISOLO_R18.yaml")
TINY = (
    "MODEL.VISOLO.HIDDEN_DIM 32 MODEL.VISOLO.TRACK_DIM 32 MODEL.VISOLO.GRID_NUM [4,6] "
    "DATALOADER.NUM_WORKERS 0 INPUT.MIN_SIZE_TRAIN (48,) INPUT.MAX_SIZE_TRAIN 64 "
    "INPUT.MIN_SIZE_TEST 48 INPUT.MAX_SIZE_TEST 64 SOLVER.IMS_PER_BATCH 1 SOLVER.MAX_ITER 2 "
    "SOLVER.STEPS () SOLVER.WARMUP_ITERS 0 SOLVER.CHECKPOINT_PERIOD 100"
)


def _sweep():
    path = os.path.join(REPO, "tools", "seed_sweep.py")
    spec = importlib.util.spec_from_file_location("seed_sweep", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_metrics(path, values):
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        json.dump(dict(values, APs=None, per_category={}), f)


def test_table_is_mean_and_std_of_the_runs_files(tmp_path, capsys):
    """Runs whose metrics.json is there are kept: the table is computed from those files."""
    sweep = _sweep()
    out = str(tmp_path / "sweep")
    argv = ["--config-file", CFG, "--seeds", "1", "2", "3", "--output-dir", out,
            "--variant", "full", "", "--eval-only", "noSR", "full",
            "MODEL.VISOLO.SCORE_REWEIGHTING False"]  # fmt: skip
    args = sweep.parse_args(argv)
    runs = sweep.plan_runs(args)
    assert [(r["variant"], r["seed"]) for r in runs] == [
        ("full", 1), ("full", 2), ("full", 3), ("noSR", 1), ("noSR", 2), ("noSR", 3)
    ]  # fmt: skip
    no_sr = runs[4]
    assert no_sr["command"][2:] == [
        "--config-file", CFG, "--eval-only", "MODEL.VISOLO.SCORE_REWEIGHTING", "False",
        "MODEL.WEIGHTS", os.path.join(out, "full", "seed2", "model_final.pth"),
        "SEED", "2", "OUTPUT_DIR", os.path.join(out, "noSR", "seed2"),
    ]  # fmt: skip
    assert no_sr["command"][1].endswith(os.path.join("projects", "VISOLO", "train_net.py"))
    assert no_sr["metrics_json"] == os.path.join(
        out, "noSR", "seed2", "inference", "synthvis_quick_val", "metrics.json"
    )
    written = {}
    for k, run in enumerate(runs):
        values = {m: 10.0 * (k + 1) + i for i, m in enumerate(sweep.METRICS)}
        values["AR10"] = None if run["variant"] == "noSR" and run["seed"] == 3 else values["AR10"]
        _write_metrics(run["metrics_json"], values)
        written[(run["variant"], run["seed"])] = values

    assert sweep.main(argv) == 0
    printed = capsys.readouterr().out
    result = json.load(open(os.path.join(out, "sweep.json")))
    rows = {row["variant"]: row for row in result["rows"]}
    for variant in ("full", "noSR"):
        for m in sweep.METRICS:
            values = [written[(variant, s)][m] for s in (1, 2, 3)]
            assert rows[variant][m]["values"] == values
            defined = [v for v in values if v is not None]
            assert rows[variant][m]["mean"] == pytest.approx(statistics.mean(defined))
            assert rows[variant][m]["std"] == pytest.approx(statistics.stdev(defined))
    # full: AP of the seeds 10, 20, 30; noSR: 40, 50, 60; AR10 of noSR without seed 3: 44, 54
    assert "| full | 1 2 3 | 10.0 / 20.0 / 30.0 | 20.00 ± 10.00 | 21.00 ± 10.00 |" in printed
    assert "| noSR (eval-only on full) | 1 2 3 | 40.0 / 50.0 / 60.0 | 50.00 ± 10.00 |" in printed
    assert "| 49.00 ± 7.07 |" in printed
    assert result["markdown"] in printed
    assert all(r["seconds"] is None for r in result["runs"])  # nothing was run again


def test_bad_variants_are_refused(tmp_path):
    sweep = _sweep()
    base = ["--config-file", CFG, "--output-dir", str(tmp_path)]
    with pytest.raises(SystemExit):
        sweep.parse_args(base + ["--eval-only", "noSR", "missing", ""])
    with pytest.raises(SystemExit):
        sweep.parse_args(base + ["--variant", "a", "", "--variant", "a", "SEED 2"])


def test_sweep_trains_and_evaluates_through_train_net(tmp_path, monkeypatch, capsys):
    """One seed, a trained variant and an eval-only one on its weights, on a tiny quick set."""
    data = tmp_path / "data"
    generate_synthvis(str(data / "synthvis_quick"), variant="quick", num_train_videos=2,
                      num_val_videos=1, height=48, width=64, min_frames=6, max_frames=8,
                      progress=False)  # fmt: skip
    monkeypatch.setenv("DETECTRON2_DATASETS", str(data))  # read by the train_net processes
    sweep = _sweep()
    out = str(tmp_path / "sweep")
    argv = ["--config-file", CFG, "--seeds", "5", "--output-dir", out, "--opts", TINY,
            "--variant", "full", "", "--eval-only", "noSR", "full",
            "MODEL.VISOLO.SCORE_REWEIGHTING False"]  # fmt: skip
    assert sweep.main(argv) == 0
    printed = capsys.readouterr().out
    result = json.load(open(os.path.join(out, "sweep.json")))
    assert os.path.isfile(os.path.join(out, "full", "seed5", "model_final.pth"))
    assert not os.path.exists(os.path.join(out, "noSR", "seed5", "model_final.pth"))
    for run in result["runs"]:
        assert run["seconds"] > 0  # it ran
        with open(run["metrics_json"]) as f:
            metrics = json.load(f)
        assert run["metrics"] == {m: metrics[m] for m in sweep.METRICS}
        row = next(r for r in result["rows"] if r["variant"] == run["variant"])
        assert row["AP"]["mean"] == metrics["AP"] and row["AP"]["std"] == 0.0
        assert f"{metrics['AP']:.2f} ± 0.00" in printed
    rows = {r["variant"]: r for r in result["rows"]}
    # read from the run's log.txt ("Total training time: 0:00:0x" for 2 iterations)
    assert rows["full"]["train_minutes"]["mean"] is not None
    assert rows["full"]["train_minutes"]["mean"] < 5
    assert rows["noSR"]["train_minutes"]["mean"] is None  # eval-only: no training
    header = next(line for line in printed.splitlines() if line.startswith("| variant"))
    assert "AP by seed" in header and "train min" in header
    full_line = next(line for line in printed.splitlines() if line.startswith("| full |"))
    assert f"| {result['runs'][0]['metrics']['AP']:.1f} |" in full_line
    with open(os.path.join(out, "noSR", "seed5", "config.yaml")) as f:
        config = f.read()
    assert "SCORE_REWEIGHTING: false" in config and "seed5/model_final.pth" in config


def test_training_minutes_reads_the_last_total(tmp_path):
    sweep = _sweep()
    log = tmp_path / "log.txt"
    log.write_text(
        "[d2.engine.hooks]: Total training time: 0:13:29 (0:00:18 on hooks)\n"
        "[d2.engine.hooks]: Total training time: 1 day, 2:03:30 (0:00:18 on hooks)\n"
    )
    assert sweep.training_minutes(str(log)) == (24 + 2) * 60 + 3 + 0.5
    log.write_text("[d2.evaluation]: copypaste: AP\n")
    assert sweep.training_minutes(str(log)) is None
    assert sweep.training_minutes(str(tmp_path / "missing.txt")) is None


def test_compare_methods_trains_two_methods_and_writes_the_table(tmp_path, monkeypatch, capsys):
    """tools/compare_methods.py on two methods, one seed, a 2-iteration budget, a tiny quick set."""
    data = tmp_path / "data"
    generate_synthvis(str(data / "synthvis_quick"), variant="quick", num_train_videos=2,
                      num_val_videos=1, height=48, width=64, min_frames=6, max_frames=8,
                      progress=False)  # fmt: skip
    monkeypatch.setenv("DETECTRON2_DATASETS", str(data))
    spec = importlib.util.spec_from_file_location(
        "compare_methods", os.path.join(REPO, "tools", "compare_methods.py")
    )
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    out = str(tmp_path / "compare")
    small = ("DATALOADER.NUM_WORKERS 0 INPUT.MIN_SIZE_TRAIN (48,) INPUT.MAX_SIZE_TRAIN 64 "
             "INPUT.MIN_SIZE_TEST 48 INPUT.MAX_SIZE_TEST 64 SOLVER.IMS_PER_BATCH 1")  # fmt: skip
    gmp = ("MODEL.GMP_VIS.HIDDEN_DIM 32 MODEL.GMP_VIS.PIXEL_DECODER.CONVS_DIM 32 "
           "MODEL.GMP_VIS.PIXEL_DECODER.MASK_DIM 32 MODEL.GMP_VIS.DEC_LAYERS 1 "
           "MODEL.GMP_VIS.TRAIN_NUM_POINTS 64")  # fmt: skip
    argv = ["--methods", "VISOLO", "GMP_VIS", "--seeds", "3", "--budget", "2", "--output-dir",
            out, "--opts", small, "--method-opts", "VISOLO", TINY, "--method-opts", "GMP_VIS", gmp,
            "--fps-frames", "4", "--memory-frames", "6",
            "--long-video-opts", "GMP_VIS", "TEST.VIS.MASK_THRESHOLD 0.4"]  # fmt: skip
    result = compare.main(argv)
    printed = capsys.readouterr().out
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["VISOLO", "GMP_VIS"]
    for method, row in rows.items():
        with open(os.path.join(out, method, "base", "seed3", "config.yaml")) as f:
            assert "MAX_ITER: 2\n" in f.read()  # the budget reached the run
        assert row["seeds"] == [3] and row["AP"]["std"] == 0.0
        assert row["AP"]["mean"] is not None and row["HOTA"]["mean"] is not None
        assert row["IDSW"]["values"][0] >= 0 and row["params_M"] > 0
        assert row["fps"] > 0 and row["memory_mb"] > 0 and row["memory_frames"] == 6
    assert rows["GMP_VIS"]["memory_opts"] == "TEST.VIS.MASK_THRESHOLD 0.4"
    assert rows["VISOLO"]["memory_opts"] == ""
    header = printed.splitlines()[
        [ln.startswith("| method") for ln in printed.splitlines()].index(True)
    ]
    for column in ("AP", "HOTA", "DetA", "AssA", "IDSW", "params (M)", "CPU FPS", "peak MB at 6"):
        assert f"| {column}" in header
    assert "budget: 2 iterations" in printed
    for name in ("compare.json", "compare.md", "ap_vs_fps.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    # a rerun reuses every run and benchmark
    again = compare.main(argv)
    assert [r["AP"] for r in again["rows"]] == [r["AP"] for r in result["rows"]]
    # benchmarks stored by a --skip-benchmarks run (parameters only) are measured, not reused
    stored = os.path.join(out, "VISOLO", "benchmarks.json")
    with open(stored, "w") as f:
        json.dump({"params_M": rows["VISOLO"]["params_M"]}, f)
    measured = {r["method"]: r for r in compare.main(argv)["rows"]}["VISOLO"]
    assert measured["fps"] > 0 and measured["memory_mb"] > 0
    with pytest.raises(SystemExit):
        compare.parse_args(["--methods", "Nope", "--output-dir", out])


def test_compare_methods_takes_each_projects_configs_of_the_split():
    """The quick split: each project's synthvis_quick config; the hard split: a *_long.yaml first."""
    spec = importlib.util.spec_from_file_location(
        "compare_methods", os.path.join(REPO, "tools", "compare_methods.py")
    )
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    quick = compare.method_configs("quick")
    assert {"VISOLO", "Mask2Former_VIS", "TeViT", "EfficientVIS", "VideoKNet", "GMP_VIS"} <= set(
        quick
    )
    assert all(os.sep + "synthvis_quick" + os.sep in path for path in quick.values())
    hard = compare.method_configs("hard")
    assert hard["VISOLO"].endswith("configs/synthvis/VISOLO_R18_long.yaml")
    assert hard["Mask2Former_VIS"].endswith("configs/synthvis/Mask2Former_VIS_R18_long.yaml")
