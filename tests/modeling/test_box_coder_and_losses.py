"""DeltaXYWH box coder (direct formula, detectron2's Box2BoxTransform, clamp, round trip) and the
box / V-Net dice losses (definitions, avg factor, empty input, errors)."""

import math

import pytest
import torch
from detectron2.modeling.box_regression import Box2BoxTransform
from torchvision.ops import generalized_box_iou

from vis_core.modeling.box_coder import DeltaXYWHBoxCoder
from vis_core.modeling.box_losses import AVG_FACTOR_EPS, box_giou_loss, box_l1_loss, box_losses
from vis_core.modeling.losses import vnet_dice_loss


def random_boxes(n, seed=0, scale=100.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * scale
    wh = torch.rand(n, 2, generator=g) * scale + 1.0
    return torch.cat([xy, xy + wh], dim=1)


def test_decode_matches_direct_formula():
    boxes = random_boxes(50).double()
    deltas = torch.randn(50, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = DeltaXYWHBoxCoder().decode(boxes, deltas)
    px, py = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    pw, ph = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    gx, gy = px + 0.5 * deltas[:, 0] * pw, py + 0.5 * deltas[:, 1] * ph
    gw, gh = pw * torch.exp(deltas[:, 2]), ph * torch.exp(deltas[:, 3])
    expected = torch.stack([gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2], 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-9)


def test_decode_matches_detectron2_box2box_transform():
    boxes = random_boxes(200, seed=2)
    deltas = torch.randn(200, 4, generator=torch.Generator().manual_seed(3)) * 0.8
    ours = DeltaXYWHBoxCoder().decode(boxes, deltas)
    d2 = Box2BoxTransform(weights=(2.0, 2.0, 1.0, 1.0)).apply_deltas(deltas, boxes)
    torch.testing.assert_close(ours, d2, rtol=1e-5, atol=1e-3)


def test_decode_clamps_dw_dh_both_ways():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    coder = DeltaXYWHBoxCoder()
    big = coder.decode(boxes, torch.tensor([[0.0, 0.0, 50.0, -50.0]]))
    w, h = big[0, 2] - big[0, 0], big[0, 3] - big[0, 1]
    assert math.isclose(float(w), 10 * 1000 / 16, rel_tol=1e-5)  # clamped from above
    assert math.isclose(float(h), 10 * 16 / 1000, rel_tol=1e-5)  # and from below (not detectron2)


def test_encode_decode_round_trip_and_batch_shapes():
    # sizes within a factor 62.5 (1000 / 16) of each other, so that the clamp does not act
    boxes = (random_boxes(24, seed=4, scale=40.0) + 20.0).view(2, 3, 4, 4)
    targets = (random_boxes(24, seed=5, scale=40.0) + 20.0).view(2, 3, 4, 4)
    coder = DeltaXYWHBoxCoder()
    deltas = coder.encode(boxes, targets)
    assert deltas.shape == (2, 3, 4, 4)
    torch.testing.assert_close(coder.decode(boxes, deltas), targets, rtol=1e-5, atol=1e-3)
    assert torch.equal(coder.encode(boxes, boxes), torch.zeros_like(boxes))


def test_coder_errors():
    with pytest.raises(ValueError, match="stds"):
        DeltaXYWHBoxCoder(stds=(0.5, 0.0, 1, 1))
    with pytest.raises(ValueError, match="must both be"):
        DeltaXYWHBoxCoder().decode(torch.zeros(3, 4), torch.zeros(2, 4))


def test_box_losses_match_definitions():
    pred, target = random_boxes(7, seed=6), random_boxes(7, seed=7)
    whwh = torch.tensor([120.0, 80.0, 120.0, 80.0])
    l1 = box_l1_loss(pred, target, whwh, avg_factor=3.0)
    expected = ((pred - target) / whwh).abs().sum() / (3.0 + AVG_FACTOR_EPS)
    torch.testing.assert_close(l1, expected)
    giou = box_giou_loss(pred, target, avg_factor=3.0)
    expected = (1 - generalized_box_iou(pred, target).diag()).sum() / 3.0
    torch.testing.assert_close(giou, expected, rtol=1e-5, atol=1e-6)
    assert box_losses(pred, target, whwh, 3.0)[0] == l1
    # per-pair image sizes
    per_pair = whwh.expand(7, 4).clone()
    per_pair[0] *= 2
    assert box_l1_loss(pred, target, per_pair, 3.0) < l1


def test_box_losses_empty_keep_graph_and_check_shapes():
    pred = torch.zeros(0, 4, requires_grad=True)
    loss = box_l1_loss(pred, torch.zeros(0, 4), torch.ones(4), 0.0) + box_giou_loss(
        pred, torch.zeros(0, 4), 0.0
    )
    assert float(loss.detach()) == 0.0 and loss.requires_grad
    with pytest.raises(ValueError, match=r"\(P, 4\)"):
        box_l1_loss(torch.zeros(3, 4), torch.zeros(3, 5), torch.ones(4), 1.0)


def test_vnet_dice_loss_definition():
    g = torch.Generator().manual_seed(8)
    probs = torch.rand(5, 28, 28, generator=g)
    targets = (torch.rand(5, 28, 28, generator=g) > 0.5).float()
    loss = vnet_dice_loss(probs, targets, avg_factor=4.0, eps=1e-5)
    p, t = probs.flatten(1), targets.flatten(1)
    per = 1 - 2 * (p * t).sum(1) / ((p * p).sum(1) + (t * t).sum(1) + 2e-5)
    torch.testing.assert_close(loss, per.sum() / 4.0)
    # perfect prediction -> ~0; empty target and zero prediction -> 1 (eps keeps it finite)
    assert float(vnet_dice_loss(targets, targets, 5.0, 1e-5)) < 1e-5
    zero = vnet_dice_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), 1.0, 1e-5)
    assert math.isclose(float(zero), 1.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="differ"):
        vnet_dice_loss(probs, targets[:4], 1.0)
