"""EfficientVIS project: configs, TDC against a direct reference, time-shared queries, two-clip
training with correspondence learning (ground truth and none), the hand-over's assignment and
gradient, learning, clip-by-clip inference (e2e and hand-crafted linking)."""

import pytest
import torch
from detectron2.modeling import build_model
from efficientvis import add_efficientvis_config, temporal_dynamic_conv

from tests.projects.common import (
    decode_tracks,
    make_clip,
    make_video,
    project_cfg,
    project_config_names,
    project_root,
    seeded_model,
)
from vis_core.config import get_num_classes
from vis_core.modeling.query_inst import DynamicConv

ROOT = project_root("EfficientVIS")
CONFIG_NAMES = project_config_names(ROOT)
QUICK = "synthvis_quick/EfficientVIS_R18.yaml"
TINY = [
    "MODEL.EFFICIENTVIS.NUM_CLASSES", "3",
    "MODEL.EFFICIENTVIS.NUM_PROPOSALS", "5",
    "MODEL.EFFICIENTVIS.HIDDEN_DIM", "32",
    "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.EFFICIENTVIS.NHEADS", "2",
    "MODEL.EFFICIENTVIS.DIM_FEEDFORWARD", "64",
    "MODEL.EFFICIENTVIS.DYNAMIC_DIM", "8",
    "MODEL.EFFICIENTVIS.NUM_STAGES", "2",
    "MODEL.EFFICIENTVIS.STAGE_LOSS_WEIGHTS", "[1.0, 1.0]",
    "MODEL.EFFICIENTVIS.CLIP_LENGTH", "3",
    "INPUT.SAMPLING_FRAME_NUM", "6",
]  # fmt: skip


def make_cfg(config=QUICK, opts=()):
    return project_cfg(ROOT, add_efficientvis_config, config, opts)


def tiny_model(opts=(), seed=0):
    return seeded_model(make_cfg(opts=TINY + list(opts)), seed)


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize("config", CONFIG_NAMES)
def test_every_config_loads_and_builds(config):
    cfg = make_cfg(config)
    model = build_model(cfg)
    assert type(model).__name__ == "EfficientVIS"
    assert get_num_classes(cfg) == ("MODEL.EFFICIENTVIS.NUM_CLASSES", model.num_classes)
    assert len(model.roi_head.bbox_head) == cfg.MODEL.EFFICIENTVIS.NUM_STAGES
    assert cfg.INPUT.SAMPLING_FRAME_NUM == model.clip_length * model.num_train_clips


def test_base_config_has_the_papers_values():
    cfg = make_cfg("youtubevis_2019/EfficientVIS_R50.yaml")
    e = cfg.MODEL.EFFICIENTVIS
    assert (e.NUM_PROPOSALS, e.NUM_STAGES, e.CLIP_LENGTH, e.INTERACTION) == (10, 6, 36, "ftsa")
    assert e.TEMPORAL_DYNAMIC_CONV and e.TDC_RADIUS == 1 and not e.TIME_SHARED_QUERIES
    assert e.CORRESPONDENCE_LEARNING and e.LINKING == "e2e" and e.NUM_TRAIN_CLIPS == 2
    assert cfg.INPUT.SAMPLING_FRAME_MODE == "consecutive"
    head = build_model(cfg).roi_head.bbox_head[0]
    assert head.interaction == "ftsa" and hasattr(head, "temporal_attention")


def test_bad_configs_fail_clearly():
    with pytest.raises(ValueError, match="SAMPLING_FRAME_NUM"):
        build_model(make_cfg(opts=TINY + ["INPUT.SAMPLING_FRAME_NUM", "5"]))
    with pytest.raises(ValueError, match="LINKING"):
        build_model(make_cfg(opts=TINY + ["MODEL.EFFICIENTVIS.LINKING", "greedy"]))
    with pytest.raises(ValueError, match="HANDOVER_BOXES"):
        build_model(make_cfg(opts=TINY + ["MODEL.EFFICIENTVIS.HANDOVER_BOXES", "first"]))
    with pytest.raises(ValueError, match="OUT_CHANNELS"):
        build_model(make_cfg(opts=TINY + ["MODEL.FPN.OUT_CHANNELS", "16"]))
    with pytest.raises(ValueError, match="TDC_RADIUS"):
        build_model(make_cfg(opts=TINY + ["MODEL.EFFICIENTVIS.TDC_RADIUS", "-1"]))


