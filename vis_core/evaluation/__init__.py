"""Evaluation of video instance segmentation: temporal mAP/AR exactly as the official YouTube-VIS API.

Public API:
    evaluate_results(results, gt): AP/AR of an in-memory list of result dicts (the CLI and
        YTVISEvaluator both go through it, so they agree by construction).
    YTVISEvaluator: the detectron2 DatasetEvaluator.
    load_predictions(path, gt): read and validate a results.json at speed (typed msgspec decoding).
    evaluate_hota(gt, preds): optional HOTA tracking metrics through the trackeval package.
    YTVISGroundTruth, YTVISEvalResult, prepare_predictions, video_output_to_results, write_results.
"""

import importlib

# Imported on first use, so that `python -m vis_core.evaluation` can configure the process before
# numpy loads, and YTVISEvaluator (detectron2, torch) and HOTA (trackeval) cost nothing until used.
_EXPORTS = {
    "PredictionSet": ".results",
    "encode_track_masks": ".results",
    "load_predictions": ".results",
    "load_results": ".results",
    "prepare_predictions": ".results",
    "video_output_to_results": ".results",
    "write_results": ".results",
    "AREA_LABELS": ".ytvis_eval",
    "AREA_RANGES": ".ytvis_eval",
    "IOU_THRESHOLDS": ".ytvis_eval",
    "MAX_DETS": ".ytvis_eval",
    "RECALL_THRESHOLDS": ".ytvis_eval",
    "YTVISEvalResult": ".ytvis_eval",
    "YTVISGroundTruth": ".ytvis_eval",
    "evaluate": ".ytvis_eval",
    "evaluate_results": ".ytvis_eval",
    "format_metrics_table": ".ytvis_eval",
    "YTVISEvaluator": ".evaluator",
    "evaluate_hota": ".hota",
}


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


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
