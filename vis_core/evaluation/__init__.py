"""Evaluation of video instance segmentation: temporal mAP/AR exactly as the official YouTube-VIS API.

Public API:
    evaluate_results(results, gt): AP/AR of an in-memory list of result dicts (the CLI and
        YTVISEvaluator both go through it, so they agree by construction).
    YTVISEvaluator: the detectron2 DatasetEvaluator.
    load_predictions(path, gt): read and validate a results.json at speed (typed msgspec decoding).
    evaluate_hota(gt, preds): optional HOTA tracking metrics through the trackeval package.
    YTVISGroundTruth, YTVISEvalResult, prepare_predictions, video_output_to_results, write_results.
"""

from .results import (
    PredictionSet,
    encode_track_masks,
    load_predictions,
    load_results,
    prepare_predictions,
    video_output_to_results,
    write_results,
)
from .ytvis_eval import (
    AREA_LABELS,
    AREA_RANGES,
    IOU_THRESHOLDS,
    MAX_DETS,
    RECALL_THRESHOLDS,
    YTVISEvalResult,
    YTVISGroundTruth,
    evaluate,
    evaluate_results,
    format_metrics_table,
)


def __getattr__(name):
    # YTVISEvaluator needs detectron2 (and torch); the metric core and the CLI do not, so it is
    # imported on first use only.
    if name == "YTVISEvaluator":
        from .evaluator import YTVISEvaluator

        return YTVISEvaluator
    if name == "evaluate_hota":  # trackeval itself is imported only when HOTA is computed
        from .hota import evaluate_hota

        return evaluate_hota
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AREA_LABELS",
    "AREA_RANGES",
    "IOU_THRESHOLDS",
    "MAX_DETS",
    "RECALL_THRESHOLDS",
    "PredictionSet",
    "YTVISEvalResult",
    "YTVISEvaluator",
    "YTVISGroundTruth",
    "encode_track_masks",
    "evaluate",
    "evaluate_hota",
    "evaluate_results",
    "format_metrics_table",
    "load_predictions",
    "load_results",
    "prepare_predictions",
    "video_output_to_results",
    "write_results",
]
