"""Loading YouTube-VIS-format JSON (YouTube-VIS 2019/2021, OVIS, synthvis) into detectron2 dataset dicts.

One dataset dict per video::

    {"file_names": [T paths], "height": H, "width": W, "length": T, "video_id": int,
     "json_file": the JSON it came from (named in the mapper's errors),
     "annotations": [T lists of {"id", "category_id" (contiguous), "bbox", "bbox_mode",
                                 "segmentation" (compressed RLE or polygons), "iscrowd"}]}

An object is listed in a frame's list only where its segmentation is not null. Test JSON (no
``annotations`` key) gives dicts without ``annotations``.
"""

import json
import logging
import os

import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils.colormap import colormap
from fvcore.common.timer import Timer

from ..evaluation.compiled import rle_ops

__all__ = [
    "load_ytvis_json",
    "register_ytvis_from_config",
    "register_ytvis_instances",
    "YTVISFormatError",
]

logger = logging.getLogger(__name__)

VIDEO_KEYS = ("id", "file_names", "height", "width")


class YTVISFormatError(ValueError):
    """A YouTube-VIS-format JSON file breaks the format; the message names the file and the record."""


def _read_json(json_file):
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"YTVIS annotation file {json_file!r} does not exist")
    with open(json_file) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise YTVISFormatError(f"{json_file}: not valid JSON ({e})") from None


def _check_keys(record, keys, where):
    missing = [k for k in keys if k not in record]
    if missing:
        raise YTVISFormatError(f"{where}: missing key(s) {missing}; present: {sorted(record)}")


def category_id_map(categories, json_file):
    """Map the JSON's category ids (sorted) to contiguous ids 0..K-1."""
    ids = [c["id"] for c in categories]
    if len(set(ids)) != len(ids):
        raise YTVISFormatError(
            f"{json_file}: duplicate category ids in 'categories': {sorted(ids)}"
        )
    return {cid: i for i, cid in enumerate(sorted(ids))}


def _frame_segmentation(seg, height, width, where):
    """Validate one frame's segmentation; return compressed RLE or polygons, or None if absent.

    Accepts compressed RLE (counts as str), uncompressed RLE (counts as a list of ints) and polygons.
    """
    if seg is None:
        return None
    if isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            raise YTVISFormatError(
                f"{where}: RLE needs 'counts' and 'size', got keys {sorted(seg)}"
            )
        if list(seg["size"]) != [height, width]:
            raise YTVISFormatError(
                f"{where}: RLE size {list(seg['size'])} differs from the video's [height, width] = "
                f"{[height, width]}"
            )
        if isinstance(seg["counts"], list):  # uncompressed RLE
            if sum(seg["counts"]) != height * width:
                raise YTVISFormatError(
                    f"{where}: uncompressed RLE counts sum to {sum(seg['counts'])}, expected "
                    f"height*width = {height * width}"
                )
            return mask_util.frPyObjects(seg, height, width)
        return seg
    if isinstance(seg, list):
        polygons = [p for p in seg if len(p) >= 6 and len(p) % 2 == 0]
        if len(polygons) != len(seg):
            raise YTVISFormatError(
                f"{where}: polygons must be lists of at least 3 (x, y) pairs; got lengths "
                f"{[len(p) for p in seg]}"
            )
        return polygons if polygons else None
    raise YTVISFormatError(
        f"{where}: segmentation must be an RLE dict, polygons or null, got {type(seg)}"
    )


def check_compressed_rles(rles, where):
    """Raise YTVISFormatError when a compressed RLE's runs do not add up to its size's height x
    width (or its string is not compressed RLE): ``where(k)`` names mask k (file, annotation, video,
    frame). vis_core._rle checks them all in one pass; without it pycocotools decodes each one."""
    if rle_ops is not None:
        try:
            rle_ops.areas(rles)
        except ValueError as error:
            k, what = error.args
            raise YTVISFormatError(
                f"{where(k)}: invalid compressed RLE: {what}{_RLE_FIX}"
            ) from None
        return
    for k, rle in enumerate(rles):
        try:
            mask_util.decode(rle)
        except (ValueError, TypeError) as error:
            raise YTVISFormatError(
                f"{where(k)}: invalid compressed RLE: {error}{_RLE_FIX}"
            ) from None


_RLE_FIX = (
    "; re-encode the mask with pycocotools.mask.encode(np.asfortranarray(mask)) for the "
    "video's [height, width]"
)


