#!/usr/bin/env python
"""Every method side by side: each project's synthetic-set config trained with the same budget over
several seeds, evaluated by the same evaluator, measured by the same benchmarks; one table and one
plot.

    python tools/compare_methods.py --split quick --seeds 1 2 3 --output-dir output/compare
    python tools/compare_methods.py --methods VISOLO GMP_VIS --budget 400 --seeds 1 --output-dir ...

Methods are the projects with a config under ``configs/synthvis_quick/`` (``--split quick``) or
``configs/synthvis/`` (``--split hard``; a project's ``*_long.yaml`` there, its hour-long schedule,
is taken over its short one). Training and evaluation of each (method, seed) go through
``tools/seed_sweep.py`` (the project's own train_net.py in a process of its own; a run whose
metrics.json is there is kept, ``--force`` reruns it). The budget is stated in the table: ``config``
(each config's own schedule, the one its README reports) or a number of iterations for every method
(``SOLVER.MAX_ITER``; the warm-up, steps and checkpoints scale with it; batch sizes stay each
config's). Per run, from the evaluator's results.json: AP, AP50, AP75, AR1, AR10, and with the
``trackeval`` package HOTA, DetA, AssA and identity switches (TrackEval's CLEAR IDSW). Per method,
once, on the seed-1 weights: parameters, CPU FPS (``tools/benchmark_fps.py``: ``--fps-frames`` random
frames at the split's frame size, 2 videos after a warm-up) and the peak memory of evaluating one
``--memory-frames``-frame video (``tools/benchmark_long_video.py``, the process's peak RSS). Results
go to ``<output-dir>/compare.json``, ``compare.md`` and ``ap_vs_fps.png``.
"""

from __future__ import annotations

import argparse
import functools
import glob
import importlib.util
import json
import os
import shlex
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

SPLITS = {"quick": "synthvis_quick", "hard": "synthvis"}
TRACKING = ("HOTA", "DetA", "AssA", "IDSW")


