"""VideoHungarianMatcher: costs from their definitions, brute-force optimality, absent frames,
invariance to permuting predictions, M = 0, config and errors."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import CfgNode as CN
from torchvision.ops import box_convert, generalized_box_iou

from vis_core.matching import VideoHungarianMatcher
from vis_core.matching.hungarian import video_box_costs


def random_clip(Q, M, T, K, H=8, W=10, seed=0, boxes=True):
    g = torch.Generator().manual_seed(seed)
    outputs = {
        "pred_logits": torch.randn(1, Q, K + 1, generator=g),
        "pred_masks": torch.randn(1, Q, T, H, W, generator=g) * 3,
    }
    target = {
        "labels": torch.randint(0, K, (M,), generator=g),
        "masks": torch.rand(M, T, 2 * H, 2 * W, generator=g) > 0.5,
    }
    if boxes:
        outputs["pred_boxes"] = torch.rand(1, Q, T, 4, generator=g) * 0.4 + 0.1
        target["boxes"] = torch.rand(M, T, 4, generator=g) * 0.4 + 0.1
        target["valid"] = torch.rand(M, T, generator=g) > 0.3
        target["valid"][:, 0] = True
    return outputs, target


def brute_force_min(cost):
    Q, M = cost.shape
    best = float("inf")
    if Q >= M:
        for rows in itertools.permutations(range(Q), M):
            best = min(best, float(cost[list(rows), list(range(M))].sum()))
    else:
        for cols in itertools.permutations(range(M), Q):
            best = min(best, float(cost[list(range(Q)), list(cols)].sum()))
    return best


def direct_cost(matcher, outputs, target):
    """Cost of every pair from the definitions, whole masks (num_points=0, same resolution)."""
    logits = outputs["pred_logits"][0]
    masks = outputs["pred_masks"][0]
    Q, T, H, W = masks.shape
    tgt = F.interpolate(target["masks"].float(), size=(H, W), mode="nearest")
    M = tgt.shape[0]
    cost = torch.zeros(Q, M)
    for q, m in itertools.product(range(Q), range(M)):
        x, t = masks[q].flatten(), tgt[m].flatten()
        bce = F.binary_cross_entropy_with_logits(x, t)
        p = x.sigmoid()
        dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
        c = -matcher.cost_class * logits[q].softmax(-1)[target["labels"][m]]
        c = c + matcher.cost_mask * bce + matcher.cost_dice * dice
        frames = [t_ for t_ in range(T) if target["valid"][m, t_]]
        l1 = sum(
            (outputs["pred_boxes"][0, q, f] - target["boxes"][m, f]).abs().sum() for f in frames
        )
        giou = sum(
            generalized_box_iou(
                box_convert(outputs["pred_boxes"][0, q, f][None], "cxcywh", "xyxy"),
                box_convert(target["boxes"][m, f][None], "cxcywh", "xyxy"),
            )[0, 0]
            for f in frames
        )
        c = c + matcher.cost_box_l1 * l1 / len(frames) - matcher.cost_giou * giou / len(frames)
        cost[q, m] = c
    return cost


def test_cost_matrix_matches_definition():
    matcher = VideoHungarianMatcher(
        cost_class=2.0, cost_mask=5.0, cost_dice=5.0, cost_box_l1=5.0, cost_giou=2.0, num_points=0
    )
    outputs, target = random_clip(Q=4, M=3, T=3, K=5)
    cost = matcher.cost_matrix(
        outputs["pred_logits"][0], outputs["pred_masks"][0], target, outputs["pred_boxes"][0]
    )
    torch.testing.assert_close(cost, direct_cost(matcher, outputs, target), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("Q,M", [(5, 3), (4, 4), (2, 4), (6, 1)])
def test_against_brute_force(Q, M):
    matcher = VideoHungarianMatcher(
        cost_class=2.0, cost_mask=5.0, cost_dice=5.0, cost_box_l1=1.0, cost_giou=1.0, num_points=200
    )
    for seed in range(5):
        outputs, target = random_clip(Q, M, T=2, K=4, seed=seed)
        cost = matcher.cost_matrix(
            outputs["pred_logits"][0],
            outputs["pred_masks"][0],
            target,
            outputs["pred_boxes"][0],
            generator=torch.Generator().manual_seed(7),
        )
        [(rows, cols)] = matcher(outputs, [target], generator=torch.Generator().manual_seed(7))
        assert rows.dtype == cols.dtype == torch.int64
        assert len(rows) == min(Q, M) and len(set(rows.tolist())) == len(rows)
        assert len(set(cols.tolist())) == len(cols)
        assert float(cost[rows, cols].sum()) == pytest.approx(brute_force_min(cost), abs=1e-5)


def test_absent_frames_do_not_count_in_box_costs():
    matcher = VideoHungarianMatcher(
        cost_class=0.0, cost_mask=0.0, cost_dice=0.0, cost_box_l1=1.0, cost_giou=1.0
    )
    outputs, target = random_clip(Q=3, M=2, T=4, K=3, seed=1)
    target["valid"] = torch.tensor([[True, True, False, False], [False, True, True, True]])
    base = matcher.cost_matrix(outputs["pred_logits"][0], None, target, outputs["pred_boxes"][0])
    changed = {k: v.clone() for k, v in target.items()}
    changed["boxes"][0, 2:] = torch.tensor([5.0, -3.0, 0.0, 0.0])  # garbage where absent
    changed["boxes"][1, 0] = torch.tensor([0.9, 0.9, 0.0, 0.0])
    again = matcher.cost_matrix(outputs["pred_logits"][0], None, changed, outputs["pred_boxes"][0])
    torch.testing.assert_close(base, again)

    # prediction 2 equals target 0 where it is present and is far off where it is absent
    outputs["pred_boxes"][0, 2, :2] = target["boxes"][0, :2]
    outputs["pred_boxes"][0, 2, 2:] = torch.tensor([0.95, 0.95, 0.05, 0.05])
    cost = matcher.cost_matrix(outputs["pred_logits"][0], None, target, outputs["pred_boxes"][0])
    assert float(cost[2, 0]) == pytest.approx(-1.0, abs=1e-6)  # L1 0 and GIoU 1, averaged
    [(rows, cols)] = matcher(outputs, [target])
    assert dict(zip(cols.tolist(), rows.tolist()))[0] == 2

    # without "valid", presence is read from the masks (empty mask = absent)
    del target["valid"]
    target["masks"][0, 2:] = False
    target["masks"][1, 0] = False
    target["masks"][0, :2, 0, 0] = True
    target["masks"][1, 1:, 0, 0] = True
    derived = matcher.cost_matrix(outputs["pred_logits"][0], None, target, outputs["pred_boxes"][0])
    torch.testing.assert_close(derived, cost)


def test_absent_frames_in_mask_costs_reward_empty_predictions():
    # mask costs run over all T frames: in a frame where the target is absent, a prediction that is
    # empty there is cheaper than one that is not
    matcher = VideoHungarianMatcher(cost_class=0.0, cost_mask=1.0, cost_dice=1.0, num_points=0)
    target = {"labels": torch.tensor([0]), "masks": torch.zeros(1, 2, 4, 4, dtype=torch.bool)}
    target["masks"][0, 0, :2] = True  # present in frame 0 only
    pred = torch.full((2, 2, 4, 4), -10.0)
    pred[:, 0, :2] = 10.0
    pred[1, 1] = 10.0  # prediction 1 also fires in frame 1
    cost = matcher.cost_matrix(torch.zeros(2, 2), pred, target)
    assert cost[0, 0] < cost[1, 0]


def test_invariant_to_permuting_predictions():
    matcher = VideoHungarianMatcher(
        cost_class=2.0, cost_mask=5.0, cost_dice=5.0, cost_box_l1=1.0, cost_giou=1.0, num_points=300
    )
    outputs, target = random_clip(Q=7, M=4, T=3, K=5, seed=3)
    [(rows, cols)] = matcher(outputs, [target], generator=torch.Generator().manual_seed(0))
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(1))
    permuted = {k: v[:, perm] for k, v in outputs.items()}
    [(rows_p, cols_p)] = matcher(permuted, [target], generator=torch.Generator().manual_seed(0))
    # prediction perm[i] of the original is prediction i of the permuted set
    assert sorted(zip(cols.tolist(), rows.tolist())) == sorted(
        zip(cols_p.tolist(), perm[rows_p].tolist())
    )


def test_batch_and_empty_targets():
    matcher = VideoHungarianMatcher(cost_class=1.0, cost_mask=1.0, cost_dice=1.0, num_points=50)
    out_a, tgt_a = random_clip(Q=5, M=2, T=2, K=3, seed=0, boxes=False)
    out_b, _ = random_clip(Q=5, M=2, T=2, K=3, seed=1, boxes=False)
    outputs = {k: torch.cat([out_a[k], out_b[k]]) for k in out_a}
    empty = {"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 2, 16, 20)}
    indices = matcher(outputs, [tgt_a, empty])
    assert len(indices) == 2
    assert len(indices[0][0]) == 2
    rows, cols = indices[1]
    assert rows.numel() == 0 and cols.numel() == 0 and rows.dtype == torch.int64


def test_focal_class_cost_prefers_confident_class():
    matcher = VideoHungarianMatcher(
        cost_class=1.0, cost_mask=0.0, cost_dice=0.0, class_cost_type="focal"
    )
    logits = torch.tensor([[4.0, -4.0], [-4.0, 4.0]])
    target = {"labels": torch.tensor([1, 0]), "masks": torch.zeros(2, 1, 2, 2)}
    [(rows, cols)] = matcher({"pred_logits": logits[None]}, [target])
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}


def test_from_config_and_errors():
    cfg = CN()
    cfg.MODEL = CN()
    cfg.MODEL.MASK_FORMER = CN()
    cfg.MODEL.MASK_FORMER.CLASS_WEIGHT = 2.0
    cfg.MODEL.MASK_FORMER.MASK_WEIGHT = 5.0
    cfg.MODEL.MASK_FORMER.DICE_WEIGHT = 5.0
    cfg.MODEL.MASK_FORMER.TRAIN_NUM_POINTS = 112 * 112
    matcher = VideoHungarianMatcher(cfg)
    assert (matcher.cost_class, matcher.cost_mask, matcher.num_points) == (2.0, 5.0, 12544)
    with pytest.raises(KeyError, match="MODEL.EFFICIENT_VIS"):
        VideoHungarianMatcher(cfg, node="MODEL.EFFICIENT_VIS")
    with pytest.raises(ValueError, match="class_cost_type"):
        VideoHungarianMatcher(class_cost_type="sigmoid")

    outputs, target = random_clip(Q=3, M=2, T=2, K=3, boxes=False)
    with pytest.raises(KeyError, match="pred_boxes"):
        VideoHungarianMatcher(cost_giou=1.0)(outputs, [target])
    bad = dict(target, labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="labels"):
        VideoHungarianMatcher()(outputs, [bad])
    with pytest.raises(ValueError, match=r"\(M, T, H, W\)"):
        VideoHungarianMatcher()(outputs, [dict(target, masks=target["masks"][:, :1])])
    with pytest.raises(ValueError, match="2 targets for 1 clips"):
        VideoHungarianMatcher()(outputs, [target, target])


def test_mask_costs_use_the_same_points_in_every_frame():
    # the point-sampled costs equal the definitions evaluated at P points drawn once per clip and
    # read, by bilinear interpolation (align_corners=False), in every frame of predictions and targets
    P = 64
    matcher = VideoHungarianMatcher(cost_class=0.0, cost_mask=3.0, cost_dice=2.0, num_points=P)
    outputs, target = random_clip(Q=3, M=2, T=3, K=2, seed=5, boxes=False)
    cost = matcher.cost_matrix(
        outputs["pred_logits"][0],
        outputs["pred_masks"][0],
        target,
        generator=torch.Generator().manual_seed(11),
    )
    coords = torch.rand(1, P, 2, generator=torch.Generator().manual_seed(11))  # (x, y) in [0, 1]
    grid = (2 * coords - 1)[:, None]  # (1, 1, P, 2)

    def at_points(stack):  # (T, H, W) -> (T * P,), the same points in each frame
        frames = [F.grid_sample(f[None, None].float(), grid, align_corners=False) for f in stack]
        return torch.cat([f.flatten() for f in frames])

    for q, m in itertools.product(range(3), range(2)):
        x = at_points(outputs["pred_masks"][0, q])
        t = at_points(target["masks"][m])
        p = x.sigmoid()
        dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
        bce = F.binary_cross_entropy_with_logits(x, t)
        assert float(cost[q, m]) == pytest.approx(float(3.0 * bce + 2.0 * dice), rel=1e-5)

    # a prediction equal to a target (as +-20 logits) in every frame costs less than the same
    # prediction with two frames swapped, however the points fall
    masks = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    masks[0, 0, :4] = True
    masks[0, 1, :, :4] = True
    logits = masks.float() * 40 - 20
    pred = torch.cat([logits, logits.flip(1)])  # (2, T=2, 8, 8): exact, frames swapped
    cost = VideoHungarianMatcher(cost_class=0.0, num_points=32).cost_matrix(
        torch.zeros(2, 2), pred, {"labels": torch.tensor([0]), "masks": masks}
    )
    assert float(cost[0, 0]) < float(cost[1, 0])


def _focal_cost(logits, labels, alpha=0.25, gamma=2.0, eps=1e-12):
    """mmdet's FocalLossCost, written out."""
    p = logits.sigmoid()
    neg = -(1 - p + eps).log() * (1 - alpha) * p.pow(gamma)
    pos = -(p + eps).log() * alpha * (1 - p).pow(gamma)
    return pos[:, labels] - neg[:, labels]


