#!/usr/bin/env python
"""Run any project's model on your own video and draw its tracks.

    python tools/demo.py --config-file projects/VISOLO/configs/synthvis/VISOLO_R18.yaml \
        --video-input VIDEO.mp4 | --input 'frames/*.jpg' --output OUT.mp4 MODEL.WEIGHTS model_final.pth

Writes OUT.mp4 (each track's mask and label in one colour for its whole life), OUT_sheet.png (a contact
sheet of sampled frames) and OUT_results.json (the tracks in the YouTube-VIS results format, with the
category ids of the config's first test data set).
"""

import argparse
import json
import logging
import os
import sys

import cv2
import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

from vis_core.data import YTVISDatasetMapper
from vis_core.engine import load_inference_weights
from vis_core.engine.project import setup_project_cfg
from vis_core.evaluation.results import video_output_to_results
from vis_core.inference.video_io import VideoFrames, VideoWriter, list_frame_files
from vis_core.inference.visualize import TrackDrawer, contact_sheet

logger = logging.getLogger("vis_core.demo")


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
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of the written mp4")
    parser.add_argument("--sheet-frames", type=int, default=8, help="frames on the contact sheet")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[], help="config overrides KEY VALUE"
    )
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="vis_core")
    cfg = setup_project_cfg(args.config_file, args.opts)
    model = build_model(cfg)
    model.eval()
    if cfg.MODEL.WEIGHTS:
        load_inference_weights(model, cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: the model has random weights")
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "__unused")

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
    sheet_idx = set(
        np.linspace(0, len(frames) - 1, min(args.sheet_frames, len(frames))).astype(int)
    )
    sheet = []
    with VideoWriter(args.output, fps=args.fps) as writer:
        for t, frame in enumerate(tqdm(frames, desc="drawing")):
            drawn = drawer.draw(frame, t)
            writer.write(drawn)
            if t in sheet_idx:
                sheet.append(drawn)
    stem = os.path.splitext(args.output)[0]
    cv2.imwrite(f"{stem}_sheet.png", contact_sheet(sheet)[:, :, ::-1])
    to_dataset_id = metadata.get("thing_dataset_id_to_contiguous_id", None)
    to_dataset_id = {v: k for k, v in to_dataset_id.items()} if to_dataset_id else None
    results = video_output_to_results(0, output, h, w, len(frames), to_dataset_id)
    with open(f"{stem}_results.json", "w") as f:
        json.dump(results, f)
    logger.info("Wrote %s, %s_sheet.png and %s_results.json", args.output, stem, stem)


if __name__ == "__main__":
    sys.exit(main())
