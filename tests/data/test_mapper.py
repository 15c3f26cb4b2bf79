import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import transforms as T

from vis_core.config import add_vis_config
from vis_core.data import YTVISDatasetMapper, load_ytvis_json


def _mapper(is_train, augs, num=3, rng=2, shuffle=False):
    return YTVISDatasetMapper(
        is_train=is_train,
        augmentations=augs,
        image_format="BGR",
        sampling_frame_num=num,
        sampling_frame_range=rng,
        sampling_frame_shuffle=shuffle,
    )


def test_same_augmentation_on_every_frame(tiny_ytvis):
    json_path, image_root, _ = tiny_ytvis
    d = load_ytvis_json(json_path, image_root)[0]
    augs = [
        T.ResizeShortestEdge([24, 36, 72], 200, "choice"),
        T.RandomFlip(prob=0.5),
        T.RandomCrop("relative_range", (0.8, 0.9)),
    ]
    mapper = _mapper(True, augs, num=4, rng=5)
    np.random.seed(0)
    seen_flip = seen_noflip = False
    for _ in range(20):
        out = mapper(d)
        t_idx = out["frame_idx"]
        insts = out["instances"]
        h, w = out["image"][0].shape[1:]
        assert all(img.shape[1:] == (h, w) for img in out["image"])
        # object 1 (id 1) moves right by 2 px per frame: after ONE transform, every frame's box
        # shift per frame is the same scale*2 px in one direction, and its size is the same.
        n1 = insts[0].gt_ids.tolist().index(1) if 1 in insts[0].gt_ids.tolist() else None
        boxes = [inst.gt_boxes.tensor[0] for inst in insts if inst.gt_ids[0] == 1]
        if n1 is None or len(boxes) < 2:
            continue
        sizes = torch.stack([b[2:] - b[:2] for b in boxes])
        assert (sizes - sizes[0]).abs().max() <= 1.01
        frames = [t for t, inst in zip(t_idx, insts) if inst.gt_ids[0] == 1]
        centres = torch.stack([(b[0] + b[2]) / 2 for b in boxes])
        velocity = (centres[-1] - centres[0]) / (frames[-1] - frames[0])
        scale = w / 64 / 0.85  # roughly; only the sign and consistency matter
        if velocity > 0:
            seen_noflip = True
        else:
            seen_flip = True
        predicted = centres[0] + velocity * (torch.tensor(frames) - frames[0])
        assert (predicted - centres).abs().max() <= 1.01, (centres, frames, scale)
    assert seen_flip and seen_noflip


def test_ids_consistent_and_absent_frames(tiny_ytvis):
    json_path, image_root, masks = tiny_ytvis
    d = load_ytvis_json(json_path, image_root)[0]
    mapper = _mapper(True, [], num=6, rng=6)
    out = mapper(d)
    assert out["frame_idx"] == list(range(6))
    for t, inst in enumerate(out["instances"]):
        assert inst.gt_classes.tolist() == [0, 1]
        assert len(inst) == 2
        expected_ids = [1, -1] if t in (2, 3) else [1, 2]
        assert inst.gt_ids.tolist() == expected_ids
        np.testing.assert_array_equal(inst.gt_masks.tensor[0].numpy(), masks[(1, 1)][t] > 0)
        assert inst.gt_masks.tensor[1].any().item() == (t not in (2, 3))
        if t in (2, 3):
            assert inst.gt_boxes.tensor[1].abs().sum() == 0


@pytest.mark.parametrize("shuffle", [False, True])
def test_sampling_stays_in_range(shuffle):
    mapper = _mapper(True, [], num=3, rng=4, shuffle=shuffle)
    np.random.seed(0)
    orders = set()
    for _ in range(300):
        idx = mapper.sample_frames(30)
        assert len(idx) == 3 and len(set(idx)) == 3
        assert max(idx) - min(idx) <= 8 and all(0 <= i < 30 for i in idx)
        orders.add(idx == sorted(idx))
    assert orders == ({True, False} if shuffle else {True})
    # a video shorter than the clip repeats frames rather than failing
    assert len(mapper.sample_frames(2)) == 3


def test_clip_without_objects_is_kept_by_default_as_the_official_codes(tiny_ytvis):
    json_path, image_root, _ = tiny_ytvis
    d = load_ytvis_json(json_path, image_root)[0]
    d["annotations"] = [[] for _ in range(d["length"])]
    cfg = add_vis_config(get_cfg())
    assert cfg.INPUT.SAMPLING_MAX_TRIES == 0
    out = YTVISDatasetMapper(cfg, is_train=True)(d)
    assert len(out["image"]) == cfg.INPUT.SAMPLING_FRAME_NUM
    # every frame trains towards "no object": Instances with no track
    assert [len(inst) for inst in out["instances"]] == [0] * cfg.INPUT.SAMPLING_FRAME_NUM