def test_tevit_assigner_costs_per_frame_averaged_over_present_frames():
    """TeViT's assigner: per frame FocalLossCost x2 + BBoxL1Cost x5 (normalised xyxy) + GIoU x2,
    each track's cost averaged over the frames where it is present."""
    Q, M, T, K = 6, 3, 4, 5
    g = torch.Generator().manual_seed(11)
    logits = torch.randn(Q, T, K, generator=g)
    pred = torch.rand(Q, T, 4, generator=g) * 0.4 + 0.2  # normalised cxcywh
    tgt = torch.rand(M, T, 4, generator=g) * 0.4 + 0.2
    valid = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    labels = torch.tensor([0, 3, 3])
    whwh = torch.tensor([640.0, 360.0, 640.0, 360.0])
    matcher = VideoHungarianMatcher(
        cost_class=2.0,
        cost_mask=0.0,
        cost_dice=0.0,
        cost_box_l1=5.0,
        cost_giou=2.0,
        class_cost_type="focal",
        box_l1_format="xyxy",
    )
    target = {"labels": labels, "boxes": tgt, "valid": valid}
    cost = matcher.cost_matrix(logits, None, target, pred)
    expected = torch.zeros(Q, M)
    for m in range(M):
        frames = [t for t in range(T) if valid[m, t]]
        for t in frames:
            p_xyxy = box_convert(pred[:, t], "cxcywh", "xyxy")
            g_xyxy = box_convert(tgt[m : m + 1, t], "cxcywh", "xyxy")
            c = 2.0 * _focal_cost(logits[:, t], labels[m : m + 1])[:, 0]
            c = c + 5.0 * torch.cdist(p_xyxy, g_xyxy, p=1)[:, 0]
            c = c - 2.0 * generalized_box_iou(p_xyxy * whwh, g_xyxy * whwh)[:, 0]
            expected[:, m] += c / len(frames)
    torch.testing.assert_close(cost, expected, rtol=1e-5, atol=1e-5)
    # a per-track (Q, K) logit is the per-frame case with equal frames
    same = matcher.cost_matrix(logits[:, 0], None, target, pred)
    rep = matcher.cost_matrix(logits[:, :1].expand(Q, T, K), None, target, pred)
    torch.testing.assert_close(same, rep, rtol=1e-5, atol=1e-5)
    # and the full forward: one assignment per clip over (B, Q, T, K) logits
    ((rows, cols),) = matcher({"pred_logits": logits[None], "pred_boxes": pred[None]}, [target])
    assert len(rows) == M and float(cost[rows, cols].sum()) == pytest.approx(brute_force_min(cost))


