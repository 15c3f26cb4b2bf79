"""Command line: temporal AP/AR of a results.json against a YouTube-VIS ground truth.

    python -m vis_core.evaluation --gt GT.json --pred results.json [--json-out metrics.json] [--plots DIR]

Prints the metrics table and per-category AP; ``--json-out`` writes AP, AP50, AP75, APs, APm, APl,
AR1, AR10, AR100 (percent, null where undefined) and ``per_category``; ``--plots`` writes
precision-recall curves and a per-category AP bar chart. Exits with status 2 on bad input.
"""

import argparse
import json
import logging
import math
import os
import sys
import time

from .results import gc_paused, load_predictions
from .ytvis_eval import YTVISEvalResult, YTVISGroundTruth, evaluate, format_metrics_table

logger = logging.getLogger("vis_core.evaluation")

JSON_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")


def _finite_or_none(v: float):
    return None if v is None or math.isnan(v) else v


def metrics_dict(result: YTVISEvalResult) -> dict:
    """The metrics as written by ``--json-out``: percent, None where undefined."""
    m = result.metrics_percent()
    out = {k: _finite_or_none(m[k]) for k in JSON_KEYS}
    out["per_category"] = {k: _finite_or_none(v) for k, v in result.per_category_percent().items()}
    return out


def metrics_to_json(result: YTVISEvalResult, path: str) -> None:
    """Write ``metrics_dict(result)`` to ``path`` (through a temporary file, so never partially)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(metrics_dict(result), f, indent=2)
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vis_core.evaluation",
        description="Temporal mAP/AR of video instance segmentation (official YouTube-VIS semantics).",
    )
    parser.add_argument("--gt", required=True, help="ground-truth JSON (YouTube-VIS format)")
    parser.add_argument("--pred", required=True, help="results.json (list of video results)")
    parser.add_argument("--json-out", help="write the metrics (percent) to this JSON file")
    parser.add_argument("--plots", help="write precision-recall curves and AP bars (PNG) here")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    try:
        with gc_paused():  # millions of acyclic objects: the collector would only slow things down
            gt = YTVISGroundTruth.from_json(args.gt)
            gt.require_annotations()
            preds = load_predictions(args.pred, gt)
            result = evaluate(gt, preds)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logger.info("Evaluated %d results in %.2f s", len(preds), time.perf_counter() - start)
    print(format_metrics_table(result))
    if args.json_out:
        metrics_to_json(result, args.json_out)
        print(f"Metrics written to {args.json_out}")
    if args.plots:
        from .plots import save_plots

        paths = save_plots(result, args.plots)
        print(f"Plots written to {args.plots}: {', '.join(os.path.basename(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
