"""Reading a user's video (an mp4 or a folder/glob of frames) and writing one."""

import glob
import os

import cv2
import numpy as np

__all__ = ["list_frame_files", "read_frames", "VideoWriter"]


def list_frame_files(pattern):
    """Sorted frame paths of a glob pattern ('frames/*.jpg') or a folder; raises if none is found."""
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "*")
    files = sorted(f for f in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(f))
    if not files:
        raise FileNotFoundError(f"no frame files match {pattern!r}")
    return files


def read_frames(*, video_input=None, frame_files=None):
    """Yield the frames of an mp4 (``video_input``) or of a list of image files, as BGR uint8 arrays.

    Raises:
        FileNotFoundError: the video or a frame file is missing.
        ValueError: the video has no frames, a frame cannot be decoded, or frames differ in size.
    """
    if (video_input is None) == (frame_files is None):
        raise ValueError("give exactly one of video_input and frame_files")
    size = None
    count = 0
    for where, frame in _raw_frames(video_input, frame_files):
        if frame is None:
            raise ValueError(f"{where}: cannot be decoded as an image")
        if size is None:
            size = frame.shape[:2]
        elif frame.shape[:2] != size:
            raise ValueError(
                f"{where} is {frame.shape[1]}x{frame.shape[0]} (WxH) but the first frame is "
                f"{size[1]}x{size[0]}: all frames of a video must share one size"
            )
        count += 1
        yield frame
    if count == 0:
        raise ValueError(f"{video_input or 'the frame list'}: the video has no frames")


def _raw_frames(video_input, frame_files):
    if video_input is not None:
        if not os.path.isfile(video_input):
            raise FileNotFoundError(f"video file {video_input!r} does not exist")
        capture = cv2.VideoCapture(video_input)
        try:
            t = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield f"{video_input} frame {t}", frame
                t += 1
        finally:
            capture.release()
    for path in frame_files:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"frame file {path!r} does not exist")
        yield path, cv2.imread(path, cv2.IMREAD_COLOR)


class VideoWriter:
    """Writes RGB frames to an mp4 (OpenCV's mp4v codec), sized by the first frame."""

    def __init__(self, path, fps=10.0):
        self.path, self.fps, self._writer = path, fps, None
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def write(self, rgb):
        if self._writer is None:
            h, w = rgb.shape[:2]
            self._writer = cv2.VideoWriter(
                self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h)
            )
            if not self._writer.isOpened():
                raise OSError(f"cannot open {self.path!r} for writing an mp4")
        self._writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))

    def close(self):
        if self._writer is not None:
            self._writer.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
