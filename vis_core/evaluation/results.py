"""YouTube-VIS ``results.json``: encoding model outputs, validating files, writing them for the servers.

A result is ``{"video_id", "category_id", "score", "segmentations"}`` where ``segmentations`` holds one
entry per frame of the video: a compressed RLE ``{"size": [H, W], "counts": str}``, or ``null`` where the
track is absent or empty (the official loader accepts both and scores them the same).
"""

import contextlib
import gc
import json
import logging
import math
import mmap
import numbers
import os
import zipfile
from itertools import chain, compress, repeat
from operator import is_not, itemgetter
from typing import Dict, List, Optional, Sequence, Tuple, TypedDict

import numpy as np
from pycocotools import mask as mask_util

from . import compiled

try:
    import orjson
except ImportError:  # optional: the standard json module gives the same objects, more slowly
    orjson = None
try:
    import msgspec
except ImportError:  # optional: without it results files take the generic (slower) path
    msgspec = None

logger = logging.getLogger(__name__)
_AREA_CHUNK = 65536  # RLEs per pycocotools call: bounds the memory of the decoded counts

__all__ = [
    "read_json",
    "load_results",
    "load_predictions",
    "gc_paused",
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


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector for the block.

    Parsing a results file builds millions of small acyclic objects; the collector's passes over them
    cost more than the parse itself (about twice the time on a YouTube-VIS-sized file).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_json(path: str, what: str = "file"):
    """Parse a JSON file (with orjson where installed, it is faster); errors name the file."""
    with gc_paused():
        return _parse_json(_read_bytes(path, what), path, what)


def _read_bytes(path: str, what: str) -> bytes:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The {what} {path!r} does not exist.")
    with open(path, "rb") as f:
        return f.read()


def _parse_json(data: bytes, path: str, what: str):
    try:
        if orjson is not None:
            return orjson.loads(data)
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:  # both decoders' errors are ValueErrors
        raise ValueError(f"The {what} {path!r} is not valid JSON: {error}") from None


def _check_results_list(results, path: str) -> list:
    if not isinstance(results, list):
        raise ValueError(
            f"The results file {path!r} must hold a JSON list of results "
            f"(video_id, category_id, score, segmentations); it holds a {type(results).__name__}."
        )
    return results


def load_results(path: str) -> list:
    """Read a ``results.json`` file: a JSON list of result dicts."""
    return _check_results_list(read_json(path, what="results file"), path)


if msgspec is not None:

    class _RLE(TypedDict):
        """A frame of a result as the typed decoder reads it (a plain dict, as pycocotools wants).

        Only compressed RLE fits; a file with uncompressed RLE takes the generic path.
        """

        size: Tuple[int, int]
        counts: str

    class _ResultHead(msgspec.Struct, gc=False):
        """One result with its frames left as raw JSON, decoded later by the process that needs them."""

        video_id: int
        category_id: int
        score: float
        segmentations: msgspec.Raw

    _HEADS_DECODER = msgspec.json.Decoder(List[_ResultHead])
    _FRAMES_DECODER = msgspec.json.Decoder(List[Optional[_RLE]])
    _TRACKS_DECODER = msgspec.json.Decoder(List[List[Optional[_RLE]]])


def load_predictions(path: str, gt, source: Optional[str] = None) -> "PredictionSet":
    """Read and validate a ``results.json`` file against a ground truth, as fast as possible.

    Where msgspec is installed, ids and scores are decoded and checked at once with typed structures,
    and the frames of each result are decoded (and checked) when first needed: by ``evaluate``, part
    by part, in the process that computes their areas and IoUs. A file that does not fit the typed
    structures, or an environment without msgspec, goes through the generic parser and
    ``prepare_predictions``. Either way every error names the result.
    """
    source = source or path
    with gc_paused():
        if msgspec is not None:
            data = _map_file(path, "results file")  # the frames stay in the file's pages
            try:
                heads = _HEADS_DECODER.decode(data)
            except msgspec.DecodeError:
                heads = None  # not JSON, or JSON of another shape: the generic path says which
            if heads is not None:
                results = _RawResults(heads)
                vids, cats, scores, table = _check_heads(
                    [r.video_id for r in heads], [r.category_id for r in heads],
                    [r.score for r in heads], results, gt, source,
                )  # fmt: skip
                offsets = np.zeros(len(heads) + 1, dtype=np.int64)
                np.cumsum(table[:, 0], out=offsets[1:])
                return PredictionSet(
                    vids, cats, scores, None, None, offsets, results=results,
                    decode=_RawFrameDecoder(heads, table, results, gt, source),
                )  # fmt: skip
        data = _read_bytes(path, "results file")
        results = _check_results_list(_parse_json(data, path, "results file"), path)
        return prepare_predictions(results, gt, source=source)


def _map_file(path: str, what: str):
    """The file's bytes as a read-only memory map (no copy; shared with forked workers).

    Objects that msgspec decodes as ``Raw`` refer into the map, which stays open while they live.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The {what} {path!r} does not exist.")
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return b""  # an empty file cannot be mapped
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


class _RawResults:
    """Results with raw frames, as dicts with decoded frames (only to name a result in an error)."""

    def __init__(self, heads):
        self._heads = heads

    def __len__(self):
        return len(self._heads)

    def __getitem__(self, index: int) -> dict:
        head = self._heads[index]
        return {
            "video_id": head.video_id, "category_id": head.category_id, "score": head.score,
            "segmentations": _parse_json(bytes(head.segmentations), "results", "results file"),
        }  # fmt: skip


class _RawFrameDecoder:
    """Decodes and checks the frames of chosen results (``_ResultHead.segmentations``)."""

    def __init__(self, heads, table: np.ndarray, results: _RawResults, gt, source: str):
        self._heads, self._table, self._results = heads, table, results
        self._gt, self._source = gt, source

    def __call__(self, indices: np.ndarray):
        """Frame lists of the results ``indices``, checked as ``prepare_predictions`` does.

        Returns:
            the n frame lists, their present masks one after the other, and (sum of F,) bool
            marking the present frames.
        """
        heads = self._heads
        raws = [heads[i].segmentations for i in indices.tolist()]
        if not raws:
            return [], [], np.zeros(0, dtype=bool)
        pieces = [b","] * (2 * len(raws) + 1)  # "[", raw, ",", raw, ..., "]": one copy when joined
        pieces[1::2] = raws
        pieces[0], pieces[-1] = b"[", b"]"
        try:  # one call for all: a per-call overhead of microseconds adds up over many results
            segs, typed = _TRACKS_DECODER.decode(b"".join(pieces)), True
        except msgspec.DecodeError:  # uncompressed RLE, or an error that the checks name
            segs, typed = [], True
            for i, raw in zip(indices.tolist(), raws):
                try:
                    segs.append(_FRAMES_DECODER.decode(raw))
                except msgspec.DecodeError:
                    frames = self._results[i]["segmentations"]
                    if not isinstance(frames, list):
                        _check_result(i, self._results[i], self._gt)
                    segs.append(frames)
                    typed = False
        segs, _, rles, present = _check_frames(
            segs, self._table[indices], indices, self._results, self._gt, self._source, typed
        )
        return segs, rles, present


class PredictionSet:
    """Predictions validated against a ground truth, with the per-frame mask areas computed once.

    Frames decoded lazily (``load_predictions``) and the mask areas are computed on first use, or
    part by part by ``evaluate`` in the process that needs them (``frame_lists``, ``area_parts``,
    ``set_area_part``): a forked worker never sends decoded masks back.

    Attributes:
        video_ids, category_ids: (P,) int64.
        scores: (P,) float64.
        segmentations: P lists of F entries (compressed RLE dict or None), F the video's length.
        avg_areas: (P,) float64 mean area over frames whose mask is present and non-empty.
    """

    def __init__(
        self, video_ids, category_ids, scores, segmentations, frame_areas, frame_offsets,
        results=None, decode=None,
    ):  # fmt: skip
        """
        Args:
            segmentations: P frame lists (checked); None if ``decode`` gives them.
            frame_areas: (sum of F,) int64 area of every frame, prediction after prediction, 0 where
                the frame is null; None to compute them from the masks when first needed.
            frame_offsets: (P+1,) start of each prediction in ``frame_areas``.
            results: the results the predictions come from (named in the error of a malformed RLE).
            decode: callable that takes (n,) indices and returns their checked frame lists.
        """
        self.video_ids = np.asarray(video_ids, dtype=np.int64)
        self.category_ids = np.asarray(category_ids, dtype=np.int64)
        self.scores = np.asarray(scores, dtype=np.float64)
        n_p = len(self.scores)
        self._segs = [None] * n_p if segmentations is None else segmentations
        self._decode = decode
        self._undecoded = None if decode is None else np.ones(n_p, dtype=bool)
        self._results = results
        self._offsets = frame_offsets
        self._areas = frame_areas
        self._avg_areas = None
        self._done = None  # (P,) bool, predictions whose areas are known; None: all are
        if frame_areas is None:
            self._areas = np.zeros(int(frame_offsets[-1]), dtype=np.int64)
            self._done = np.zeros(n_p, dtype=bool)

    def __len__(self):
        return len(self.scores)

    @property
    def num_frames(self) -> np.ndarray:
        """(P,) int64 number of frames of each prediction (its video's length)."""
        return np.diff(self._offsets)

    @property
    def segmentations(self) -> list:
        if self._undecoded is not None:
            self.frame_lists(np.arange(len(self)))
        return self._segs

    def frame_lists(self, indices: np.ndarray) -> list:
        """The frame lists of the given predictions, decoded (and checked) now where needed."""
        indices = np.asarray(indices, dtype=np.int64)
        self._decode_missing(indices)
        segs = self._segs
        return [segs[i] for i in indices.tolist()]

    def _decode_missing(self, indices: np.ndarray):
        """Decode the frames of the given predictions that are not yet decoded.

        Returns:
            if all of them were decoded now, their present masks one after the other and the
            present flags of their frames (as ``_RawFrameDecoder`` gives them); else None.
        """
        if self._undecoded is None:
            return None
        todo = indices[self._undecoded[indices]]
        if len(todo) == 0:
            return None
        segs, rles, present = self._decode(todo)
        for i, frames in zip(todo.tolist(), segs):
            self._segs[i] = frames
        self._undecoded[todo] = False
        if not self._undecoded.any():
            self._undecoded = self._decode = None
        return (rles, present) if len(todo) == len(indices) else None

    def area_parts(self, selected: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Pixel areas of the present masks of the selected predictions, computed now.

        Args:
            selected: (P,) bool.
        Returns:
            (N_sel,) positions in the flat frame list and (N_sel,) int64 areas, as
            ``set_area_part`` takes them.
        """
        idx = np.flatnonzero(selected)
        decoded = self._decode_missing(idx)
        if decoded is None:
            flat = list(chain.from_iterable(self._segs[i] for i in idx.tolist()))
            present = np.fromiter(map(is_not, flat, repeat(None)), bool, len(flat))
            rles = list(compress(flat, present))
        else:
            rles, present = decoded
        lengths = np.diff(self._offsets)[idx]
        first = np.repeat(self._offsets[idx] - (np.cumsum(lengths) - lengths), lengths)
        positions = (first + np.arange(len(present)))[present]  # (N_sel,) flat frame of each mask
        owner = np.repeat(idx, lengths)[present]
        return positions, _bulk_area(rles, self._results, owner)

    def set_area_part(self, selected: np.ndarray, positions: np.ndarray, areas: np.ndarray):
        """Store ``area_parts(selected)`` (computed here or in another process)."""
        self._areas[positions] = areas
        self._done |= selected
        self._avg_areas = None
        if self._done.all():
            self._done = None

    def has_pending_areas(self) -> bool:
        """Whether some areas are still to be computed."""
        return self._done is not None

    def _ensure_areas(self, indices: Optional[np.ndarray] = None) -> None:
        """Compute the missing areas (of the given predictions, or of all)."""
        if self._done is None:
            return
        todo = ~self._done
        if indices is not None:
            todo = np.zeros_like(todo)
            todo[indices[~self._done[indices]]] = True
        if todo.any():
            self.set_area_part(todo, *self.area_parts(todo))

    @property
    def avg_areas(self) -> np.ndarray:
        if self._avg_areas is None:
            self._ensure_areas()
            counts = np.diff(self._offsets)
            nonzero = self._areas > 0
            owner = np.repeat(np.arange(len(counts)), counts)[nonzero]
            sums = np.bincount(owner, weights=self._areas[nonzero], minlength=len(counts))
            n_nonzero = np.bincount(owner, minlength=len(counts))
            self._avg_areas = np.divide(
                sums, n_nonzero, out=np.zeros(len(counts)), where=n_nonzero > 0
            )  # sums of integers are exact, so this equals numpy's mean of the non-zero areas
        return self._avg_areas

    def frame_areas(self, indices: np.ndarray) -> np.ndarray:
        """(len(indices), F) int64 per-frame areas of the given predictions (one video), 0 where absent."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) == 0:
            return np.zeros((0, 0), dtype=np.int64)
        self._ensure_areas(indices)
        starts = self._offsets[indices]
        num_f = int(self._offsets[indices[0] + 1] - starts[0])
        return self._areas[starts[:, None] + np.arange(num_f)[None, :]]  # (D, F)


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
    with gc_paused():
        try:  # columns at C speed; the checks on them are vectorised in _build_prediction_set
            columns = (
                list(map(itemgetter("video_id"), results)),
                list(map(itemgetter("category_id"), results)),
                list(map(itemgetter("score"), results)),
                list(map(itemgetter("segmentations"), results)),
            )
            plain = (
                all(type(v) is int for c in columns[:2] for v in c)
                and all(type(s) is float or type(s) is int for s in columns[2])
                and all(type(s) is list for s in columns[3])
            )
        except (KeyError, TypeError):
            plain = False
        if not plain:
            columns = _columns_one_by_one(results, gt)  # raises an error that names the result
        return _build_prediction_set(columns, results, gt, source)


def _check_result(index: int, r, gt) -> None:
    """The checks of one result, one by one, raising the first problem found."""
    if not isinstance(r, dict):
        raise ValueError(f"Result #{index} is a {type(r).__name__}, not a dict.")
    for key in ("video_id", "category_id", "score", "segmentations"):
        if key not in r:
            raise _result_error(index, r, f"missing key {key!r}.")
    vid = r["video_id"]
    is_int = isinstance(vid, numbers.Integral) and not isinstance(vid, bool)
    video = gt.videos.get(int(vid)) if is_int else None
    if video is None:
        raise _result_error(index, r, f"unknown video id {vid!r}: not in the ground truth.")
    cat = r["category_id"]
    if isinstance(cat, bool) or cat not in gt.categories:
        raise _result_error(index, r, f"unknown category id {cat!r}; known: {gt.category_ids}.")
    score = r["score"]
    if isinstance(score, bool) or not isinstance(score, numbers.Real) or not math.isfinite(score):
        raise _result_error(index, r, f"score must be a finite number, got {score!r}.")
    segs = r["segmentations"]
    if not isinstance(segs, list) or len(segs) != video["length"]:
        got = len(segs) if isinstance(segs, list) else type(segs).__name__
        raise _result_error(
            index, r, f"'segmentations' must list one entry per frame "
            f"({video['length']} frames), got {got}.",
        )  # fmt: skip
    hw = [video["height"], video["width"]]
    for f, s in enumerate(segs):
        if s is None:
            continue
        if not isinstance(s, dict) or "counts" not in s or "size" not in s:
            raise _result_error(
                index, r, f"frame {f}: a segmentation must be an RLE dict with 'size' and "
                f"'counts', or null; got {s!r:.80}.",
            )  # fmt: skip
        if not isinstance(s["size"], (list, tuple)) or list(s["size"]) != hw:
            raise _result_error(
                index, r, f"frame {f}: RLE of size {s['size']}, but the video is {hw} (H, W).",
            )  # fmt: skip
        if not isinstance(s["counts"], (str, bytes, list)):
            raise _result_error(index, r, f"frame {f}: RLE 'counts' must be a string or list.")


def _columns_one_by_one(results, gt):
    """Columns of results of mixed types (numpy ints, ...), checking each result on the way."""
    columns = ([], [], [], [])
    for index, r in enumerate(results):
        _check_result(index, r, gt)
        columns[0].append(int(r["video_id"]))
        columns[1].append(int(r["category_id"]))
        columns[2].append(float(r["score"]))
        columns[3].append(list(r["segmentations"]))
    return columns


def _as_dict(result):
    if msgspec is not None and isinstance(result, msgspec.Struct):
        return msgspec.structs.asdict(result)
    return result


def _fail_at(bad: Optional[np.ndarray], results, gt, message: str):
    """Raise the error of the first flagged result (all are checked if ``bad`` is None)."""
    indices = range(len(results)) if bad is None else np.flatnonzero(bad).tolist()
    for index in indices:
        _check_result(index, _as_dict(results[index]), gt)  # names the problem
    index = indices[0]
    raise _result_error(index, _as_dict(results[index]), message)  # one they do not name


def _build_prediction_set(columns, results, gt, source: str, typed: bool = False) -> PredictionSet:
    """Vectorised checks of result columns against the ground truth, the PredictionSet.

    Args:
        columns: video ids, category ids, scores (Python ints/floats) and segmentation lists, one
            entry per result; ``results`` are the results they come from (named in errors).
        typed: the columns come from the typed decoder, which has checked that every frame is null
            or an RLE dict with a two-int size and string counts.
    """
    vids, cats, scores, segs = columns
    vid_arr, cat_arr, score_arr, table = _check_heads(vids, cats, scores, results, gt, source)
    segs, offsets, _, _ = _check_frames(
        segs, table, np.arange(len(segs)), results, gt, source, typed
    )
    # The mask areas (the slowest part) are computed when first needed, in parallel by `evaluate`.
    return PredictionSet(vid_arr, cat_arr, score_arr, segs, None, offsets, results=results)


def _check_heads(vids, cats, scores, results, gt, source: str):
    """Checks of the ids and scores of every result.

    Returns:
        (P,) int64 video ids, (P,) int64 category ids, (P,) float64 scores, and (P, 3) int64 length,
        height and width of each result's video.
    """
    n_p = len(vids)
    if n_p == 0:
        logger.warning("%s: no predictions; every category with ground truth gets AP 0.", source)
    try:
        vid_arr = np.array(vids, dtype=np.int64)
        cat_arr = np.array(cats, dtype=np.int64)
    except OverflowError:  # an id beyond int64 cannot be in the ground truth
        _fail_at(None, results, gt, "id out of range.")
    score_arr = np.array(scores, dtype=np.float64)
    gt_vids = np.array(gt.video_ids, dtype=np.int64)
    pos = np.minimum(np.searchsorted(gt_vids, vid_arr), max(len(gt_vids) - 1, 0))
    known = gt_vids[pos] == vid_arr if len(gt_vids) else np.zeros(n_p, bool)
    if not known.all():
        _fail_at(~known, results, gt, "unknown video id.")
    if not np.isin(cat_arr, gt.category_ids).all():
        _fail_at(~np.isin(cat_arr, gt.category_ids), results, gt, "unknown category id.")
    if not np.isfinite(score_arr).all():
        _fail_at(~np.isfinite(score_arr), results, gt, "score must be a finite number.")
    video_table = np.array(
        [[gt.videos[v][k] for k in ("length", "height", "width")] for v in gt.video_ids],
        dtype=np.int64,
    ).reshape(-1, 3)
    return vid_arr, cat_arr, score_arr, video_table[pos]


def _check_frames(segs, table, names, results, gt, source: str, typed: bool):
    """Checks of the frame lists of some results (their number of frames, each mask's size).

    Args:
        segs: n frame lists; ``table`` (n, 3) length, height and width of their videos; ``names``
            (n,) their indices in ``results`` (named in errors).
        typed: every frame is known to be null or an RLE dict with a two-int size and str counts.
    Returns:
        the frame lists (uncompressed RLE replaced by compressed RLE, in copies of the lists),
        (n+1,) the offsets of the lists in their concatenation, the present masks one after the
        other, and (sum of F,) bool marking the present frames.
    """
    n_p = len(segs)

    def fail(bad_local, message):
        bad = None
        if bad_local is not None:
            bad = np.zeros(len(results), dtype=bool)
            bad[names[bad_local]] = True
        _fail_at(bad, results, gt, message)

    lengths = np.fromiter(map(len, segs), np.int64, n_p)
    if (lengths != table[:, 0]).any():
        fail(lengths != table[:, 0], "wrong number of frames.")
    offsets = np.zeros(n_p + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = list(chain.from_iterable(segs))
    present = np.fromiter(map(is_not, flat, repeat(None)), bool, len(flat))
    rles = list(compress(flat, present))
    owner = np.repeat(np.arange(n_p), lengths)[present]  # (N,) result of each present frame
    try:
        sizes = list(map(itemgetter("size"), rles))
        if typed:
            size_ok, counts_types = np.ones(len(rles), bool), {str}
        else:
            size_ok = np.fromiter(map(len, sizes), np.int64, len(rles)) == 2
            counts_types = set(map(type, map(itemgetter("counts"), rles)))
    except (KeyError, TypeError):  # an entry that is not a dict, or an RLE without a key
        size_ok, counts_types = None, None
    if size_ok is None or not counts_types <= {str, bytes, list}:
        fail(None, "malformed segmentation.")
    if not size_ok.all():
        fail(np.isin(np.arange(n_p), owner[~size_ok]), "malformed RLE size.")
    try:
        hw = np.fromiter(chain.from_iterable(sizes), np.int64, 2 * len(rles)).reshape(-1, 2)
    except (TypeError, ValueError):  # a size that is not two integers
        fail(None, "malformed RLE size.")
    wrong = (hw != table[owner, 1:]).any(axis=1)
    if wrong.any():
        fail(np.isin(np.arange(n_p), owner[wrong]), "RLE of the wrong size.")
    if list in counts_types:
        rles = _compress_uncompressed(rles, segs, offsets, present, source)
    return segs, offsets, rles, present


def _compress_uncompressed(rles, segs, offsets, present, source):
    """Replace uncompressed RLE (counts as a list) by compressed RLE, in copies of the lists."""
    frame_of = np.flatnonzero(present)
    copied = set()
    for k, rle in enumerate(rles):
        if isinstance(rle["counts"], list):
            i = int(np.searchsorted(offsets, frame_of[k], side="right")) - 1
            if i not in copied:
                segs[i] = list(segs[i])  # never modify the caller's results
                copied.add(i)
            rles[k] = mask_util.frPyObjects(rle, *rle["size"])
            segs[i][frame_of[k] - offsets[i]] = rles[k]
    logger.info("%s: converted %d uncompressed RLE masks to compressed RLE.", source, len(copied))
    return rles


def _bulk_area(rles: List[dict], results, owner: np.ndarray) -> np.ndarray:
    """(N,) int64 areas of compressed RLE dicts; a malformed one raises, naming its result."""
    if not rles:
        return np.zeros(0, dtype=np.int64)
    if compiled.rle_ops is not None:
        try:
            return np.frombuffer(compiled.rle_ops.areas(rles), dtype=np.int64)
        except ValueError as error:  # args: (position of the mask, what is wrong)
            k, message = error.args
            index = int(owner[k])
            raise _result_error(
                index, _as_dict(results[index]), f"malformed RLE ({message}): {rles[k]!r:.80}"
            ) from None
    try:
        return np.concatenate(
            [
                np.asarray(mask_util.area(rles[i : i + _AREA_CHUNK]), dtype=np.int64)
                for i in range(0, len(rles), _AREA_CHUNK)
            ]
        )
    except Exception:  # noqa: BLE001 - locate the malformed RLE to name it in the error
        for k, seg in enumerate(rles):
            try:
                mask_util.area([seg])
            except Exception as error:  # noqa: BLE001
                index = int(owner[k])
                raise _result_error(
                    index, _as_dict(results[index]), f"malformed RLE ({error}): {seg!r:.80}"
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