def _bbox_of(seg, height, width):
    if isinstance(seg, dict):
        return mask_util.toBbox(seg).tolist()
    rle = mask_util.merge(mask_util.frPyObjects(seg, height, width))
    return mask_util.toBbox(rle).tolist()


def load_ytvis_json(json_file, image_root, dataset_name=None, check_files=True):
    """Load a YouTube-VIS-format JSON file as a list of per-video detectron2 dataset dicts.

    Args:
        json_file (str): path to the JSON (``videos``, ``categories`` and, with ground truth, ``annotations``).
        image_root (str): directory the videos' ``file_names`` are relative to.
        dataset_name (str or None): if given, its metadata receives ``thing_classes``,
            ``thing_dataset_id_to_contiguous_id`` and ``thing_colors`` where not already set; an existing
            id mapping (the built-in splits' official lists) is used and checked against the file.
        check_files (bool): raise if a frame file does not exist.

    Returns:
        list[dict]: one dict per video, see the module docstring.

    Raises:
        FileNotFoundError: the JSON or a frame file is missing.
        YTVISFormatError: the JSON breaks the format; the message names the file, video and annotation.
    """
    timer = Timer()
    data = _read_json(json_file)
    if not isinstance(data, dict):
        raise YTVISFormatError(
            f"{json_file}: top level must be an object, got {type(data).__name__}"
        )
    _check_keys(data, ("videos", "categories"), json_file)

    id_map = None
    meta = MetadataCatalog.get(dataset_name) if dataset_name else None
    if meta is not None and hasattr(meta, "thing_dataset_id_to_contiguous_id"):
        id_map = meta.thing_dataset_id_to_contiguous_id
        unknown = sorted({c["id"] for c in data["categories"]} - set(id_map))
        if unknown:
            raise YTVISFormatError(
                f"{json_file}: categories {unknown} are not among the {len(id_map)} categories "
                f"registered for data set {dataset_name!r}"
            )
    else:
        id_map = category_id_map(data["categories"], json_file)
        if meta is not None:
            cats = sorted(data["categories"], key=lambda c: c["id"])
            meta.set(
                thing_classes=[c["name"] for c in cats],
                thing_dataset_id_to_contiguous_id=id_map,
                thing_colors=thing_colors(len(cats)),
            )

    videos = {}
    for v in data["videos"]:
        _check_keys(v, VIDEO_KEYS, f"{json_file}: video {v.get('id', '?')}")
        vid = v["id"]
        if vid in videos:
            raise YTVISFormatError(f"{json_file}: duplicate video id {vid}")
        length = v.get("length", len(v["file_names"]))
        if not v["file_names"]:
            raise YTVISFormatError(
                f"{json_file}: video {vid} has no frames ('file_names' is empty); list its frames "
                "or remove the video from 'videos'"
            )
        if length != len(v["file_names"]):
            raise YTVISFormatError(
                f"{json_file}: video {vid} has length {length} but {len(v['file_names'])} file_names"
            )
        file_names = [os.path.join(image_root, f) for f in v["file_names"]]
        if check_files:
            missing = [f for f in file_names if not os.path.isfile(f)]
            if missing:
                raise FileNotFoundError(
                    f"{json_file}: video {vid}: {len(missing)} of {length} frame files do not exist, "
                    f"first {missing[0]!r} (image_root={image_root!r})"
                )
        record = {
            "file_names": file_names,
            "height": v["height"],
            "width": v["width"],
            "length": length,
            "video_id": vid,
            "json_file": json_file,
        }
        if "annotations" in data:
            record["annotations"] = [[] for _ in range(length)]
        videos[vid] = record

    num_objects = 0
    seen_ann_ids = set()
    compressed, compressed_at = [], []  # every compressed RLE, checked at the end; (ann, video, t)
    for ann in data.get("annotations", []):
        aid = ann.get("id", "?")
        where = f"{json_file}: annotation {aid}"
        _check_keys(ann, ("id", "video_id", "category_id", "segmentations"), where)
        if aid in seen_ann_ids:
            raise YTVISFormatError(f"{where}: duplicate annotation id")
        seen_ann_ids.add(aid)
        video = videos.get(ann["video_id"])
        if video is None:
            raise YTVISFormatError(f"{where}: video_id {ann['video_id']} is not in 'videos'")
        where = f"{where} (video {video['video_id']})"
        if ann["category_id"] not in id_map:
            raise YTVISFormatError(
                f"{where}: category_id {ann['category_id']} is not in 'categories' "
                f"(known: {sorted(id_map)})"
            )
        segs = ann["segmentations"]
        if len(segs) != video["length"]:
            raise YTVISFormatError(
                f"{where}: {len(segs)} segmentations for a video of length {video['length']}"
            )
        bboxes = ann.get("bboxes") or [None] * len(segs)
        h, w = video["height"], video["width"]
        for t, seg in enumerate(segs):
            seg = _frame_segmentation(seg, h, w, f"{where}, frame {t}")
            if seg is None:
                continue
            if isinstance(seg, dict):
                compressed.append(seg)
                compressed_at.append((aid, video["video_id"], t))
            bbox = bboxes[t] if bboxes[t] is not None else _bbox_of(seg, h, w)
            video["annotations"][t].append(
                {
                    "id": ann["id"],
                    "category_id": id_map[ann["category_id"]],
                    "bbox": list(bbox),
                    "bbox_mode": BoxMode.XYWH_ABS,
                    "segmentation": seg,
                    "iscrowd": int(ann.get("iscrowd", 0)),
                }
            )
            num_objects += 1

    def where(k):
        aid, vid, t = compressed_at[k]
        return f"{json_file}: annotation {aid} (video {vid}), frame {t}"

    check_compressed_rles(compressed, where)
    logger.info(
        "Loaded %d videos, %d annotated tracks (%d object-frames) from %s in %.2f s",
        len(videos),
        len(seen_ann_ids),
        num_objects,
        json_file,
        timer.seconds(),
    )
    return list(videos.values())


