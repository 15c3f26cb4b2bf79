#!/usr/bin/env python
"""Train and evaluate named variants of one config over several seeds; print mean +- std.

    C=projects/VISOLO/configs/synthvis_quick/VISOLO_R18.yaml
    python tools/seed_sweep.py --config-file $C \\
        --seeds 1 2 3 --output-dir output/sweep_visolo \\
        --variant full "" \\
        --variant noTA "MODEL.VISOLO.TEMPORAL_AGGREGATION_CATEGORY False \\
                        MODEL.VISOLO.TEMPORAL_AGGREGATION_MASK False" \\
        --eval-only noSR full "MODEL.VISOLO.SCORE_REWEIGHTING False"

Every run is the project's own ``train_net.py`` (the one above the config file, as run_main_job.sh
finds it) in a process of its own, one after the other, with ``SEED <seed> OUTPUT_DIR
<output-dir>/<variant>/seed<seed>`` and the variant's config overrides (KEY VALUE ...) after the
common ones (``--opts``). ``--eval-only NAME FROM OPTS`` evaluates the weights that variant FROM
trained with the same seed (``MODEL.WEIGHTS .../FROM/seed<seed>/model_final.pth``), for switches
that act only at inference. The figures are read from what the evaluator wrote for each run,
``OUTPUT_DIR/inference/<DATASETS.TEST[0]>/metrics.json``; a run whose metrics.json is already there
is not run again (``--force`` reruns it). Writes the table as markdown to stdout and, with every
run's figures, to ``<output-dir>/sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from vis_core.engine.project import find_project_root, setup_project_cfg  # noqa: E402

METRICS = ("AP", "AP50", "AP75", "AR1", "AR10")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, help="a project's config (YAML)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="SEED of each run")
    parser.add_argument(
        "--variant",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "OPTS"),
        help='a trained variant: its name and its config overrides in one string ("" for none); '
        'repeatable. Default: one variant "base" without overrides',
    )
    parser.add_argument(
        "--eval-only",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "FROM", "OPTS"),
        help="a variant evaluated on the weights of the trained variant FROM (same seed); "
        "repeatable",
    )
    parser.add_argument("--output-dir", required=True, help="runs go to <dir>/<variant>/seed<seed>")
    parser.add_argument(
        "--opts", default="", help="config overrides common to every run, in one string"
    )
    parser.add_argument("--force", action="store_true", help="rerun runs that have metrics.json")
    parser.add_argument(
        "--json-out", help="where the table goes as JSON (default <dir>/sweep.json)"
    )
    args = parser.parse_args(argv)
    if not args.variant:
        args.variant = [["base", ""]]
    trained = [name for name, _ in args.variant]
    names = trained + [name for name, _, _ in args.eval_only]
    if len(set(names)) != len(names):
        parser.error(f"variant names must be unique, got {names}")
    for name, source, _ in args.eval_only:
        if source not in trained:
            parser.error(
                f"--eval-only {name}: FROM must name a trained --variant ({trained}), "
                f"got {source!r}"
            )
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    return args


def plan_runs(args) -> list[dict]:
    """One dict per run, trained variants first (eval-only ones need their weights)."""
    train_net = os.path.join(find_project_root(args.config_file), "train_net.py")
    common = shlex.split(args.opts)
    runs = []
    variants = [(name, None, opts) for name, opts in args.variant] + [
        tuple(v) for v in args.eval_only
    ]
    for name, source, opts in variants:
        for seed in args.seeds:
            out = os.path.join(args.output_dir, name, f"seed{seed}")
            overrides = common + shlex.split(opts)
            flags = []
            if source is not None:
                weights = os.path.join(args.output_dir, source, f"seed{seed}", "model_final.pth")
                flags = ["--eval-only"]
                overrides += ["MODEL.WEIGHTS", weights]
            overrides += ["SEED", str(seed), "OUTPUT_DIR", out]
            cfg = setup_project_cfg(args.config_file, overrides)
            if not cfg.DATASETS.TEST:
                raise ValueError(
                    f"{args.config_file}: DATASETS.TEST is empty; the sweep needs a test set with "
                    "ground truth (set DATASETS.TEST in the config or in --opts)"
                )
            command = [sys.executable, train_net, "--config-file", args.config_file]
            runs.append(
                {
                    "variant": name,
                    "seed": seed,
                    "eval_only_from": source,
                    "output_dir": out,
                    "metrics_json": os.path.join(
                        out, "inference", cfg.DATASETS.TEST[0], "metrics.json"
                    ),
                    "command": command + flags + overrides,
                }
            )
    return runs


def run_all(runs: list[dict], force: bool) -> None:
    """Runs every planned run that has no metrics.json yet (all with ``force``), one at a time;
    fills each run's ``metrics``, ``train_minutes`` (from its log.txt) and ``seconds`` (wall time
    of the process, where it ran here)."""
    for k, run in enumerate(runs, 1):
        label = f"[{k}/{len(runs)}] {run['variant']} seed {run['seed']}"
        if force or not os.path.isfile(run["metrics_json"]):
            if force and os.path.isfile(run["metrics_json"]):
                os.remove(run["metrics_json"])
            print(f"{label}: {shlex.join(run['command'])}", flush=True)
            start = time.perf_counter()
            status = subprocess.run(run["command"], cwd=REPO).returncode
            run["seconds"] = round(time.perf_counter() - start, 1)
            if status != 0:
                raise RuntimeError(
                    f"{label} failed (exit status {status}); its log is in {run['output_dir']}"
                    "/log.txt. Fix it and run the sweep again: finished runs are kept"
                )
        else:
            print(f"{label}: kept {run['metrics_json']} (--force reruns it)", flush=True)
            run["seconds"] = None
        if not os.path.isfile(run["metrics_json"]):
            raise FileNotFoundError(
                f"{label} finished but wrote no {run['metrics_json']}: was DATASETS.TEST "
                "evaluated with ground truth?"
            )
        with open(run["metrics_json"]) as f:
            metrics = json.load(f)
        run["metrics"] = {m: metrics.get(m) for m in METRICS}
        run["train_minutes"] = training_minutes(os.path.join(run["output_dir"], "log.txt"))


_TRAINING_TIME = re.compile(r"Total training time: (?:(\d+) days?, )?(\d+):(\d\d):(\d\d)")


def training_minutes(log_txt: str) -> float | None:
    """Minutes of training that detectron2's trainer logged last in ``log_txt`` ("Total training
    time: H:MM:SS"); None for a run that did not train (eval-only) or has no log."""
    if not os.path.isfile(log_txt):
        return None
    with open(log_txt) as f:
        found = _TRAINING_TIME.findall(f.read())
    if not found:
        return None
    days, hours, minutes, seconds = (int(x or 0) for x in found[-1])
    return ((days * 24 + hours) * 60 + minutes) + seconds / 60