@functools.lru_cache(maxsize=None)
def _tool(name):
    """tools/<name>.py as a module, loaded once per process."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def method_configs(split: str) -> dict:
    """{project name: its config of the split}, for every project that has one (its ``*_long.yaml``
    first: the hard set's long-run schedule)."""
    found = {}
    pattern = os.path.join(REPO, "projects", "*", "configs", SPLITS[split], "*.yaml")
    paths = sorted(glob.glob(pattern), key=lambda p: (not p.endswith("_long.yaml"), p))
    for path in paths:
        method = path.split(os.sep)[-4]
        found.setdefault(method, path)
    return found


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--split", choices=sorted(SPLITS), default="quick")
    p.add_argument("--methods", nargs="+", help="project names (default: every one with a config)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument(
        "--budget", default="config", help='"config" (each config\'s schedule) or iterations'
    )
    p.add_argument("--output-dir", required=True)
    p.add_argument("--opts", default="", help="config overrides for every run, in one string")
    p.add_argument(
        "--method-opts",
        nargs=2,
        action="append",
        default=[],
        metavar=("METHOD", "OPTS"),
        help="config overrides for one method's runs (after --opts); repeatable",
    )
    p.add_argument(
        "--long-video-opts",
        nargs=2,
        action="append",
        default=[],
        metavar=("METHOD", "OPTS"),
        help="overrides for one method's long-video memory benchmark only, e.g. its windowed "
        'inference for an offline method: --long-video-opts Mask2Former_VIS "TEST.VIS.WINDOW_SIZE 36"',
    )
    p.add_argument("--fps-frames", type=int, default=36)
    p.add_argument("--memory-frames", type=int, default=1000)
    p.add_argument("--skip-benchmarks", action="store_true", help="no FPS and memory")
    p.add_argument("--force", action="store_true", help="rerun finished runs and benchmarks")
    args = p.parse_args(argv)
    available = method_configs(args.split)
    args.methods = args.methods or sorted(available)
    unknown = [m for m in args.methods if m not in available]
    if unknown:
        p.error(
            f"no {SPLITS[args.split]} config for {unknown}; methods with one: {sorted(available)}"
        )
    if args.budget != "config" and not (args.budget.isdigit() and int(args.budget) > 0):
        p.error(
            f'--budget must be "config" or a positive number of iterations, got {args.budget!r}'
        )
    args.configs = {m: available[m] for m in args.methods}
    for flag, pairs in (
        ("--method-opts", args.method_opts),
        ("--long-video-opts", args.long_video_opts),
    ):
        for method, _ in pairs:
            if method not in args.configs:
                p.error(f"{flag} {method}: not among the methods {args.methods}")
    return args


def method_opts(method: str, args) -> list:
    """--opts, then the method's own --method-opts."""
    opts = shlex.split(args.opts)
    for name, extra in args.method_opts:
        if name == method:
            opts += shlex.split(extra)
    return opts


def budget_opts(config_file: str, budget: str) -> list:
    """Overrides that give the config ``budget`` iterations, its schedule scaled to them."""
    if budget == "config":
        return []
    from vis_core.engine.project import setup_project_cfg

    cfg = setup_project_cfg(config_file, [])
    iters = int(budget)
    scale = iters / cfg.SOLVER.MAX_ITER
    steps = tuple(max(1, int(s * scale)) for s in cfg.SOLVER.STEPS)
    return [
        "SOLVER.MAX_ITER", str(iters),
        "SOLVER.STEPS", str(steps) if steps else "()",
        "SOLVER.WARMUP_ITERS", str(min(cfg.SOLVER.WARMUP_ITERS, max(iters // 10, 0))),
        "SOLVER.CHECKPOINT_PERIOD", str(max(iters, 1)),
    ]  # fmt: skip


def tracking_metrics(results_json: str, gt_json: str) -> dict:
    """HOTA, DetA, AssA (percent) and identity switches of a run's results (needs trackeval)."""
    from vis_core.evaluation import YTVISGroundTruth, evaluate_hota, load_predictions

    gt = YTVISGroundTruth.from_json(gt_json)
    hota = evaluate_hota(gt, load_predictions(results_json, gt), id_switches=True)
    row = {k: 100.0 * float(hota[k]) for k in ("HOTA", "DetA", "AssA")}
    row["IDSW"] = float(hota["IDSW"])
    return row


def run_method(method: str, config_file: str, args) -> list:
    """The seed runs of one method (trained and evaluated through seed_sweep)."""
    sweep = _tool("seed_sweep")
    out = os.path.join(args.output_dir, method)
    opts = shlex.join(budget_opts(config_file, args.budget) + method_opts(method, args))
    sweep_args = sweep.parse_args(
        ["--config-file", config_file, "--output-dir", out, "--opts", opts, "--seeds"]
        + [str(s) for s in args.seeds]
    )
    runs = sweep.plan_runs(sweep_args)
    sweep.run_all(runs, args.force)
    from vis_core.engine.project import setup_project_cfg

    gt_json = None
    for run in runs:
        inference = os.path.dirname(run["metrics_json"])
        cache = os.path.join(inference, "tracking.json")
        if os.path.isfile(cache) and not args.force:
            with open(cache) as f:
                run["tracking"] = json.load(f)
            continue
        try:
            import trackeval  # noqa: F401
        except ImportError:
            print("trackeval is not installed: no HOTA / IDSW (pip install --no-deps "
                  "trackeval==1.0.0)", flush=True)  # fmt: skip
            run["tracking"] = {k: None for k in TRACKING}
            continue
        if gt_json is None:  # the runs share one test set: resolve its file once
            from detectron2.data import DatasetCatalog, MetadataCatalog

            test = setup_project_cfg(config_file, method_opts(method, args)).DATASETS.TEST[0]
            DatasetCatalog.get(test)  # a built-in split records its file when loaded
            gt_json = MetadataCatalog.get(test).json_file
        run["tracking"] = tracking_metrics(os.path.join(inference, "results.json"), gt_json)
        with open(cache, "w") as f:
            json.dump(run["tracking"], f)
    return runs


def benchmarks(method: str, config_file: str, runs: list, args) -> dict:
    """Parameters, CPU FPS and peak memory on one long video, on the first seed's weights."""
    out = os.path.join(args.output_dir, method, "benchmarks.json")
    if os.path.isfile(out) and not args.force:
        with open(out) as f:
            stored = json.load(f)
        # one written by a --skip-benchmarks run holds the parameters only: measure the rest
        if args.skip_benchmarks or "fps" in stored:
            return stored
    import torch
    from detectron2.modeling import build_model

    from vis_core.engine.project import setup_project_cfg

    weights = os.path.join(runs[0]["output_dir"], "model_final.pth")
    extra = method_opts(method, args) + ["MODEL.WEIGHTS", weights]
    cfg = setup_project_cfg(config_file, extra)
    result = {"params_M": sum(p.numel() for p in build_model(cfg).parameters()) / 1e6}
    h, w = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST
    if not args.skip_benchmarks:
        threads = torch.get_num_threads()
        fps = _tool("benchmark_fps").main(
            ["--config-file", config_file, "--frames", str(args.fps_frames), "--height", str(h),
             "--width", str(w), "--videos", "2"] + extra
        )  # fmt: skip
        result.update({"fps": fps["model_fps"], "fps_threads": threads})
        long_opts = [o for m, extra_opts in args.long_video_opts if m == method
                     for o in shlex.split(extra_opts)]  # fmt: skip
        rows = _tool("benchmark_long_video").main(
            ["--config-file", config_file, "--frames", str(args.memory_frames), "--size",
             f"{h}x{w}", "--modes", "eval", "--workdir",
             os.path.join(args.output_dir, method, "long_video")] + extra + long_opts
        )  # fmt: skip
        result.update(
            {
                "memory_mb": rows[-1]["peak_mb"],
                "memory_frames": args.memory_frames,
                "memory_opts": " ".join(long_opts),
            }
        )
    with open(out, "w") as f:
        json.dump(result, f)
    return result


METRICS = ("AP", "AP50", "AP75", "AR1", "AR10") + TRACKING


def summarize(method: str, runs: list, bench: dict) -> dict:
    row = {"method": method, "seeds": [r["seed"] for r in runs]}
    mean_std = _tool("seed_sweep")._mean_std
    for m in METRICS:
        values = [(r["tracking"] if m in TRACKING else r["metrics"]).get(m) for r in runs]
        row[m] = {"values": values}
        row[m]["mean"], row[m]["std"] = mean_std(values)
    minutes = [r.get("train_minutes") for r in runs]
    row["train_minutes"] = {"values": minutes}
    row["train_minutes"]["mean"], row["train_minutes"]["std"] = mean_std(minutes)
    row.update(bench)
    return row


def markdown(rows: list, args) -> str:
    def cell(stat, digits=1):
        return (
            "-" if stat["mean"] is None else f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
        )

    def number(v, digits=1):
        return "-" if v is None else f"{v:.{digits}f}"

    head = (
        "| method | " + " | ".join(METRICS) + " | params (M) | CPU FPS | peak MB at "
        f"{args.memory_frames} frames | train min |"
    )
    lines = [head, "|---" * (len(METRICS) + 5) + "|"]
    for row in rows:
        lines.append(
            f"| {row['method']} | "
            + " | ".join(cell(row[m], 0 if m == "IDSW" else 1) for m in METRICS)
            + f" | {number(row.get('params_M'), 2)} | {number(row.get('fps'))} | "
            f"{number(row.get('memory_mb'), 0)}{' (' + row['memory_opts'] + ')' if row.get('memory_opts') else ''} | {cell(row['train_minutes'])} |"
        )
    budget = "each config's schedule" if args.budget == "config" else f"{args.budget} iterations"
    threads = sorted({row["fps_threads"] for row in rows if row.get("fps_threads")})
    fps_note = f"; CPU FPS with {'/'.join(map(str, threads))} torch threads" if threads else ""
    lines.append(
        f"\n{SPLITS[args.split]}, seeds {' '.join(map(str, args.seeds))} (mean ± std), budget: "
        f"{budget}{fps_note}; {time.strftime('%Y-%m-%d')}"
    )
    return "\n".join(lines)


def plot(rows: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        if row.get("fps") is None or row["AP"]["mean"] is None:
            continue
        ax.errorbar(row["fps"], row["AP"]["mean"], yerr=row["AP"]["std"], fmt="o", capsize=4)
        ax.annotate(row["method"], (row["fps"], row["AP"]["mean"]), textcoords="offset points",
                    xytext=(5, 5))  # fmt: skip
    ax.set_xlabel("CPU FPS (model)")
    ax.set_ylabel("AP (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    rows = []
    for k, (method, config_file) in enumerate(args.configs.items(), 1):
        print(f"== [{k}/{len(args.configs)}] {method}: {os.path.relpath(config_file, REPO)}",
              flush=True)  # fmt: skip
        runs = run_method(method, config_file, args)
        rows.append(summarize(method, runs, benchmarks(method, config_file, runs, args)))
    table = markdown(rows, args)
    print(table)
    result = {"args": {k: v for k, v in vars(args).items()}, "rows": rows, "markdown": table}
    with open(os.path.join(args.output_dir, "compare.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.output_dir, "compare.md"), "w") as f:
        f.write(table + "\n")
    plot(rows, os.path.join(args.output_dir, "ap_vs_fps.png"))
    return result


if __name__ == "__main__":
    main()