def test_clip_without_objects_is_resampled(tiny_ytvis):
    json_path, image_root, _ = tiny_ytvis
    d = load_ytvis_json(json_path, image_root)[0]
    d["annotations"] = [[] for _ in range(d["length"])]
    mapper = _mapper(True, [], num=2)
    mapper.max_tries = 10
    assert mapper(d) is None  # detectron2's loader then draws another video
    d2 = load_ytvis_json(json_path, image_root)[0]
    d2["annotations"] = [a if t == 5 else [] for t, a in enumerate(d2["annotations"])]
    mapper = _mapper(True, [], num=1, rng=0)
    mapper.max_tries = 200
    np.random.seed(1)
    out = mapper(d2)
    assert out["frame_idx"] == [5]


def test_test_mode_keeps_every_frame(tiny_ytvis):
    json_path, image_root, _ = tiny_ytvis
    cfg = add_vis_config(get_cfg())
    cfg.INPUT.MIN_SIZE_TEST = 24
    d = load_ytvis_json(json_path, image_root)[0]
    out = YTVISDatasetMapper(cfg, is_train=False)(d)
    assert out["frame_idx"] == list(range(6)) and len(out["image"]) == 6
    assert out["image"][0].shape == (3, 24, 32)
    assert (out["height"], out["width"]) == (48, 64)
    assert "instances" not in out


def test_frames_of_different_size_are_rejected(tiny_ytvis):
    import cv2

    json_path, image_root, _ = tiny_ytvis
    d = load_ytvis_json(json_path, image_root)[0]
    cv2.imwrite(d["file_names"][3], np.zeros((30, 30, 3), np.uint8))
    frames = _mapper(False, [])(d)["image"]  # read when the model reaches a frame
    assert frames[2].shape[1:] == (48, 64)
    with pytest.raises(ValueError, match=r"video 1: frame 3 .*00003.png\) has size 30x30"):
        list(frames)


def test_unknown_augmentation_name():
    cfg = add_vis_config(get_cfg())
    cfg.INPUT.AUGMENTATIONS = ["resize", "rotate"]
    with pytest.raises(ValueError, match=r"INPUT.AUGMENTATIONS: unknown \['rotate'\]"):
        YTVISDatasetMapper(cfg, is_train=True)


def _frame_mapper(per_frame, num=4, angle=15.0, crop=(40, 50)):
    cfg = add_vis_config(get_cfg())
    cfg.INPUT.PER_FRAME_AUGMENTATIONS = per_frame
    cfg.INPUT.PER_FRAME_ROTATION_ANGLE = angle
    cfg.INPUT.PER_FRAME_CROP_SIZE = crop
    cfg.INPUT.AUGMENTATIONS = []
    cfg.INPUT.FORMAT = "BGR"
    cfg.INPUT.SAMPLING_FRAME_NUM = num
    cfg.INPUT.SAMPLING_FRAME_RANGE = 6
    return YTVISDatasetMapper(cfg, is_train=True)


def _bright(image):
    """(H, W) bool: pixels of the tiny set's squares (a channel at 200; the background is < 60)."""
    return image.numpy().max(axis=0) >= 130


def test_per_frame_crop_moves_each_frame_and_its_masks_on_their_own(tiny_ytvis):
    json_path, image_root, _ = tiny_ytvis
    d = load_ytvis_json(json_path, image_root)[0]
    mapper = _frame_mapper(["crop"], num=6)
    np.random.seed(0)
    offsets = []
    for _ in range(5):
        out = mapper(d)
        assert all(img.shape[1:] == (40, 50) for img in out["image"])
        for t, (img, inst) in enumerate(zip(out["image"], out["instances"])):
            assert inst.image_size == (40, 50)
            # Masks were cropped with their own frame: they cover exactly that frame's squares.
            np.testing.assert_array_equal(inst.gt_masks.tensor.any(dim=0).numpy(), _bright(img))
        # Object 1 moves right by 2 px a frame: with one window for the clip its box's x minus 2t
        # would be one number; windows drawn per frame give several within one clip.
        shifts = {
            round(float(inst.gt_boxes.tensor[0, 0]) - 2 * t)
            for t, inst in zip(out["frame_idx"], out["instances"])
            if inst.gt_ids[0] == 1
            and 0 < inst.gt_boxes.tensor[0, 0]
            and inst.gt_boxes.tensor[0, 2] < 50  # not cut by the window's edge
        }
        offsets.append(len(shifts))
    assert max(offsets) > 1


