"""MultiLevelRoIAlign: level assignment (mmdet's formula, boundaries, both epsilons), values equal
to torchvision roi_align(aligned=True) on the chosen level, batch order, empty input, errors."""

import math

import pytest
import torch
from torchvision.ops import roi_align

from vis_core.layers import MultiLevelRoIAlign

STRIDES = (4, 8, 16, 32)


def features(B=2, C=3, H=64, W=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, C, H // s, W // s, generator=g) for s in STRIDES]


def square(side, x=1.0, y=1.0):
    return torch.tensor([[x, y, x + side, y + side]], dtype=torch.float32)


def mmdet_level(box):
    scale = math.sqrt((box[2] - box[0]) * (box[3] - box[1]))
    return min(max(math.floor(math.log2(scale / 56 + 1e-6)), 0), 3)


def test_levels_follow_mmdet_formula_and_boundaries():
    ex = MultiLevelRoIAlign(7)
    sides = [10.0, 55.9, 56.0, 111.99, 112.0, 223.9, 224.0, 448.0, 1000.0]
    boxes = torch.cat([square(s) for s in sides])
    expected = [mmdet_level(b.tolist()) for b in boxes]
    assert ex.levels(boxes).tolist() == expected == [0, 0, 0, 0, 1, 1, 2, 3, 3]


def test_epsilons_differ_only_just_below_a_boundary():
    mm, d2 = MultiLevelRoIAlign(7), MultiLevelRoIAlign(7, level_mapping="detectron2")
    g = torch.Generator().manual_seed(1)
    sides = torch.rand(500, generator=g) * 600 + 4
    boxes = torch.stack([torch.zeros(500), torch.zeros(500), sides, sides], 1).double()
    assert torch.equal(mm.levels(boxes), d2.levels(boxes))
    # 1e-6 inside mmdet's log lifts a box a hair below 112 px to level 1; detectron2 keeps 0
    below = torch.tensor([[0.0, 0.0, 112.0 * (1 - 1e-7), 112.0 * (1 - 1e-7)]], dtype=torch.float64)
    assert mm.levels(below).item() == 1 and d2.levels(below).item() == 0


def test_values_equal_roi_align_on_the_assigned_level():
    feats = features()
    boxes = [
        torch.tensor([[3.0, 4.0, 20.0, 30.0], [0.0, 0.0, 90.0, 60.0]]),
        torch.tensor([[10.0, 2.0, 70.0, 50.0], [5.5, 5.5, 6.5, 9.0], [1.0, 1.0, 130.0, 130.0]]),
    ]
    ex = MultiLevelRoIAlign(7)
    out = ex(feats, boxes)
    assert out.shape == (5, 3, 7, 7)
    r = 0
    for b, bb in enumerate(boxes):
        for box in bb:
            lv = mmdet_level(box.tolist())
            rois = torch.cat([torch.tensor([[float(b)]]), box[None]], 1)
            ref = roi_align(feats[lv], rois, 7, 1.0 / STRIDES[lv], 2, aligned=True)
            torch.testing.assert_close(out[r : r + 1], ref, rtol=0, atol=1e-6)
            r += 1
    # detectron2's own pooler agrees away from boundaries
    torch.testing.assert_close(MultiLevelRoIAlign(7, level_mapping="detectron2")(feats, boxes), out)


def test_empty_boxes_and_gradients():
    feats = [f.requires_grad_() for f in features()]
    ex = MultiLevelRoIAlign(14)
    out = ex(feats, [torch.zeros(0, 4), torch.zeros(0, 4)])
    assert out.shape == (0, 3, 14, 14)
    out = ex(feats, [square(30.0), square(300.0)])
    out.sum().backward()
    assert feats[0].grad.abs().sum() > 0 and feats[2].grad.abs().sum() > 0  # levels 0 and 2
    assert feats[1].grad is None or feats[1].grad.abs().sum() == 0


def test_errors():
    with pytest.raises(ValueError, match="level_mapping"):
        MultiLevelRoIAlign(7, level_mapping="mmcv")
    with pytest.raises(ValueError, match="powers of two"):
        MultiLevelRoIAlign(7, strides=(4, 8, 32))
    ex = MultiLevelRoIAlign(7)
    with pytest.raises(ValueError, match="feature maps"):
        ex(features()[:3], [square(10.0)] * 2)
    with pytest.raises(ValueError, match="box lists"):
        ex(features(), [square(10.0)])
