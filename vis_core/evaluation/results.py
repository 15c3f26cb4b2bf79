"""YouTube-VIS ``results.json``: encoding model outputs, validating files, writing them for the servers.

A result is ``{"video_id", "category_id", "score", "segmentations"}`` where ``segmentations`` holds one
entry per frame of the video: a compressed RLE ``{"size": [H, W], "counts": str}``, or ``null`` where the
track is absent or empty (the official loader accepts both and scores them the same).
"""

import json
import logging
import math
import numbers
import os
import zipfile
from typing import Dict, List, Optional, Sequence

import numpy as np
from pycocotools import mask as mask_util

try:
    import orjson
except ImportError:  # optional: the standard json module gives the same objects, more slowly
    orjson = None

logger = logging.getLogger(__name__)
_AREA_CHUNK = 65536  # RLEs per pycocotools call: bounds the memory of the decoded counts

__all__ = [
    "read_json",
    "load_results",
    "PredictionSet",
    "prepare_predictions",
    "encode_track_masks",
    "video_output_to_results",
    "write_results",
    "is_present",
]


def is_present(seg) -> bool:
    """Whether a frame entry holds a mask (the official API's truthiness test)."""
    return bool(seg)


def read_json(path: str, what: str = "file"):
    """Parse a JSON file (with orjson where installed, it is faster); errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The {what} {path!r} does not exist.")
    with open(path, "rb") as f:
        data = f.read()
    try:
        if orjson is not None:
            return orjson.loads(data)
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:  # both decoders' errors are ValueErrors
        raise ValueError(f"The {what} {path!r} is not valid JSON: {error}") from None


def load_results(path: str) -> list:
    """Read a ``results.json`` file: a JSON list of result dicts."""
    results = read_json(path, what="results file")
    if not isinstance(results, list):
        raise ValueError(
            f"The results file {path!r} must hold a JSON list of results "
            f"(video_id, category_id, score, segmentations); it holds a {type(results).__name__}."
        )
    return results


class PredictionSet:
    """Predictions validated against a ground truth, with the per-frame mask areas computed once.

    Attributes:
        video_ids, category_ids: (P,) int64.
        scores: (P,) float64.
        segmentations: P lists of F entries (compressed RLE dict or None).
        avg_areas: (P,) float64 mean area over frames whose mask is present and non-empty.
    """

    def __init__(self, video_ids, category_ids, scores, segmentations, flat_areas, flat_offsets):
        self.video_ids = np.asarray(video_ids, dtype=np.int64)
        self.category_ids = np.asarray(category_ids, dtype=np.int64)
        self.scores = np.asarray(scores, dtype=np.float64)
        self.segmentations = segmentations
        self._flat_areas = flat_areas  # areas of the present frames, prediction after prediction
        self._offsets = flat_offsets  # (P+1,) start of each prediction in _flat_areas
        counts = np.diff(flat_offsets)
        owner = np.repeat(np.arange(len(counts)), counts)
        nonzero = flat_areas > 0
        sums = np.bincount(owner[nonzero], weights=flat_areas[nonzero], minlength=len(counts))
        n_nonzero = np.bincount(owner[nonzero], minlength=len(counts))
        self.avg_areas = np.divide(
            sums, n_nonzero, out=np.zeros(len(counts)), where=n_nonzero > 0
        )  # sums of integers are exact, so this equals numpy's mean of the non-zero areas

    def __len__(self):
        return len(self.scores)

    def frame_areas(self, indices: np.ndarray) -> np.ndarray:
        """(len(indices), F) int64 per-frame areas of the given predictions (one video), 0 where absent."""
        if len(indices) == 0:
            return np.zeros((0, 0), dtype=np.int64)
        num_f = len(self.segmentations[indices[0]])
        out = np.zeros((len(indices), num_f), dtype=np.int64)
        for row, i in enumerate(indices.tolist()):
            segs = self.segmentations[i]
            present = [f for f, s in enumerate(segs) if s is not None]
            out[row, present] = self._flat_areas[self._offsets[i] : self._offsets[i + 1]]
        return out


def _result_error(index: int, result, message: str) -> ValueError:
    vid = result.get("video_id", "?") if isinstance(result, dict) else "?"
    return ValueError(f"Result #{index} (video_id {vid}): {message}")


def prepare_predictions(results: Sequence[dict], gt, source: str = "results") -> PredictionSet:
    """Validate results against a ground truth and compute their mask areas.

    Every check raises a ``ValueError`` that names the result; nothing is returned on bad input.
    Compressed RLE (counts as str or bytes) and uncompressed RLE (counts as a list) are accepted; an
    empty mask may be given as null or as an RLE with no foreground.

    Args:
        results: list of result dicts.
        gt: a ``YTVISGroundTruth``.
    """
    if not isinstance(results, (list, tuple)):
        raise ValueError(f"{source}: expected a list of results, got {type(results).__name__}.")
    if len(results) == 0:
        logger.warning("%s: no predictions; every category with ground truth gets AP 0.", source)
    categories = set(gt.category_ids)
    video_ids, category_ids, scores, segmentations = [], [], [], []
    flat: List[dict] = []
    offsets = [0]
    converted = 0
    for index, r in enumerate(results):
        if not isinstance(r, dict):
            raise ValueError(f"{source}: result #{index} is a {type(r).__name__}, not a dict.")
        for key in ("video_id", "category_id", "score", "segmentations"):
            if key not in r:
                raise _result_error(index, r, f"missing key {key!r}.")
        vid = r["video_id"]
        is_int = isinstance(vid, numbers.Integral) and not isinstance(vid, bool)
        video = gt.videos.get(int(vid)) if is_int else None
        if video is None:
            raise _result_error(index, r, f"unknown video id {vid!r}: not in the ground truth.")
        if r["category_id"] not in categories:
            raise _result_error(
                index, r, f"unknown category id {r['category_id']!r}; known: {sorted(categories)}."
            )
        score = r["score"]
        if (
            isinstance(score, bool)
            or not isinstance(score, numbers.Real)
            or not math.isfinite(score)
        ):
            raise _result_error(index, r, f"score must be a finite number, got {score!r}.")
        segs = r["segmentations"]
        if not isinstance(segs, list) or len(segs) != video["length"]:
            got = len(segs) if isinstance(segs, list) else type(segs).__name__
            raise _result_error(
                index, r, f"'segmentations' must list one entry per frame "
                f"({video['length']} frames), got {got}.",
            )  # fmt: skip
        hw = [video["height"], video["width"]]
        present = [s for s in segs if s is not None]
        try:  # fast path: compressed RLE of the right size (the common case)
            if all(s["size"] == hw and type(s["counts"]) is str for s in present):
                flat.extend(present)
                offsets.append(len(flat))
                video_ids.append(int(vid))
                category_ids.append(r["category_id"])
                scores.append(float(score))
                segmentations.append(segs)
                continue
        except (TypeError, KeyError, IndexError):
            pass  # the careful loop below names the problem
        present = []
        for f, s in enumerate(segs):
            if s is None:
                continue
            if not isinstance(s, dict) or "counts" not in s or "size" not in s:
                raise _result_error(
                    index, r, f"frame {f}: a segmentation must be an RLE dict with 'size' and "
                    f"'counts', or null; got {s!r:.80}.",
                )  # fmt: skip
            if list(s["size"]) != hw:
                raise _result_error(
                    index, r, f"frame {f}: RLE of size {s['size']}, but the video is {hw} (H, W).",
                )  # fmt: skip
            if isinstance(s["counts"], list):
                if segs is r["segmentations"]:
                    segs = list(segs)  # never modify the caller's results
                s = mask_util.frPyObjects(s, *hw)
                segs[f] = s
                converted += 1
            elif not isinstance(s["counts"], (str, bytes)):
                raise _result_error(index, r, f"frame {f}: RLE 'counts' must be a string or list.")
            present.append(s)
        flat.extend(present)
        offsets.append(len(flat))
        video_ids.append(int(vid))
        category_ids.append(r["category_id"])
        scores.append(float(score))
        segmentations.append(segs)
    if converted:
        logger.info("%s: converted %d uncompressed RLE masks to compressed RLE.", source, converted)
    areas = _bulk_area(flat, results, offsets, source)
    return PredictionSet(
        video_ids, category_ids, scores, segmentations, areas, np.asarray(offsets, np.int64)
    )


def _bulk_area(flat: List[dict], results, offsets, source) -> np.ndarray:
    if not flat:
        return np.zeros(0, dtype=np.int64)
    try:
        return np.concatenate(
            [
                np.asarray(mask_util.area(flat[i : i + _AREA_CHUNK]), dtype=np.int64)
                for i in range(0, len(flat), _AREA_CHUNK)
            ]
        )
    except Exception:  # noqa: BLE001 - locate the malformed RLE to name it in the error
        for k, seg in enumerate(flat):
            try:
                mask_util.area([seg])
            except Exception as error:  # noqa: BLE001
                index = int(np.searchsorted(offsets, k, side="right")) - 1
                raise _result_error(
                    index, results[index], f"malformed RLE ({error}): {seg!r:.80}"
                ) from None
        raise


def encode_track_masks(masks) -> List[List[Optional[dict]]]:
    """Encode dense track masks as compressed RLE, with None for empty frames.

    Args:
        masks: (N, T, H, W) bool tensor or array.
    Returns:
        N lists of T entries: ``{"size": [H, W], "counts": bytes}`` or None.
    """
    if hasattr(masks, "detach"):  # a torch tensor (torch is not imported by the metric core)
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 4:
        raise ValueError(f"pred_masks must be (N, T, H, W), got shape {masks.shape}.")
    n, t, h, w = masks.shape
    if n == 0 or t == 0:
        return [[None] * t for _ in range(n)]
    nonempty = masks.reshape(n, t, -1).any(axis=2)  # (N, T)
    out: List[List[Optional[dict]]] = [[None] * t for _ in range(n)]
    idx = np.argwhere(nonempty)
    if len(idx) == 0:
        return out
    # (K, H, W) -> (H, W, K) in Fortran order, as pycocotools wants.
    stack = np.asfortranarray(masks[idx[:, 0], idx[:, 1]].transpose(1, 2, 0).astype(np.uint8))
    rles = mask_util.encode(stack)
    for (i, f), rle in zip(idx.tolist(), rles):
        out[i][f] = rle
    return out


def _check_rle_lists(rles, n: int, t: int, h: int, w: int, video_id) -> None:
    if len(rles) != n:
        raise ValueError(f"Video {video_id}: pred_mask_rles has {len(rles)} tracks, expected {n}.")
    for i, track in enumerate(rles):
        if len(track) != t:
            raise ValueError(
                f"Video {video_id}: pred_mask_rles[{i}] has {len(track)} frames, expected {t}."
            )
        for f, rle in enumerate(track):
            if rle is not None and list(rle["size"]) != [h, w]:
                raise ValueError(
                    f"Video {video_id}: pred_mask_rles[{i}][{f}] has size {rle['size']}, "
                    f"expected the original video size {[h, w]}."
                )


def video_output_to_results(
    video_id: int,
    output: dict,
    height: int,
    width: int,
    length: int,
    contiguous_to_dataset_id: Optional[Dict[int, int]] = None,
) -> List[dict]:
    """Turn the common video output of a model into result dicts (RLE counts as str, null if empty).

    Args:
        output: ``pred_scores`` (N,), ``pred_classes`` (N,) contiguous ids, and ``pred_masks``
            (N, T, H, W) bool or ``pred_mask_rles`` (N lists of T RLE dicts or None).
        contiguous_to_dataset_id: contiguous class id -> the data set's category id (identity if None).
    """
    scores = output["pred_scores"]
    classes = output["pred_classes"]
    scores = scores.tolist() if hasattr(scores, "tolist") else list(scores)
    classes = classes.tolist() if hasattr(classes, "tolist") else list(classes)
    n = len(scores)
    if len(classes) != n:
        raise ValueError(f"Video {video_id}: {n} pred_scores but {len(classes)} pred_classes.")
    if "pred_mask_rles" in output:
        rles = output["pred_mask_rles"]
        _check_rle_lists(rles, n, length, height, width, video_id)
    elif "pred_masks" in output:
        masks = output["pred_masks"]
        shape = tuple(masks.shape)
        if shape[:2] != (n, length) or shape[2:] != (height, width):
            raise ValueError(
                f"Video {video_id}: pred_masks has shape {shape}, expected (N={n}, T={length}, "
                f"H={height}, W={width}) at the original video size."
            )
        rles = encode_track_masks(masks)
    else:
        raise ValueError(f"Video {video_id}: the output has neither pred_masks nor pred_mask_rles.")
    results = []
    for score, cls, track in zip(scores, classes, rles):
        if contiguous_to_dataset_id is not None:
            if int(cls) not in contiguous_to_dataset_id:
                raise ValueError(f"Video {video_id}: predicted class {cls} has no data set id.")
            category_id = contiguous_to_dataset_id[int(cls)]
        else:
            category_id = int(cls)
        segs = [_json_rle(r) for r in track]
        results.append(
            {"video_id": video_id, "score": float(score), "category_id": int(category_id),
             "segmentations": segs}
        )  # fmt: skip
    return results


def _json_rle(rle) -> Optional[dict]:
    """A compressed RLE with str counts, or None when absent or empty."""
    if rle is None:
        return None
    counts = rle["counts"]
    if isinstance(counts, list):
        rle = mask_util.frPyObjects(rle, *rle["size"])
        counts = rle["counts"]
    if mask_util.area(rle) == 0:
        return None
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def write_results(results: List[dict], output_dir: str, zip_name: str = "results.zip") -> str:
    """Write ``results.json`` and a zip holding it (what the servers take). Returns the json path.

    Both files are written to temporary names first and renamed, so a failure leaves no partial file.
    """
    os.makedirs(output_dir, exist_ok=True)
    json_path = os.path.join(output_dir, "results.json")
    zip_path = os.path.join(output_dir, zip_name)
    tmp_json, tmp_zip = json_path + ".tmp", zip_path + ".tmp"
    with open(tmp_json, "w") as f:
        json.dump(results, f)
    with zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(tmp_json, arcname="results.json")
    os.replace(tmp_json, json_path)
    os.replace(tmp_zip, zip_path)
    logger.info("Wrote %d results to %s and %s", len(results), json_path, zip_path)
    return json_path