def test_l1_format_xyxy_differs_from_cxcywh_and_is_validated():
    pred = torch.tensor([[[0.5, 0.5, 0.2, 0.4]]])
    tgt = torch.tensor([[[0.6, 0.5, 0.4, 0.2]]])
    valid = torch.ones(1, 1, dtype=torch.bool)
    l1_c, giou_c = video_box_costs(pred, tgt, valid)
    l1_x, giou_x = video_box_costs(pred, tgt, valid, l1_format="xyxy")
    assert float(l1_c) == pytest.approx(0.1 + 0.2 + 0.2)
    # xyxy: pred (0.4, 0.3, 0.6, 0.7), target (0.4, 0.4, 0.8, 0.6)
    assert float(l1_x) == pytest.approx(0.0 + 0.1 + 0.2 + 0.1)
    assert torch.equal(giou_c, giou_x)
    with pytest.raises(ValueError, match="l1_format"):
        video_box_costs(pred, tgt, valid, l1_format="xywh")
    with pytest.raises(ValueError, match="box_l1_format"):
        VideoHungarianMatcher(cost_box_l1=1.0, box_l1_format="xywh")
    matcher = VideoHungarianMatcher(
        cost_class=1.0, cost_mask=0, cost_dice=0, class_cost_type="focal"
    )
    with pytest.raises(ValueError, match=r"\(Q, T, K\)"):
        matcher.cost_matrix(torch.zeros(2, 1, 1, 3), None, {"labels": torch.tensor([0])})
    with pytest.raises(ValueError, match="'valid'"):
        matcher.cost_matrix(
            torch.zeros(2, 3, 3), None, {"labels": torch.tensor([0]), "valid": torch.ones(1, 2)}
        )


