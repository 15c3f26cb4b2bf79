import pytest
import torch
from detectron2.structures import BitMasks, Boxes, Instances

from vis_core.data.clip_targets import clip_length, clip_track_targets


def _frame(h, w, ids, classes, boxes):
    inst = Instances((h, w))
    masks = torch.zeros((len(ids), h, w), dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if ids[i] != -1:
            masks[i, y0:y1, x0:x1] = True
    inst.gt_masks = BitMasks(masks)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor(classes)
    inst.gt_ids = torch.tensor(ids)
    return inst


def test_tracks_of_a_clip_with_absent_objects_and_padding():
    boxes = [[1, 1, 4, 3], [2, 0, 5, 2], [0, 0, 1, 1]]
    # object 0 in both frames, object 1 only in frame 0, object 2 in neither
    frames = [
        _frame(4, 6, [7, 8, -1], [2, 0, 1], boxes),
        _frame(4, 6, [7, -1, -1], [2, 0, 1], boxes),
    ]
    video = {"image": [torch.zeros(3, 4, 6)] * 2, "instances": frames, "video_id": 3}
    (t,) = clip_track_targets([video], (8, 10), torch.device("cpu"), with_boxes=True)
    assert t["labels"].tolist() == [2, 0]
    assert t["valid"].tolist() == [[True, True], [True, False]]
    assert t["masks"].shape == (2, 2, 8, 10) and t["masks"].dtype == torch.bool
    assert t["masks"][0, 1, 1:3, 1:4].all() and t["masks"][0, 1].sum() == 6
    assert not t["masks"][1, 1].any()  # absent in frame 1
    assert not t["masks"][:, :, 4:].any() and not t["masks"][:, :, :, 6:].any()  # padding
    assert t["boxes"].shape == (2, 2, 4) and t["boxes"][1, 0].tolist() == [2, 0, 5, 2]
    (f,) = clip_track_targets([video], (4, 6), torch.device("cpu"), mask_dtype=torch.float32)
    assert f["masks"].dtype == torch.float32 and "boxes" not in f


def test_a_clip_without_objects_gives_empty_targets():
    frames = [_frame(4, 6, [], [], []) for _ in range(3)]
    (t,) = clip_track_targets([{"image": [None] * 3, "instances": frames}], (4, 6), "cpu")
    assert t["labels"].shape == (0,) and t["masks"].shape == (0, 3, 4, 6)
    assert t["valid"].shape == (0, 3)


def test_bad_training_input_is_named():
    with pytest.raises(ValueError, match="video 5: training input has no 'instances'"):
        clip_track_targets([{"image": [None], "video_id": 5}], (4, 6), "cpu")
    frames = [_frame(4, 6, [1], [0], [[0, 0, 2, 2]]), _frame(4, 6, [], [], [])]
    with pytest.raises(ValueError, match=r"frames list \[1, 0\] instances"):
        clip_track_targets(
            [{"image": [None] * 2, "instances": frames, "video_id": 1}], (4, 6), "cpu"
        )
    batch = [{"image": [None] * 2, "video_id": 1}, {"image": [None] * 3, "video_id": 2}]
    with pytest.raises(
        ValueError, match=r"TeViT training needs clips of one length, got lengths \[2, 3\]"
    ):
        clip_length(batch, "TeViT")
    assert clip_length(batch[:1], "TeViT") == 2