# -------------------------------------------------------------------- TDC
@torch.no_grad()
def test_tdc_equals_a_direct_reference_for_one_tracklet_over_three_frames():
    torch.manual_seed(0)
    C, S, T = 8, 3, 3
    conv = DynamicConv(C, 4, C, S, with_proj=True)
    q = torch.randn(T, 1, C)  # one tracklet, three frames
    rois = torch.randn(T, C, S, S)
    got = temporal_dynamic_conv(conv, q, rois, T, radius=1)  # (T, S*S, C)
    for t in range(T):
        # the paper's sum over t' in {t-1, t, t+1} inside the clip, frame t's filters on each
        window = [u for u in (t - 1, t, t + 1) if 0 <= u < T]
        maps = [conv.interact(q[t], rois[u : u + 1])[0] for u in window]  # (S*S, C) each
        centre = maps[window.index(t)]
        sims = torch.stack(
            [
                torch.tensor(
                    [
                        float((m[p] @ centre[p]) / (m[p].norm() * centre[p].norm()))
                        for p in range(S * S)
                    ]
                )
                for m in maps
            ]
        )  # (|window|, S*S)
        a = sims.softmax(dim=0)
        expected = sum(a[k][:, None] * maps[k] for k in range(len(window)))
        torch.testing.assert_close(got[t], expected, rtol=1e-5, atol=1e-5)
    # radius 0 is the still-image dynamic conv
    torch.testing.assert_close(
        temporal_dynamic_conv(conv, q, rois, T, radius=0), conv.interact(q[:, 0], rois)
    )


def test_tdc_reads_the_neighbouring_frames_and_the_still_image_switch_does_not():
    for tdc, couples in ((True, True), (False, False)):
        model = tiny_model(["MODEL.EFFICIENTVIS.TEMPORAL_DYNAMIC_CONV", str(tdc)])
        head = model.roi_head.bbox_head[0].eval()
        T, N, C = 4, 5, 32
        q, rois = torch.randn(2 * T, N, C), torch.randn(2 * T * N, C, 7, 7)
        base = head.dynamic_interaction(q, rois, T).view(2 * T, N, C)
        changed = rois.clone()
        changed[:N] += 1.0  # frame 0 of clip 0
        out = head.dynamic_interaction(q, changed, T).view(2 * T, N, C)
        assert (not torch.allclose(out[1], base[1])) == couples  # frame 1 sees frame 0
        torch.testing.assert_close(out[2:], base[2:])  # frame 2 (radius 1) and clip 1 do not


def test_time_shared_queries_are_one_per_tracklet():
    model = tiny_model(["MODEL.EFFICIENTVIS.TIME_SHARED_QUERIES", "True"])
    head = model.roi_head.bbox_head[0]
    T, N, C = 3, 5, 32
    cls, _, obj, _ = head(torch.randn(2 * T * N, C, 7, 7), torch.randn(2 * T, N, C), T)
    obj = obj.view(2, T, N, C)
    torch.testing.assert_close(obj, obj[:, :1].expand_as(obj))
    assert not torch.allclose(cls.view(2, T, N, -1)[:, 0], cls.view(2, T, N, -1)[:, 1])


# ---------------------------------------------------------------- training
def _two_clip_samples():
    # 6 frames = 2 clips of 3: track 0 in both clips, track 1 leaves after frame 2, track 2
    # enters at frame 4; a sample without objects
    absent = {(1, 3), (1, 4), (1, 5), (2, 0), (2, 1), (2, 2), (2, 3)}
    return [make_clip(t=6, n=3, seed=0, absent=absent), make_clip(t=6, n=0, seed=1)]


def test_two_clip_training_step_with_and_without_ground_truth_reaches_every_part():
    model = tiny_model()
    model.train()
    losses = model(_two_clip_samples())
    assert set(losses) == {
        f"clip{j}_stage{s}_loss_{k}"
        for j in range(2)
        for s in range(2)
        for k in ("cls", "bbox", "iou", "mask")
    }
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in (
        "rpn_head.init_proposal_bboxes.weight",
        "rpn_head.init_proposal_features.weight",
        "roi_head.bbox_head.0.attention.attn.in_proj_weight",
        "roi_head.bbox_head.0.temporal_attention.attn.in_proj_weight",
        "roi_head.bbox_head.1.instance_interactive_conv.dynamic_layer.weight",
        "roi_head.bbox_head.1.fc_reg.weight",
        "roi_head.mask_head.0.conv_logits.weight",
        "backbone.bottom_up.stem.conv1.weight",
    ):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)


def _grad_of_clip1(opts):
    model = tiny_model(opts)
    model.train()
    losses = model(_two_clip_samples())
    sum(v for k, v in losses.items() if k.startswith("clip1_")).backward()
    return model.rpn_head.init_proposal_features.weight.grad


def test_correspondence_learning_trains_the_hand_over():
    # with the hand-over, clip 1's losses reach the learned queries through clip 0's stages
    grad = _grad_of_clip1([])
    assert grad is not None and grad.abs().sum() > 0
    detached = _grad_of_clip1(["MODEL.EFFICIENTVIS.HANDOVER_DETACH", "True"])
    assert detached is None or detached.abs().sum() == 0
    # without correspondence learning, clip 1 starts from the learned queries itself
    independent = _grad_of_clip1(["MODEL.EFFICIENTVIS.CORRESPONDENCE_LEARNING", "False"])
    assert independent is not None and independent.abs().sum() > 0


