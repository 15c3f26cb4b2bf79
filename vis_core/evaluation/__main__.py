"""Command line: temporal AP/AR of a results.json against a YouTube-VIS ground truth.

    python -m vis_core.evaluation --gt GT.json --pred results.json [--json-out metrics.json] [--plots DIR]
        [--hota [--hota-score-thr S]]

Prints the metrics table and per-category AP; ``--json-out`` writes AP, AP50, AP75, APs, APm, APl,
AR1, AR10, AR100 (percent, null where undefined) and ``per_category``; ``--plots`` writes
precision-recall curves and a per-category AP bar chart; ``--hota`` adds the HOTA tracking metrics
(computed by the optional ``trackeval`` package) to the table and, under ``"hota"``, to the JSON.
Exits with status 2 on bad input, 3 if ``--hota`` is asked for without trackeval installed.
"""

import argparse
import gc
import json
import logging
import math
import os
import sys
import time
from typing import TYPE_CHECKING, Optional

from .forked import default_workers, wait_for_workers

if TYPE_CHECKING:
    from .ytvis_eval import YTVISEvalResult

logger = logging.getLogger("vis_core.evaluation")

JSON_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")


def _finite_or_none(v: float):
    return None if v is None or math.isnan(v) else v


def metrics_dict(result: "YTVISEvalResult", hota: Optional[dict] = None) -> dict:
    """The metrics as written by ``--json-out``: percent, None where undefined.

    Args:
        hota: ``evaluate_hota``'s output (fractions), written under ``"hota"`` in percent.
    """
    m = result.metrics_percent()
    out = {k: _finite_or_none(m[k]) for k in JSON_KEYS}
    out["per_category"] = {k: _finite_or_none(v) for k, v in result.per_category_percent().items()}
    if hota is not None:
        out["hota"] = {k: _finite_or_none(100 * v) for k, v in hota.items() if k != "per_category"}
        out["hota"]["per_category"] = {
            k: _finite_or_none(100 * v) for k, v in hota["per_category"].items()
        }
    return out


def metrics_to_json(result: "YTVISEvalResult", path: str, hota: Optional[dict] = None) -> None:
    """Write ``metrics_dict(result, hota)`` to ``path`` (through a temporary file, never partially)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(metrics_dict(result, hota), f, indent=2)
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vis_core.evaluation",
        description="Temporal mAP/AR of video instance segmentation (official YouTube-VIS semantics).",
    )
    parser.add_argument("--gt", required=True, help="ground-truth JSON (YouTube-VIS format)")
    parser.add_argument("--pred", required=True, help="results.json (list of video results)")
    parser.add_argument("--json-out", help="write the metrics (percent) to this JSON file")
    parser.add_argument(
        "--workers", type=int, default=default_workers(),
        help="processes for mask areas and IoUs (default: the CPUs available, at most 2; "
        "1: no forked worker)",
    )  # fmt: skip
    parser.add_argument("--plots", help="write precision-recall curves and AP bars (PNG) here")
    parser.add_argument(
        "--hota", action="store_true", help="also compute HOTA tracking metrics (needs trackeval)"
    )
    parser.add_argument(
        "--hota-score-thr", type=float, default=0.0,
        help="predictions scored below this are left out of HOTA (default 0: all, as TrackEval)",
    )  # fmt: skip
    return parser


def main(argv=None, keep: Optional[list] = None) -> int:
    """Run the command line; returns the exit status.

    Args:
        keep: if given, the parsed ground truth and predictions are appended to it instead of being
            freed when this returns (a process about to exit leaves them to the OS).
    """
    args = build_parser().parse_args(argv)
    # numpy is imported here, after the __main__ block below has set its thread count.
    from .results import gc_paused, load_predictions
    from .ytvis_eval import YTVISGroundTruth, evaluate, format_metrics_table

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    try:
        with gc_paused():  # millions of acyclic objects: the collector would only slow things down
            gt = YTVISGroundTruth.from_json(args.gt)
            gt.require_annotations()
            preds = load_predictions(args.pred, gt)
            if keep is not None:
                keep += [gt, preds]
            result = evaluate(gt, preds, workers=args.workers)
            logger.info("Evaluated %d results in %.2f s", len(preds), time.perf_counter() - start)
            hota = None
            if args.hota:
                from .hota import evaluate_hota

                hota = evaluate_hota(gt, preds, score_threshold=args.hota_score_thr)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:  # --hota without trackeval
        print(f"error: {error}", file=sys.stderr)
        return 3
    print(format_metrics_table(result))
    if hota is not None:
        from .hota import format_hota_table

        print(format_hota_table(hota))
    if args.json_out:
        metrics_to_json(result, args.json_out, hota)
        print(f"Metrics written to {args.json_out}")
    if args.plots:
        from .plots import save_plots

        paths = save_plots(result, args.plots)
        print(f"Plots written to {args.plots}: {', '.join(os.path.basename(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    # A short-lived process that builds millions of acyclic objects: the cyclic garbage collector
    # would only run full passes over them (twice as the collector is re-enabled), so it stays off.
    # Freeing them one by one before exiting would take a tenth of a second: they are left to the OS.
    gc.disable()
    # No linear algebra here: a pool of idle BLAS threads only slows numpy's import and exit.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    status = main(keep=[])
    wait_for_workers()  # long done by now; their CPU time and memory then count as this process's
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
