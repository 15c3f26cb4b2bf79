"""Inference helpers shared by all projects: reading users' videos and drawing tracks."""

from .video_io import VideoWriter, list_frame_files, read_frames
from .visualize import TrackDrawer, contact_sheet, frame_masks

__all__ = [
    "TrackDrawer",
    "VideoWriter",
    "contact_sheet",
    "frame_masks",
    "list_frame_files",
    "read_frames",
]