def _mean_std(values: list) -> tuple:
    """Mean and sample standard deviation (n - 1; 0 for one value) of the defined values."""
    defined = [float(v) for v in values if v is not None]
    if not defined:
        return None, None
    mean = sum(defined) / len(defined)
    if len(defined) == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in defined) / (len(defined) - 1)
    return mean, math.sqrt(var)


def summarize(runs: list[dict]) -> list[dict]:
    """Per variant (in run order): the seeds and each metric's values, mean and std."""
    rows = {}
    for run in runs:
        row = rows.setdefault(
            run["variant"], {"variant": run["variant"], "eval_only_from": run["eval_only_from"]}
        )
        row.setdefault("seeds", []).append(run["seed"])
        for m in METRICS:
            row.setdefault(m, {"values": []})["values"].append(run["metrics"][m])
        row.setdefault("train_minutes", {"values": []})["values"].append(run.get("train_minutes"))
    for row in rows.values():
        for m in METRICS + ("train_minutes",):
            row[m]["mean"], row[m]["std"] = _mean_std(row[m]["values"])
    return list(rows.values())


def markdown_table(rows: list[dict]) -> str:
    """The table: one row per variant, ``mean ± std`` over the seeds per metric, each seed's AP
    (in the order of ``seeds``) and the minutes of training a run (``-`` for eval-only)."""

    def cell(stat, digits=2):
        if stat["mean"] is None:
            return "-"
        return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"

    lines = [
        "| variant | seeds | AP by seed | " + " | ".join(METRICS) + " | train min |",
        "|---|---|---|" + "---|" * (len(METRICS) + 1),
    ]
    for row in rows:
        name = row["variant"]
        if row["eval_only_from"]:
            name += f" (eval-only on {row['eval_only_from']})"
        seeds = " ".join(str(s) for s in row["seeds"])
        by_seed = " / ".join("-" if v is None else f"{v:.1f}" for v in row["AP"]["values"])
        metrics = " | ".join(cell(row[m]) for m in METRICS)
        minutes = cell(row["train_minutes"], 1)
        lines.append(f"| {name} | {seeds} | {by_seed} | {metrics} | {minutes} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = plan_runs(args)
    os.makedirs(args.output_dir, exist_ok=True)
    run_all(runs, args.force)
    rows = summarize(runs)
    table = markdown_table(rows)
    print(table)
    json_out = args.json_out or os.path.join(args.output_dir, "sweep.json")
    with open(json_out + ".tmp", "w") as f:
        json.dump(
            {"config_file": args.config_file, "rows": rows, "runs": runs, "markdown": table},
            f,
            indent=2,
        )
    os.replace(json_out + ".tmp", json_out)
    print(f"written to {json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