def register_ytvis_instances(name, metadata, json_file, image_root):
    """Register a YouTube-VIS-format data set under ``name`` in detectron2's catalogs.

    Args:
        name (str): e.g. "my_videos_train"; the name DATASETS.TRAIN / DATASETS.TEST refer to.
        metadata (dict): extra metadata; may hold ``thing_classes``, ``thing_colors`` and
            ``thing_dataset_id_to_contiguous_id``, otherwise they are taken from the JSON when it is loaded.
        json_file (str): path to the YTVIS-format JSON.
        image_root (str): directory that the JSON's ``file_names`` are relative to.

    Nothing is read now: a missing file is reported when the data set is first used. Registering a
    name again with the same files does nothing; with other files it raises ValueError naming both.
    """
    if not isinstance(name, str):
        raise TypeError(f"register_ytvis_instances: name must be a str, got {type(name).__name__}")
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        registered = (meta.get("json_file"), meta.get("image_root"))
        if _same_files(registered, (json_file, image_root)):
            return
        raise ValueError(
            f"Data set {name!r} is already registered with json_file={registered[0]!r}, "
            f"image_root={registered[1]!r}; it cannot also be json_file={json_file!r}, "
            f"image_root={image_root!r}. Give one of them another name."
        )
    DatasetCatalog.register(name, lambda: load_ytvis_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="ytvis", **metadata
    )


def _same_files(a, b):
    return all(x is not None and y is not None and os.path.abspath(x) == os.path.abspath(y)
               for x, y in zip(a, b))  # fmt: skip


def register_ytvis_from_config(entries, key="DATASETS.YTVIS_JSON"):
    """Register every ``[name, json_file, image_root]`` of ``entries`` (the config's ``key``) with
    :func:`register_ytvis_instances`; returns the names. A malformed entry raises ValueError naming
    the key and the entry."""
    names = []
    for i, entry in enumerate(entries):
        if (
            not isinstance(entry, (list, tuple))
            or len(entry) != 3
            or not all(isinstance(x, str) and x for x in entry)
        ):
            raise ValueError(
                f"{key}[{i}] = {entry!r}: each entry must be [name, json_file, image_root] (three "
                f"non-empty strings), e.g. {key} \"[['my_train', 'train.json', 'JPEGImages']]\""
            )
        register_ytvis_instances(entry[0], {}, entry[1], entry[2])
        names.append(entry[0])
    return names


def thing_colors(num_classes):
    """Distinct RGB colours (detectron2's colormap) for ``num_classes`` classes."""
    colors = colormap(rgb=True, maximum=255)
    return [colors[i % len(colors)].astype(int).tolist() for i in range(num_classes)]