def test_per_frame_rotation_keeps_the_size_and_turns_masks_with_their_frame(tiny_ytvis):
    json_path, image_root, _ = tiny_ytvis
    d = load_ytvis_json(json_path, image_root)[0]
    mapper = _frame_mapper(["rotation"], num=3, angle=30.0)
    np.random.seed(1)
    out = mapper(d)
    h, w = d["height"], d["width"]
    assert all(img.shape[1:] == (h, w) for img in out["image"])
    tilted = 0
    for img, inst in zip(out["image"], out["instances"]):
        mask, bright = inst.gt_masks.tensor.any(dim=0).numpy(), _bright(img)
        # Nearest-neighbour masks vs bilinear images: they agree but for a rim of pixels.
        assert (mask ^ bright).sum() <= 0.25 * mask.sum()
        boxes = inst.gt_boxes.tensor[inst.gt_ids >= 0]
        areas = inst.gt_masks.tensor[inst.gt_ids >= 0].sum(dim=(1, 2)).float()
        box_areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        tilted += int((areas < 0.9 * box_areas).any())  # a turned square no longer fills its box
    assert tilted >= 2


def test_per_frame_augmentations_only_in_training_and_names_checked():
    cfg = add_vis_config(get_cfg())
    cfg.INPUT.PER_FRAME_AUGMENTATIONS = ["rotation", "crop"]
    assert YTVISDatasetMapper(cfg, is_train=False).frame_augmentations is None
    assert len(YTVISDatasetMapper(cfg, is_train=True).frame_augmentations.augs) == 2
    cfg.INPUT.PER_FRAME_AUGMENTATIONS = ["rotate"]
    with pytest.raises(ValueError, match=r"INPUT.PER_FRAME_AUGMENTATIONS: unknown \['rotate'\]"):
        YTVISDatasetMapper(cfg, is_train=True)


def test_fixed_test_size_resizes_every_frame_to_it_and_bad_sizes_are_named():
    cfg = add_vis_config(get_cfg())
    cfg.INPUT.TEST_FIXED_SIZE = (20, 36)
    mapper = YTVISDatasetMapper(cfg, is_train=False)
    out = mapper.video_input([np.zeros((48, 64, 3), np.uint8)] * 2)
    assert [tuple(im.shape) for im in out["image"]] == [(3, 20, 36)] * 2
    assert (out["height"], out["width"]) == (48, 64)
    cfg.INPUT.TEST_FIXED_SIZE = (20,)
    with pytest.raises(ValueError, match=r"INPUT.TEST_FIXED_SIZE = \(20,\)"):
        YTVISDatasetMapper(cfg, is_train=False)


def test_test_frames_are_read_only_when_accessed_one_at_a_time(tiny_ytvis, monkeypatch):
    json_path, image_root, _ = tiny_ytvis
    d = load_ytvis_json(json_path, image_root)[0]
    cfg = add_vis_config(get_cfg())
    cfg.INPUT.MIN_SIZE_TEST = 24
    mapper = YTVISDatasetMapper(cfg, is_train=False)
    reads = []
    real = mapper._read_frame
    monkeypatch.setattr(mapper, "_read_frame", lambda d, t: reads.append(t) or real(d, t))
    out = mapper(d)
    assert reads == [] and len(out["image"]) == 6
    window = out["image"][2:4]
    assert reads == [2, 3] and [tuple(x.shape) for x in window] == [(3, 24, 32)] * 2
    reads.clear()
    for t, frame in enumerate(out["image"]):  # sequential: one frame decoded per step
        assert reads == list(range(t + 1)) and frame.shape == (3, 24, 32)
    assert cfg.INPUT.FORMAT == "BGR"  # _read_frame gives the frames as OpenCV reads them
    eager = YTVISDatasetMapper(cfg, is_train=False).video_input([real(d, t) for t in range(6)])
    assert all(torch.equal(a, b) for a, b in zip(eager["image"], out["image"]))
    with pytest.raises(IndexError):
        out["image"][6]


def test_decoding_error_names_file_annotation_video_and_frame(tiny_ytvis):
    json_path, image_root, _ = tiny_ytvis
    d = load_ytvis_json(json_path, image_root)[1]
    # A dict edited after loading (the loader would have refused it): every frame's masks break.
    for frame in d["annotations"]:
        for a in frame:
            a["segmentation"] = dict(a["segmentation"], counts=a["segmentation"]["counts"] + "1")
    mapper = _mapper(True, [], num=2, rng=1)
    with pytest.raises(
        ValueError, match=r"annotation \d \(video 2\), frame \d \(.*video2/\d+\.png\)"
    ):
        mapper(d)
    with pytest.raises(ValueError) as info:
        mapper(d)
    assert json_path in str(info.value) and "does not decode" in str(info.value)


