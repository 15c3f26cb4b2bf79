"""Reading a user's video (an mp4 or a folder/glob of frames) and writing one."""

import glob
import os

import cv2
import numpy as np

from ..utils.lazy_sequence import LazySequence

__all__ = ["list_frame_files", "read_frames", "VideoFrames", "VideoWriter"]


def list_frame_files(pattern):
    """Sorted frame paths of a glob pattern ('frames/*.jpg') or a folder; raises if none is found."""
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "*")
    files = sorted(f for f in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(f))
    if not files:
        raise FileNotFoundError(f"no frame files match {pattern!r}")
    return files


def read_frames(*, video_input=None, frame_files=None):
    """Yield the frames of an mp4 (``video_input``) or of a list of image files, as BGR uint8 arrays,
    one at a time (see :class:`VideoFrames` for the errors)."""
    yield from VideoFrames(video_input=video_input, frame_files=frame_files)


class VideoFrames(LazySequence):
    """The frames of an mp4 (``video_input``) or of a list of image files as a sequence of BGR uint8
    arrays that are decoded only when accessed, so that a long video is never held in memory.

    Frame files are read on access. An mp4 is decoded in order: going forwards skips frames, going
    back reopens the file, so sequential and window-by-window access cost one decode per frame. The
    length of an mp4 is counted once (frames grabbed, not converted) at construction.

    Raises (at construction or on access):
        FileNotFoundError: the video or a frame file is missing.
        ValueError: the video has no frames, a frame cannot be decoded, or frames differ in size.
    """

    def __init__(self, *, video_input=None, frame_files=None):
        if (video_input is None) == (frame_files is None):
            raise ValueError("give exactly one of video_input and frame_files")
        self.video_input, self.frame_files = video_input, frame_files
        self._capture, self._next = None, 0
        if video_input is not None:
            if not os.path.isfile(video_input):
                raise FileNotFoundError(f"video file {video_input!r} does not exist")
            self._length = self._count_frames()
        else:
            self._length = len(frame_files)
        if self._length == 0:
            raise ValueError(f"{video_input or 'the frame list'}: the video has no frames")
        self.size = tuple(self[0].shape[:2])  # (H, W) every frame must have

    def _count_frames(self) -> int:
        capture = cv2.VideoCapture(self.video_input)
        try:
            count = 0
            while capture.grab():
                count += 1
            return count
        finally:
            capture.release()

    def __len__(self):
        return self._length

    def _item(self, t):
        if self.frame_files is not None:
            where = self.frame_files[t]
            if not os.path.isfile(where):
                raise FileNotFoundError(f"frame file {where!r} does not exist")
            frame = cv2.imread(where, cv2.IMREAD_COLOR)
        else:
            where, frame = f"{self.video_input} frame {t}", self._decode(t)
        if frame is None:
            raise ValueError(f"{where}: cannot be decoded as an image")
        size = getattr(self, "size", None)
        if size is not None and frame.shape[:2] != size:
            raise ValueError(
                f"{where} is {frame.shape[1]}x{frame.shape[0]} (WxH) but the first frame is "
                f"{size[1]}x{size[0]}: all frames of a video must share one size"
            )
        return frame

    def _decode(self, t):
        if self._capture is None or t < self._next:
            self.close()
            self._capture, self._next = cv2.VideoCapture(self.video_input), 0
        while self._next < t:
            self._capture.grab()
            self._next += 1
        ok, frame = self._capture.read()
        self._next += 1
        return frame if ok else None

    def close(self):
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __getstate__(self):  # an open capture cannot be pickled (DataLoader workers)
        state = dict(self.__dict__)
        state["_capture"], state["_next"] = None, 0
        return state


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
