"""VideoTrainer's DDP on the CPU: `train_net.py --num-gpus 2` trains with two gloo processes, and
`--eval-only` on two processes writes the same results.json as on one."""

import json
import os
import subprocess
import sys

from tests.engine.test_launcher import _remove, _tiny_run

TRAIN_NET = os.path.join(
    os.path.dirname(__file__), "..", "..", "projects", "VISOLO", "train_net.py"
)


def _train_net(config, opts, *flags):
    run = subprocess.run(
        [sys.executable, TRAIN_NET, "--config-file", config, "--dist-url", "auto", *flags, *opts],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return run


def test_two_cpu_processes_train_and_evaluate_like_one(tmp_path):
    name = "ddp_tiny"
    _remove(name)
    config, opts = _tiny_run(tmp_path, "VISOLO", name, num_videos=4)
    out = str(tmp_path / "out")
    # Both temporal-aggregation switches off leave parameters without a gradient: DDP needs
    # MODEL.DDP_FIND_UNUSED_PARAMETERS, else it fails at the second iteration.
    opts += ["MODEL.VISOLO.TEMPORAL_AGGREGATION_CATEGORY", "False",
             "MODEL.VISOLO.TEMPORAL_AGGREGATION_MASK", "False",
             "MODEL.DDP_FIND_UNUSED_PARAMETERS", "True", "SOLVER.IMS_PER_BATCH", "2",
             "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "100", "DATASETS.TEST", "()"]  # fmt: skip
    _train_net(config, opts, "--num-gpus", "2")
    with open(os.path.join(out, "log.txt")) as f:
        log = f.read()
    assert "World size: 2" in log and "Starting training from iteration 0" in log
    with open(os.path.join(out, "metrics.json")) as f:
        assert json.loads(f.readlines()[-1])["iteration"] == 2  # three iterations ran
    weights = [
        "MODEL.WEIGHTS",
        os.path.join(out, "model_final.pth"),
        "DATASETS.TEST",
        f"('{name}',)",
    ]

    results = {}
    for processes in (1, 2):
        folder = str(tmp_path / f"eval{processes}")
        run = _train_net(
            config,
            opts + weights + ["OUTPUT_DIR", folder],
            "--eval-only",
            "--num-gpus",
            str(processes),
        )
        with open(os.path.join(folder, "inference", name, "results.json")) as f:
            results[processes] = json.load(f)
        with open(os.path.join(folder, "log.txt")) as f:
            assert f"world size: {processes}" in f.read().lower() or processes == 1, run.stderr
    assert len(results[2]) > 0
    key = lambda r: (r["video_id"], -r["score"], r["category_id"])  # noqa: E731
    assert sorted(results[2], key=key) == sorted(results[1], key=key)
    assert {r["video_id"] for r in results[2]} == {1, 2, 3, 4}
