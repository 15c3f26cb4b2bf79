"""YTVISEvaluator: a detectron2 DatasetEvaluator for video instance segmentation."""

import itertools
import logging
import os
from collections import OrderedDict
from typing import Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..data.build import check_num_classes
from .results import (
    gc_paused,
    prepare_predictions,
    read_json,
    video_output_to_results,
    write_results,
)
from .ytvis_eval import YTVISGroundTruth, evaluate, format_metrics_table

logger = logging.getLogger(__name__)

__all__ = ["YTVISEvaluator"]


class YTVISEvaluator(DatasetEvaluator):
    """Temporal AP/AR of a registered YouTube-VIS-format data set, as the official API computes them.

    ``process`` turns every video's output into ``results.json`` entries at once (masks encoded to
    RLE, empty frames as null), so full-resolution masks are never held for the whole data set.
    ``evaluate`` gathers the results of every process, writes ``results.json`` and ``results.zip``
    (the servers' format) into ``output_dir``, and, where the data set's JSON has annotations, returns
    ``{"segm": {"AP": .., "AP50": .., "AP75": .., "APs": .., "APm": .., "APl": .., "AR1": ..,
    "AR10": .., "AR100": .., "AP-<category>": ..}}`` in percent; with ``hota=True`` also
    ``"hota": {"HOTA": .., "DetA": .., "AssA": .., ...}`` (percent, computed by ``trackeval``).
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: Optional[str] = None,
        distributed: bool = True,
        *,
        hota: bool = False,
        hota_score_threshold: float = 0.0,
        num_classes: Optional[int] = None,
        num_classes_key: str = "num_classes",
    ):
        """
        Args:
            dataset_name: a data set registered with ``json_file`` and
                ``thing_dataset_id_to_contiguous_id`` in its metadata.
            output_dir: where ``results.json``/``results.zip`` go; nothing is written if None.
            distributed: gather results from every process (only the main process evaluates).
            hota: also compute HOTA tracking metrics (needs the optional ``trackeval`` package,
                checked here so that a missing package fails before inference, not after).
            hota_score_threshold: predictions scored below it are left out of HOTA.
            num_classes: the model's class count; if given, a data set with another number of
                ``thing_classes`` raises ValueError here, before inference.
            num_classes_key: the config key of ``num_classes``, named in that error.
        """
        if hota:
            from .hota import hota_metric

            hota_metric()  # raises an ImportError that says to pip install trackeval
        self._hota = hota
        self._hota_score_threshold = hota_score_threshold
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._metadata = MetadataCatalog.get(dataset_name)
        json_file = getattr(self._metadata, "json_file", None)
        if json_file is None:
            # Some registrations fill their metadata when the data set is first loaded.
            DatasetCatalog.get(dataset_name)
            json_file = getattr(self._metadata, "json_file", None)
        if json_file is None:
            raise ValueError(
                f"YTVISEvaluator: data set {dataset_name!r} has no 'json_file' in its metadata; "
                "register it with vis_core.data.register_ytvis_instances."
            )
        self._json_file = json_file
        if num_classes is not None:
            check_num_classes(num_classes_key, num_classes, dataset_name, "evaluation")
        mapping = getattr(self._metadata, "thing_dataset_id_to_contiguous_id", None)
        if mapping is None:
            categories = sorted(c["id"] for c in read_json(json_file, "ground truth")["categories"])
            mapping = {c: i for i, c in enumerate(categories)}
            logger.warning(
                "%s has no thing_dataset_id_to_contiguous_id; using sorted category ids of %s.",
                dataset_name, json_file,
            )  # fmt: skip
        self._contiguous_to_dataset_id = {v: k for k, v in mapping.items()}
        self._results = []

    def reset(self):
        self._results = []

    def process(self, inputs, outputs):
        """
        Args:
            inputs: test-mode dicts with ``video_id``, ``height``, ``width`` and ``length``.
            outputs: the common video outputs: ``pred_scores`` (N,), ``pred_classes`` (N,),
                ``pred_masks`` (N, T, H, W) bool or ``pred_mask_rles`` (N lists of T RLE or None).
        """
        for inp, out in zip(inputs, outputs):
            length = inp.get("length")
            if length is None:
                length = len(inp["file_names"])
            self._results.extend(
                video_output_to_results(
                    inp["video_id"], out, int(inp["height"]), int(inp["width"]), int(length),
                    self._contiguous_to_dataset_id,
                )
            )  # fmt: skip

    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather(self._results, dst=0)
            if not comm.is_main_process():
                return {}
            results = list(itertools.chain(*gathered))
        else:
            results = self._results
        dataset = read_json(self._json_file, what="ground truth")
        gt = YTVISGroundTruth(dataset, source=self._json_file)
        with gc_paused():
            try:  # the checks of the evaluation CLI, so that a written results.json always loads
                preds = prepare_predictions(results, gt, source=f"{self._dataset_name} results")
            except ValueError as error:
                raise ValueError(
                    f"YTVISEvaluator: the model's results on {self._dataset_name!r} are invalid, "
                    f"so no results.json was written to {self._output_dir!r}: {error} Check the "
                    "model's outputs (pred_scores, pred_classes, pred_masks) for that video."
                ) from error
        if self._output_dir:
            write_results(results, self._output_dir)
        if not dataset.get("annotations"):
            logger.info(
                "%s has no ground truth; results written for the server, no metrics computed.",
                self._dataset_name,
            )
            return {}
        with gc_paused():
            result = evaluate(gt, preds)
            hota = None
            if self._hota:
                from .hota import evaluate_hota, format_hota_table

                hota = evaluate_hota(gt, preds, score_threshold=self._hota_score_threshold)
        logger.info("Evaluation of %s:\n%s", self._dataset_name, format_metrics_table(result))
        if hota is not None:
            logger.info("Evaluation of %s:\n%s", self._dataset_name, format_hota_table(hota))
        if self._output_dir:
            from .__main__ import metrics_to_json

            metrics_to_json(result, os.path.join(self._output_dir, "metrics.json"), hota)
        segm = OrderedDict(
            (k, v) for k, v in result.metrics_percent().items() if k not in ("ARs", "ARm", "ARl")
        )
        for name, ap in result.per_category_percent().items():
            segm[f"AP-{name}"] = ap
        out = OrderedDict(segm=segm)
        if hota is not None:
            out["hota"] = OrderedDict((k, 100 * v) for k, v in hota.items() if k != "per_category")
        return out