def test_json_size_wrong_for_the_video_vs_sizes_varying_within_it(tiny_ytvis):
    import cv2

    json_path, image_root, _ = tiny_ytvis
    d = dict(load_ytvis_json(json_path, image_root)[0], height=40, width=60)
    mapper = _mapper(False, [])
    with pytest.raises(ValueError, match=r"video 1: the JSON says 40x60 .*the frames are 48x64"):
        list(mapper(d)["image"])  # test frames are read when the model reaches them
    # One frame of another size: the sizes vary within the video.
    d = load_ytvis_json(json_path, image_root)[0]
    cv2.imwrite(d["file_names"][3], np.zeros((50, 70, 3), np.uint8))
    with pytest.raises(
        ValueError, match=r"video 1: frame 3 .* sizes vary within the video"
    ) as info:
        list(mapper(d)["image"])
    assert "48x64: 5 frames (first 0), 50x70: 1 frames (first 3)" in str(info.value)
    assert json_path in str(info.value)


def test_key_random_sampling_as_tevit_draws_clips():
    """TeViT's sampler: key frame (with objects) first, the others with objects from anywhere in
    the video, distinct, in the random order drawn (not sorted); too few such frames -> None."""
    mapper = YTVISDatasetMapper(
        is_train=True,
        augmentations=[],
        image_format="BGR",
        sampling_frame_num=5,
        sampling_frame_mode="key_random",
    )
    annotations = [[{"id": 1}] if t % 3 else [] for t in range(40)]  # frames 0, 3, 6, ... empty
    rng = np.random.RandomState(0)
    clips = [mapper.sample_key_random(annotations, rng) for _ in range(300)]
    for clip in clips:
        assert len(clip) == 5 and len(set(clip)) == 5
        assert all(t % 3 for t in clip)
    assert any(clip[1:] != sorted(clip[1:]) for clip in clips)  # not sorted
    assert max(max(abs(a - b) for a in c for b in c) for c in clips) > 30  # from anywhere
    keys = {c[0] for c in clips}
    assert len(keys) > 20  # every annotated frame can be the key
    assert mapper.sample_key_random([[{"id": 1}]] * 4 + [[]] * 10, rng) is None
    with pytest.raises(ValueError, match="SAMPLING_FRAME_MODE"):
        YTVISDatasetMapper(
            is_train=True, augmentations=[], image_format="BGR", sampling_frame_mode="sorted"
        )


def test_key_random_mapper_skips_videos_with_too_few_annotated_frames(tiny_ytvis):
    json_path, image_root, _ = tiny_ytvis
    d = load_ytvis_json(json_path, image_root)[0]
    mapper = YTVISDatasetMapper(
        is_train=True,
        augmentations=[],
        image_format="BGR",
        sampling_frame_num=2,
        sampling_frame_mode="key_random",
    )
    out = mapper(d)
    assert len(out["image"]) == 2 and all(d["annotations"][t] for t in out["frame_idx"])
    d["annotations"] = [a if t == 1 else [] for t, a in enumerate(d["annotations"])]
    assert mapper(d) is None


def test_consecutive_sampling_as_efficientvis_draws_clips(tiny_ytvis):
    """EfficientVIS' sampler: SAMPLING_FRAME_NUM consecutive frames from any start; a shorter video
    repeats its last frame."""
    mapper = YTVISDatasetMapper(
        is_train=True,
        augmentations=[],
        image_format="BGR",
        sampling_frame_num=4,
        sampling_frame_mode="consecutive",
    )
    rng = np.random.RandomState(0)
    starts = set()
    for _ in range(200):
        clip = mapper.sample_consecutive(10, rng)
        assert clip == list(range(clip[0], clip[0] + 4))
        starts.add(clip[0])
    assert starts == set(range(7))  # every start 0..6 is drawn
    assert mapper.sample_consecutive(2, rng) == [0, 1, 1, 1]
    json_path, image_root, _ = tiny_ytvis
    d = load_ytvis_json(json_path, image_root)[0]  # 6 frames
    out = mapper(d)
    assert out["frame_idx"] == list(range(out["frame_idx"][0], out["frame_idx"][0] + 4))
    assert len(out["image"]) == len(out["instances"]) == 4
