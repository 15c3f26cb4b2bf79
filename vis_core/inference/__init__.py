"""Inference helpers shared by all projects: reading users' videos, video-level post-processing
(top-k pairs, RLE, window linking) and drawing tracks."""

from .postprocess import encode_rle, link_queries, select_top_pairs
from .video_io import VideoWriter, list_frame_files, read_frames
from .visualize import TrackDrawer, contact_sheet, frame_masks

__all__ = [
    "TrackDrawer",
    "VideoWriter",
    "contact_sheet",
    "encode_rle",
    "frame_masks",
    "link_queries",
    "list_frame_files",
    "read_frames",
    "select_top_pairs",
]
