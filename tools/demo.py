#!/usr/bin/env python
"""Run any project's model on your own video and draw its tracks.

    python tools/demo.py --config-file projects/VISOLO/configs/synthvis/VISOLO_R18.yaml \
        --video-input VIDEO.mp4 | --input 'frames/*.jpg' --output OUT.mp4 MODEL.WEIGHTS model_final.pth

Writes OUT.mp4 (each track's mask and label in one colour for its whole life, at the input video's
frame rate unless --fps is given), OUT_sheet.png (a contact sheet of sampled frames, each tile with its
frame number) and OUT_results.json (the tracks in the YouTube-VIS results format, with the category ids
of the data set the class names come from). Class names come from the metadata of the config's data
sets (DATASETS.TEST, then DATASETS.TRAIN; your own through DATASETS.YTVIS_JSON); the demo stops if
none has them or their number differs from the model's. Config overrides go after --opts (or at the
end of the command line), as in detectron2's demo.
"""

import argparse
import json
import logging
import os
import sys

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

from vis_core.config import get_num_classes
from vis_core.data import YTVISDatasetMapper, check_num_classes
from vis_core.engine import load_inference_weights
from vis_core.engine.project import setup_project_cfg
from vis_core.evaluation.results import video_output_to_results
from vis_core.inference.video_io import VideoFrames, VideoWriter, list_frame_files
from vis_core.inference.visualize import TrackDrawer, contact_sheet

logger = logging.getLogger("vis_core.demo")

SHEET_TILE_WIDTH = 320  # pixels


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config-file", required=True, help="a config of projects/<Method>/configs/"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video-input", help="an mp4 (or any video OpenCV reads)")
    source.add_argument("--input", help="a glob of frame files, e.g. 'frames/*.jpg', or a folder")
    parser.add_argument("--output", required=True, help="the mp4 to write")
    parser.add_argument("--confidence-threshold", type=float, default=0.3, help="tracks drawn")
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate of the written mp4 (default: the input video's; 10 for frame files)",
    )
    parser.add_argument("--sheet-frames", type=int, default=8, help="frames on the contact sheet")
    parser.add_argument(
        "--opts",
        dest="flag_opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides KEY VALUE ..., as in detectron2's demo",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[], help="config overrides KEY VALUE"
    )
    return parser


def class_metadata(cfg):
    """(name, metadata) of the first of the config's data sets (DATASETS.TEST, then DATASETS.TRAIN)
    with ``thing_classes``, checked against the model's class count. Raises ValueError if there is
    none or the counts differ."""
    names = list(dict.fromkeys(list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN)))
    for name in names:
        metadata = MetadataCatalog.get(name)
        if metadata.get("thing_classes") is None and name in DatasetCatalog.list():
            DatasetCatalog.get(name)  # a set of your own gets its class names when loaded
        if metadata.get("thing_classes") is not None:
            num_classes = get_num_classes(cfg)
            if num_classes is not None:
                check_num_classes(*num_classes, name, "drawing the demo's labels")
            return name, metadata
    raise ValueError(
        f"The demo labels tracks with the class names of the config's data sets, but none of "
        f"DATASETS.TEST + DATASETS.TRAIN = {names} has thing_classes. Name the data set the "
        "model was trained on, e.g. --opts DATASETS.YTVIS_JSON \"[['my_val', 'val.json', "
        "'JPEGImages']]\" DATASETS.TEST \"('my_val',)\""
    )


def has_any_mask(output, i):
    """Whether track ``i`` of a common video output has a mask in at least one frame."""
    if "pred_mask_rles" in output:
        return any(rle is not None for rle in output["pred_mask_rles"][i])
    return bool(output["pred_masks"][i].any())


def input_fps(video_input):
    """The frame rate an mp4 declares, or None (frame files, or a container without one)."""
    if video_input is None:
        return None
    capture = cv2.VideoCapture(video_input)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return fps if fps and fps > 0 else None


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="vis_core")
    cfg = setup_project_cfg(args.config_file, list(args.opts) + list(args.flag_opts))
    dataset_name, metadata = class_metadata(cfg)
    model = build_model(cfg)
    model.eval()
    if cfg.MODEL.WEIGHTS:
        load_inference_weights(model, cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: the model has random weights")

    files = list_frame_files(args.input) if args.input else None
    # Frames are decoded when the model reaches them and again for drawing, never held all at once.
    frames = VideoFrames(video_input=args.video_input, frame_files=files)
    h, w = frames.size
    logger.info("Video of %d frames of %dx%d", len(frames), w, h)
    mapper = YTVISDatasetMapper(cfg, is_train=False)
    with torch.no_grad():
        output = model([mapper.video_input(frames)])[0]
    logger.info(
        "%d tracks, %d above %.2f",
        len(output["pred_scores"]),
        int((output["pred_scores"] >= args.confidence_threshold).sum()),
        args.confidence_threshold,
    )

    drawer = TrackDrawer(output, metadata, score_threshold=args.confidence_threshold)
    empty = [i for i in drawer.keep if not has_any_mask(output, i)]
    if empty:
        logger.warning(
            "%d of the %d tracks drawn have no mask in any frame (#%s); they appear in "
            "%s_results.json but not in the video",
            len(empty),
            len(drawer.keep),
            ", #".join(map(str, empty)),
            os.path.splitext(args.output)[0],
        )
    fps = args.fps or input_fps(args.video_input) or 10.0
    sheet_idx = set(
        np.linspace(0, len(frames) - 1, min(args.sheet_frames, len(frames))).astype(int)
    )
    sheet = []
    with VideoWriter(args.output, fps=fps) as writer:
        for t, frame in enumerate(tqdm(frames, desc="drawing")):
            writer.write(drawer.draw(frame, t))
            if t in sheet_idx:  # drawn again at the tile's size, so that its labels stay legible
                sheet.append(drawer.draw(frame, t, width=SHEET_TILE_WIDTH))
    stem = os.path.splitext(args.output)[0]
    tiles = [f"frame {t}" for t in sorted(sheet_idx)]
    cv2.imwrite(
        f"{stem}_sheet.png", contact_sheet(sheet, width=SHEET_TILE_WIDTH, labels=tiles)[:, :, ::-1]
    )
    to_dataset_id = metadata.get("thing_dataset_id_to_contiguous_id", None)
    to_dataset_id = {v: k for k, v in to_dataset_id.items()} if to_dataset_id else None
    results = video_output_to_results(0, output, h, w, len(frames), to_dataset_id)
    with open(f"{stem}_results.json", "w") as f:
        json.dump(results, f)
    logger.info(
        "Wrote %s (%.3g fps), %s_sheet.png and %s_results.json (category ids of %s)",
        args.output,
        fps,
        stem,
        stem,
        dataset_name,
    )


if __name__ == "__main__":
    sys.exit(main())
