"""VideoSetCriterion: class CE with the no-object weight, point-sampled mask losses, deep supervision."""

import pytest
import torch
import torch.nn.functional as F

from vis_core.matching import VideoHungarianMatcher
from vis_core.modeling.criterion import VideoSetCriterion


def identity_matcher(outputs, targets):
    """Query i <-> target i (deterministic, to check the loss arithmetic)."""
    return [(torch.arange(len(t["labels"])), torch.arange(len(t["labels"]))) for t in targets]


WEIGHTS = {"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}


def make_criterion(matcher=identity_matcher, num_classes=3, weights=WEIGHTS, num_points=64, **kw):
    return VideoSetCriterion(
        num_classes, matcher=matcher, weight_dict=weights, eos_coef=0.1, num_points=num_points, **kw
    )


def make_targets(B=2, M=2, T=2, H=16, W=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    targets = []
    for _ in range(B):
        masks = torch.zeros((M, T, H, W))
        for m in range(M):
            y, x = torch.randint(0, H // 2, (2,), generator=g).tolist()
            masks[m, :, y : y + H // 2, x : x + W // 2] = 1.0
        targets.append({"labels": torch.arange(M) % 3, "masks": masks})
    return targets


def make_outputs(B=2, Q=4, T=2, H=8, W=8, K=3, seed=0, aux=0):
    g = torch.Generator().manual_seed(seed)

    def one():
        return {
            "pred_logits": torch.randn((B, Q, K + 1), generator=g, requires_grad=True),
            "pred_masks": torch.randn((B, Q, T, H, W), generator=g, requires_grad=True),
        }

    out = one()
    if aux:
        out["aux_outputs"] = [one() for _ in range(aux)]
    return out


def test_class_loss_is_weighted_cross_entropy_with_no_object():
    crit = make_criterion()
    outputs, targets = make_outputs(), make_targets()
    losses = crit(outputs, targets)
    target_classes = torch.full((2, 4), 3)
    target_classes[:, :2] = torch.tensor([0, 1])
    weight = torch.tensor([1.0, 1.0, 1.0, 0.1])
    ref = F.cross_entropy(outputs["pred_logits"].transpose(1, 2), target_classes, weight)
    torch.testing.assert_close(losses["loss_ce"], 2.0 * ref)
    assert crit.empty_weight.tolist() == pytest.approx([1.0, 1.0, 1.0, 0.1])


def test_perfect_masks_score_far_lower_than_random_ones():
    # uniform points (importance sampling would pick the blurred boundary on purpose)
    crit = make_criterion(num_points=256, oversample_ratio=1.0, importance_sample_ratio=0.0)
    targets = make_targets(H=32, W=32)
    outputs = make_outputs(H=32, W=32)
    random_losses = crit(outputs, targets)
    perfect = torch.full((2, 4, 2, 32, 32), -20.0)
    for b, t in enumerate(targets):
        perfect[b, :2] = t["masks"] * 40.0 - 20.0
    good = crit({"pred_logits": outputs["pred_logits"], "pred_masks": perfect}, targets)
    assert good["loss_mask"] < 0.2 * random_losses["loss_mask"]  # boundary points stay blurred
    assert good["loss_dice"] < 0.1 * random_losses["loss_dice"]


def test_mask_losses_are_summed_over_frames_and_divided_by_instances():
    """Doubling the clip length with identical frames doubles the mask losses (they are per frame,
    summed, normalised by the number of instances, not of instance-frames)."""
    crit = make_criterion(num_points=4096, oversample_ratio=1.0, importance_sample_ratio=0.0)
    targets = make_targets(T=1)
    outputs = make_outputs(T=1)
    torch.manual_seed(0)
    one = crit(outputs, targets)
    targets2 = [dict(t, masks=t["masks"].repeat(1, 2, 1, 1)) for t in targets]
    outputs2 = dict(outputs, pred_masks=outputs["pred_masks"].repeat(1, 1, 2, 1, 1))
    two = crit(outputs2, targets2)
    # random point sets differ between calls: compare loosely
    assert two["loss_mask"].item() == pytest.approx(2 * one["loss_mask"].item(), rel=0.05)
    assert two["loss_dice"].item() == pytest.approx(2 * one["loss_dice"].item(), rel=0.05)


def test_deep_supervision_names_and_weights():
    weights = VideoSetCriterion.aux_weight_dict(WEIGHTS, 2)
    crit = make_criterion(weights=weights)
    losses = crit(make_outputs(aux=2), make_targets())
    assert set(losses) == {f"{k}{s}" for k in WEIGHTS for s in ("", "_0", "_1")}
    # without weights for the auxiliary outputs their terms are dropped
    assert set(make_criterion()(make_outputs(aux=2), make_targets())) == set(WEIGHTS)


def test_empty_ground_truth_gives_finite_losses_with_gradients():
    crit = make_criterion()
    outputs = make_outputs()
    targets = [{"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 2, 16, 16)}] * 2
    losses = crit(outputs, targets)
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    assert torch.isfinite(losses["loss_ce"])
    sum(losses.values()).backward()
    assert outputs["pred_logits"].grad.abs().sum() > 0


def test_with_the_shared_hungarian_matcher():
    matcher = VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=64)
    crit = make_criterion(matcher=matcher)
    outputs = make_outputs()
    losses = crit(outputs, make_targets())
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert outputs["pred_masks"].grad.abs().sum() > 0


def test_bad_inputs_name_the_problem():
    crit = make_criterion()
    with pytest.raises(ValueError, match="pred_logits must be"):
        crit(make_outputs(K=5), make_targets())
    bad = make_targets()
    bad[1]["masks"] = bad[1]["masks"][:, :1]
    with pytest.raises(ValueError, match="target 1 masks"):
        crit(make_outputs(), bad)
    bad = make_targets()
    bad[0]["labels"] = torch.tensor([0, 7])
    with pytest.raises(ValueError, match="labels"):
        crit(make_outputs(), bad)
    with pytest.raises(ValueError, match="unknown losses"):
        make_criterion(losses=("labels", "points"))
    with pytest.raises(ValueError, match="pred_boxes"):
        make_criterion(losses=("labels", "boxes"))(make_outputs(), make_targets())


def _with_boxes(outputs, targets, T=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    B, Q = outputs["pred_logits"].shape[:2]
    outputs["pred_boxes"] = torch.rand((B, Q, T, 4), generator=g).mul(0.5).add(0.25)
    outputs["pred_boxes"].requires_grad_(True)
    for t in targets:
        M = len(t["labels"])
        t["boxes"] = torch.rand((M, T, 4), generator=g).mul(0.5).add(0.25)
        t["valid"] = torch.ones((M, T), dtype=torch.bool)
    targets[0]["valid"][0, 1] = False  # absent in frame 1: no box loss there
    return outputs, targets


def test_box_losses_cover_present_frames_of_matched_tracks():
    from torchvision.ops import box_convert, generalized_box_iou

    weights = {"loss_bbox": 5.0, "loss_giou": 2.0}
    crit = make_criterion(weights=weights, losses=("boxes",))
    outputs, targets = _with_boxes(make_outputs(), make_targets())
    losses, indices = crit(outputs, targets, return_indices=True)
    assert [q.tolist() for q, _ in indices] == [[0, 1], [0, 1]]
    l1, giou, n = 0.0, 0.0, 0
    for b, t in enumerate(targets):
        for m in range(2):
            for f in range(2):
                if not t["valid"][m, f]:
                    continue
                p, g = outputs["pred_boxes"][b, m, f], t["boxes"][m, f]
                l1 = l1 + (p - g).abs().sum()
                px, gx = box_convert(torch.stack([p, g]), "cxcywh", "xyxy")
                giou = giou + 1 - generalized_box_iou(px[None], gx[None])[0, 0]
                n += 1
    assert n == 7
    torch.testing.assert_close(losses["loss_bbox"], 5.0 * l1 / n)
    torch.testing.assert_close(losses["loss_giou"], 2.0 * giou / n)
    sum(losses.values()).backward()
    assert outputs["pred_boxes"].grad[:, 2:].abs().sum() == 0  # unmatched queries: no box loss
    assert outputs["pred_boxes"].grad[:, :2].abs().sum() > 0


def test_box_losses_reach_the_matcher_and_survive_empty_targets():
    matcher = VideoHungarianMatcher(
        cost_class=1.0, cost_mask=0.0, cost_dice=1.0, cost_box_l1=5.0, cost_giou=2.0, num_points=64
    )
    weights = {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    crit = make_criterion(matcher=matcher, weights=weights, losses=("labels", "boxes"))
    outputs, targets = _with_boxes(make_outputs(), make_targets())
    # the true boxes at query 3 of clip 0: the box costs send target 0 there
    outputs["pred_boxes"].data[0, 3] = targets[0]["boxes"][0]
    _, indices = crit(outputs, targets, return_indices=True)
    assert dict(zip(indices[0][1].tolist(), indices[0][0].tolist()))[0] == 3
    empty = [
        {
            "labels": torch.zeros(0, dtype=torch.long),
            "masks": torch.zeros(0, 2, 16, 16),
            "boxes": torch.zeros(0, 2, 4),
            "valid": torch.zeros(0, 2, dtype=torch.bool),
        }
    ] * 2
    losses = crit(outputs, empty)
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_giou"].item() == 0.0
