import cv2
import numpy as np
import pytest
import torch
from detectron2.data import Metadata

from vis_core.engine.project import find_project_root
from vis_core.inference import (
    TrackDrawer,
    VideoWriter,
    contact_sheet,
    list_frame_files,
    read_frames,
)


def _write_frames(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    for t, (h, w) in enumerate(sizes):
        cv2.imwrite(str(folder / f"{t:05d}.png"), np.full((h, w, 3), t * 10, np.uint8))


def test_frames_from_folder_and_glob(tmp_path):
    _write_frames(tmp_path / "v", [(20, 30)] * 4)
    files = list_frame_files(str(tmp_path / "v"))
    assert files == list_frame_files(str(tmp_path / "v" / "*.png")) and len(files) == 4
    frames = list(read_frames(frame_files=files))
    assert [int(f[0, 0, 0]) for f in frames] == [0, 10, 20, 30]


def test_bad_videos_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no frame files match"):
        list_frame_files(str(tmp_path / "none" / "*.jpg"))
    _write_frames(tmp_path / "v", [(20, 30), (20, 30), (22, 30)])
    with pytest.raises(
        ValueError, match=r"00002.png is 30x22 \(WxH\) but the first frame is 30x20"
    ):
        list(read_frames(frame_files=list_frame_files(str(tmp_path / "v"))))
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        list(read_frames(frame_files=[str(tmp_path / "missing.jpg")]))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg: cannot be decoded"):
        list(read_frames(frame_files=[str(tmp_path / "broken.jpg")]))
    with pytest.raises(FileNotFoundError, match="video file"):
        list(read_frames(video_input=str(tmp_path / "nope.mp4")))
    with pytest.raises(ValueError, match="no frames"):
        list(read_frames(frame_files=[]))


def test_mp4_round_trip_and_drawing(tmp_path):
    t, h, w = 5, 48, 64
    masks = torch.zeros(2, t, h, w, dtype=torch.bool)
    masks[0, :, 10:20, 10:20] = True
    masks[1, 2:, 30:40, 30:50] = True  # track 1 appears at frame 2
    output = {
        "pred_scores": torch.tensor([0.9, 0.8]),
        "pred_classes": torch.tensor([0, 1]),
        "pred_masks": masks,
    }
    drawer = TrackDrawer(output, Metadata(name="x", thing_classes=["a", "b"]))
    frame = np.zeros((h, w, 3), np.uint8)
    drawn = [drawer.draw(frame, k) for k in range(t)]
    # a track keeps one colour: the mask centre of track 0 has the same colour in every frame
    centre = [tuple(d[15, 15]) for d in drawn]
    assert len(set(centre)) == 1 and centre[0] != (0, 0, 0)
    assert tuple(drawn[0][35, 40]) == (0, 0, 0) and tuple(drawn[3][35, 40]) != (0, 0, 0)
    path = str(tmp_path / "out" / "v.mp4")
    with VideoWriter(path, fps=5) as writer:
        for d in drawn:
            writer.write(d)
    back = list(read_frames(video_input=path))
    assert len(back) == t and back[0].shape == (h, w, 3)
    assert contact_sheet(drawn, columns=2, width=32).shape == (3 * 24, 64, 3)


def test_project_root_of_a_config(tmp_path):
    (tmp_path / "projects" / "M" / "configs" / "s").mkdir(parents=True)
    (tmp_path / "projects" / "M" / "train_net.py").write_text("")
    cfg = tmp_path / "projects" / "M" / "configs" / "s" / "a.yaml"
    cfg.write_text("")
    assert find_project_root(str(cfg)) == str(tmp_path / "projects" / "M")
    other = tmp_path / "b.yaml"
    other.write_text("")
    with pytest.raises(ValueError, match="not inside a project folder"):
        find_project_root(str(other))


def test_video_frames_decode_on_access_forwards_backwards_and_by_window(tmp_path):
    from vis_core.inference.video_io import VideoFrames

    h, w, t = 32, 48, 12
    frames = [np.full((h, w, 3), 20 * k, np.uint8) for k in range(t)]  # frame k is grey 20k
    path = str(tmp_path / "v.mp4")
    with VideoWriter(path, fps=5) as writer:
        for f in frames:
            writer.write(f)
    video = VideoFrames(video_input=path)
    assert len(video) == t and video.size == (h, w)

    def grey(frame):
        return int(round(float(frame.mean()) / 20))

    assert grey(video[7]) == 7 and grey(video[8]) == 8  # forwards
    assert grey(video[2]) == 2 and grey(video[-1]) == t - 1  # back: the file is reopened
    assert [grey(f) for f in video[3:6]] == [3, 4, 5]
    assert [grey(f) for f in video] == list(range(t))
    with pytest.raises(IndexError):
        video[t]
    for k, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{k:03d}.png"), f)
    files = VideoFrames(frame_files=list_frame_files(str(tmp_path / "*.png")))
    assert len(files) == t and [grey(f) for f in files[::5]] == [0, 5, 10]


def test_labels_drawn_at_the_tile_size_stay_legible():
    import cv2

    h, w = 720, 1280
    masks = torch.zeros(1, 1, h, w, dtype=torch.bool)
    masks[0, 0, 200:500, 300:900] = True
    output = {"pred_scores": torch.tensor([0.9]), "pred_classes": torch.tensor([0]),
              "pred_masks": masks}  # fmt: skip
    drawer = TrackDrawer(output, Metadata(name="x", thing_classes=["a"]))
    frame = np.full((h, w, 3), 255, np.uint8)
    tile = drawer.draw(frame, 0, width=320)
    shrunk = cv2.resize(drawer.draw(frame, 0), (320, 180), interpolation=cv2.INTER_AREA)
    assert tile.shape == shrunk.shape == (180, 320, 3)

    def label_rows(image):  # rows holding the label's dark box
        return int((image.max(axis=2) < 80).any(axis=1).sum())

    assert label_rows(tile) >= 8 and label_rows(shrunk) <= 4, (label_rows(tile), label_rows(shrunk))