def test_knet_mask_costs_equal_the_official_formulas_on_masks_concatenated_over_time():
    """Video K-Net's tracker assigner: focal x2 + MaskCost x1 + DiceCost x4 (pred_act) on the (T*h, w)
    masks of a track; absent frames are empty target masks."""
    g = torch.Generator().manual_seed(0)
    Q, M, T, H, W, K = 4, 2, 3, 6, 5, 3
    logits = torch.randn(Q, K, generator=g)
    pred = torch.randn(Q, T, H, W, generator=g) * 3
    masks = torch.rand(M, T, H, W, generator=g) > 0.6
    masks[1, 2] = False  # track 1 absent in frame 2
    target = {"labels": torch.tensor([2, 0]), "masks": masks}
    matcher = VideoHungarianMatcher(
        cost_class=2.0,
        cost_mask=1.0,
        cost_dice=4.0,
        num_points=0,
        class_cost_type="focal",
        mask_cost_type="knet",
    )
    got = matcher.cost_matrix(logits, pred, target)
    expected = torch.zeros(Q, M)
    for q in range(Q):
        for m in range(M):
            t = masks[m].float().reshape(T * H, W)
            p_dice = p_mask = pred[q].sigmoid().reshape(T * H, W)
            dice = -2 * (p_dice * t).sum() / ((p_dice**2).sum() + 1e-3 + (t**2).sum() + 1e-3)
            agree = -((p_mask * t).sum() + ((1 - p_mask) * (1 - t)).sum()) / (T * H * W)
            p = logits[q, target["labels"][m]].sigmoid()
            focal = 0.25 * (1 - p) ** 2 * -(p + 1e-12).log() - 0.75 * p**2 * -(1 - p + 1e-12).log()
            expected[q, m] = 2.0 * focal + 1.0 * agree + 4.0 * dice
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="whole masks"):
        VideoHungarianMatcher(mask_cost_type="knet", num_points=10)
    with pytest.raises(ValueError, match="mask_cost_type"):
        VideoHungarianMatcher(mask_cost_type="bce", num_points=0)