def test_second_clip_keeps_the_first_clips_assignment():
    model = tiny_model()
    model.train()
    samples = _two_clip_samples()[:1]
    calls = []
    forward_train = model.roi_head.forward_train

    def spy(*args, **kwargs):
        result = forward_train(*args, **kwargs)
        calls.append((args[5], args[6], result[2]))  # targets, fixed, last-stage assignment
        return result

    model.roi_head.forward_train = spy
    model(samples)
    (targets0, fixed0, assign0), (targets1, fixed1, assign1) = calls
    assert fixed0 is None and len(targets0[0]["labels"]) == 2  # tracks 0 and 1
    assert len(targets1[0]["labels"]) == 2  # tracks 0 and 2
    q0 = dict(zip(assign0[0][1].tolist(), assign0[0][0].tolist()))  # clip-0 track -> query
    kept_q, kept_m, reserved = fixed1[0]
    assert kept_q.tolist() == [q0[0]] and kept_m.tolist() == [0]  # track 0 keeps its query
    assert reserved.tolist() == [q0[1]]  # track 1 left: its query stays background
    q1 = dict(zip(assign1[0][1].tolist(), assign1[0][0].tolist()))
    assert q1[0] == q0[0] and q1[1] not in (q0[0], q0[1])  # the newcomer takes a free query


def test_a_few_steps_lower_the_loss():
    model = tiny_model(seed=1)
    model.train()
    samples = _two_clip_samples()[:1]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(12):
        loss = sum(model(samples).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    assert history[-1] < 0.8 * history[0], history


# --------------------------------------------------------------- inference
def _trained_looking(model):
    """Random but confident class scores, so that tracks differ in score and class."""
    model.eval()
    with torch.no_grad():
        for head in model.roi_head.bbox_head:
            head.fc_cls.bias.normal_(0.0, 2.0)
    return model


def test_clip_by_clip_inference_equals_the_clips_run_by_hand_with_the_hand_over():
    model = _trained_looking(tiny_model())
    video = make_video(t=8, out=(64, 96))  # clips of 3, 3, 2 frames
    with torch.no_grad():
        result = model([video])[0]
        state, scores, per_clip = None, 0.0, []
        for s, e in ((0, 3), (3, 6), (6, 8)):
            images, features, out = model.run_clip(video["image"][s:e], state)
            scores = scores + out["cls"].sigmoid().sum(0)  # (N, K)
            classes = out["cls"].sigmoid().mean(0).argmax(-1)
            per_clip.append(
                model.roi_head.masks_at_size(
                    features, out["boxes"], out["attn"], classes, images.image_sizes, (64, 96), 0.5
                )
            )  # (N, T_c, H, W)
            state = out
    best, classes = (scores / 8).max(-1)
    order = best.argsort(descending=True)
    torch.testing.assert_close(result["pred_scores"], best[order])
    assert result["pred_classes"].tolist() == classes[order].tolist()
    masks = decode_tracks(result["pred_mask_rles"], 8, 64, 96)  # (k, T, H, W)
    assert torch.equal(masks, torch.cat(per_clip, dim=1)[order])
    # the hand-over matters: the second clip from the learned queries differs
    _, _, fresh = model.run_clip(video["image"][3:6], None)
    _, _, first = model.run_clip(video["image"][0:3], None)
    _, _, handed = model.run_clip(video["image"][3:6], first)
    assert not torch.allclose(fresh["cls"], handed["cls"])


def test_video_output_and_hand_crafted_linking():
    model = _trained_looking(tiny_model())
    video = make_video(t=7, out=(64, 96))
    with torch.no_grad():
        e2e = model([video])[0]
        assert len(e2e["pred_scores"]) == len(e2e["pred_mask_rles"]) == 5  # one track a tracklet
        assert all(len(track) == 7 for track in e2e["pred_mask_rles"])
        assert (e2e["pred_scores"][:-1] >= e2e["pred_scores"][1:]).all()
        model.linking = "hand"
        model.link_threshold = 1.1  # nothing links: every clip's tracklets are new tracks
        model.max_tracks = 100
        split = model([video])[0]
        assert len(split["pred_mask_rles"]) == 5 * 3
        clips = set()
        for track in split["pred_mask_rles"]:
            covered = {t // 3 for t, r in enumerate(track) if r is not None}  # clips of 3 frames
            assert len(track) == 7 and len(covered) <= 1  # a track lives in one clip
            clips |= covered
        assert clips == {0, 1, 2}
        model.link_threshold = -1.1  # everything links: as many tracks as tracklets
        linked = model([video])[0]
        assert len(linked["pred_mask_rles"]) == 5
        with pytest.raises(ValueError, match="no frames"):
            model([{**video, "image": []}])
