"""Video K-Net project: configs, the kernel head and update stages against the official formulas
and names, the stage losses, one training step (ground truth and none), gradients, learning,
inference (tracker and frame-linking outputs), the official checkpoint layout."""

import pytest
import torch
from detectron2.modeling import build_model
from torch import nn
from video_knet import ConvKernelHead, KernelUpdateHead, KernelUpdator, add_video_knet_config
from video_knet.losses import kernel_stage_losses, semantic_seg_loss

from tests.projects.common import (
    decode_tracks,
    make_clip,
    make_video,
    project_cfg,
    project_config_names,
    project_root,
    seeded_model,
)
from tests.projects.official_checkpoints import (
    assert_loaded_whole,
    load_pretraining_layout,
    official_layout,
    random_state_dict,
    write_checkpoint,
)
from vis_core.config import get_num_classes
from vis_core.engine import load_inference_weights

ROOT = project_root("VideoKNet")
CONFIG_NAMES = project_config_names(ROOT)
QUICK = "synthvis_quick/VideoKNet_R18.yaml"
TINY = [
    "MODEL.VIDEO_KNET.NUM_CLASSES", "3",
    "MODEL.VIDEO_KNET.NUM_PROPOSALS", "6",
    "MODEL.VIDEO_KNET.HIDDEN_DIM", "32",
    "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.VIDEO_KNET.NHEADS", "2",
    "MODEL.VIDEO_KNET.DIM_FEEDFORWARD", "64",
]  # fmt: skip


def make_cfg(config=QUICK, opts=()):
    return project_cfg(ROOT, add_video_knet_config, config, opts)


def tiny_model(opts=(), seed=0):
    return seeded_model(make_cfg(opts=TINY + list(opts)), seed)


@pytest.mark.parametrize("config", CONFIG_NAMES)
def test_every_config_loads_and_builds(config):
    cfg = make_cfg(config)
    model = build_model(cfg)
    assert type(model).__name__ == "VideoKNet"
    assert get_num_classes(cfg) == ("MODEL.VIDEO_KNET.NUM_CLASSES", model.num_classes)
    assert len(model.roi_head.mask_head) == len(model.tracker.mask_head) == 3
    assert not model.tracker.mask_head[2].with_cls and model.tracker.mask_head[1].with_cls


def test_training_step_with_and_without_ground_truth_reaches_every_part():
    model = tiny_model()
    model.train()
    clips = [make_clip(t=3, seed=0, absent={(0, 1)}), make_clip(t=3, n=0, seed=1)]
    losses = model(clips)
    expected = {f"rpn_loss_{k}" for k in ("mask", "dice", "seg")}
    expected |= {f"s{s}_loss_{k}" for s in range(3) for k in ("cls", "mask", "dice")}
    expected |= {f"tracker_s{s}_loss_{k}" for s in range(2) for k in ("cls", "mask", "dice")}
    expected |= {"tracker_s2_loss_mask", "tracker_s2_loss_dice"}
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in (
        "rpn_head.init_kernels.weight",
        "rpn_head.conv_seg.weight",
        "rpn_head.seg_convs.0.conv.weight",
        "rpn_head.localization_fpn.convs_all_levels.3.conv2.conv.weight",
        "roi_head.mask_head.0.kernel_update_conv.dynamic_layer.weight",
        "roi_head.mask_head.2.fc_cls.weight",
        "tracker.mask_head.1.fc_cls.weight",
        "tracker.mask_head.2.fc_mask.weight",
        "backbone.bottom_up.stem.conv1.weight",
    ):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name


def test_only_empty_ground_truth_trains_towards_background():
    model = tiny_model()
    model.train()
    losses = model([make_clip(t=2, n=0, seed=2)])
    assert losses["s0_loss_cls"] > 0 and losses["tracker_s0_loss_cls"] > 0
    assert float(losses["s1_loss_mask"].detach()) == 0.0
    sum(losses.values()).backward()


def test_tracker_matching_is_per_clip_and_the_last_stage_reuses_it():
    model = tiny_model()
    model.train()
    calls = []
    original = model.matcher.forward

    def spy(outputs, targets, **kw):
        result = original(outputs, targets, **kw)
        calls.append(outputs["pred_masks"].shape)
        return result

    model.matcher.forward = spy
    model([make_clip(t=3, seed=0)])
    # 3 per-frame stages matched frame by frame (stage 0 with the kernel head's masks and no
    # class: the mask-only matcher), then the tracker's stages 0 and 1 clip by clip
    clip_calls = [c for c in calls if c[2] == 3]
    assert len(clip_calls) == 2 and clip_calls[0][:2] == (1, 6)
    assert len([c for c in calls if c[2] == 1]) == 2  # per-frame stages 1 and 2


def test_a_few_steps_lower_the_loss():
    model = tiny_model(seed=1)
    model.train()
    clips = [make_clip(t=3, seed=4)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(12):
        loss = sum(model(clips).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    assert history[-1] < 0.8 * history[0], history


@pytest.mark.parametrize("output", ["tracker", "frame_linking"])
def test_inference_output(output):
    model = tiny_model(["MODEL.VIDEO_KNET.INFERENCE_OUTPUT", output, "TEST.VIS.MAX_TRACKS", "4"])
    model.eval()
    with torch.no_grad():
        out = model([make_video(t=4, out=(80, 120))])[0]
    assert out["pred_masks"].shape == (4, 4, 80, 120) and out["pred_masks"].dtype == torch.bool
    assert out["pred_scores"].shape == out["pred_classes"].shape == (4,)
    assert (out["pred_scores"][:-1] >= out["pred_scores"][1:]).all()
    with pytest.raises(ValueError, match="no frames"):
        model([{**make_video(t=1), "image": []}])


def test_windows_equal_the_whole_video_when_one_window_covers_it_and_cover_every_frame():
    model = tiny_model(["TEST.VIS.MAX_TRACKS", "3"])
    model.eval()
    video = make_video(t=5, out=(64, 96))
    with torch.no_grad():
        whole = model([video])[0]
        model.window_size = 5
        covered = model([video])[0]  # 0 < window < T only: here the whole-video path
        model.window_size = 2
        windowed = model([video])[0]  # windows of 2, 2, 1 frames
    torch.testing.assert_close(covered["pred_scores"], whole["pred_scores"])
    assert len(windowed["pred_mask_rles"]) == 3
    assert all(len(track) == 5 for track in windowed["pred_mask_rles"])
    masks = decode_tracks(windowed["pred_mask_rles"], 5, 64, 96)
    assert masks.shape == (3, 5, 64, 96)
    assert not torch.allclose(windowed["pred_scores"], whole["pred_scores"])
    with pytest.raises(ValueError, match="WINDOW_SIZE"):
        tiny_model(
            ["TEST.VIS.WINDOW_SIZE", "4", "MODEL.VIDEO_KNET.INFERENCE_OUTPUT", "frame_linking"]
        )


def test_frame_linking_undoes_kernels_shuffled_between_frames():
    model = tiny_model(["MODEL.VIDEO_KNET.INFERENCE_OUTPUT", "frame_linking"])
    model.eval()
    video = make_video(t=3, out=(64, 96))
    with torch.no_grad():
        outs, x, seg = model.run_frames(model._images(video["image"]))
        cls, masks, kernels = (v[:1].expand(3, *v.shape[1:]) for v in outs[-1])
        N = kernels.shape[1]
        perms = [torch.arange(N), torch.randperm(N), torch.randperm(N)]
        shuffled = tuple(
            torch.stack([v[t][p] for t, p in enumerate(perms)]) for v in (cls, masks, kernels)
        )
        model.run_frames = lambda images: (outs[:-1] + [shuffled], x, seg)
        linked = model([video])[0]
        model.run_frames = lambda images: (outs[:-1] + [(cls, masks, kernels)], x, seg)
        static = model([video])[0]
    torch.testing.assert_close(linked["pred_scores"], static["pred_scores"])
    assert torch.equal(linked["pred_masks"], static["pred_masks"])


def test_official_checkpoint_loads_whole_through_model_weights(tmp_path):
    """The official knet_track_r50 layout (629 entries, mmcv format): every official tensor reaches
    the model and every tensor of ours comes from the file."""
    layout = official_layout("video_knet")
    model = build_model(make_cfg("youtubevis_2019/VideoKNet_R50.yaml"))
    state = random_state_dict(layout, seed=5)
    path = write_checkpoint(state, str(tmp_path / "video_knet_r50.pth"), "mmcv")
    load_inference_weights(model, path)
    weights = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(layout) == 629
    assert assert_loaded_whole(model, weights) == len(weights) == 576


def test_coco_knet_initialisation_loads_into_the_per_frame_part(tmp_path):
    """The official training starts from the COCO K-Net instance model (`--load-from`; K-Net's
    knet_s3_r50_fpn layout: the per-frame names of knet_track_r50, no tracker, 80 classes). Loaded
    through MODEL.WEIGHTS as training starts: every per-frame tensor but the two 80-class layers
    comes from the file, the tracker and the class layers keep their initialisation."""
    classes = ("rpn_head.conv_seg.", ".fc_cls.")
    model = build_model(make_cfg("youtubevis_2019/VideoKNet_R50.yaml"))
    not_from_file, not_reached, class_layers = load_pretraining_layout(
        "video_knet",
        model,
        str(tmp_path / "knet_s3_r50_fpn_coco.pth"),
        keep=lambda k: not k.startswith("tracker."),
        class_markers=classes,
        seed=6,
    )
    assert not_reached == class_layers and len(class_layers) == 8
    assert {k.split(".")[0] for k in not_from_file} == {"tracker", "rpn_head", "roi_head"}
    assert all(
        k.startswith("tracker.") or any(c in k for c in classes) for k in not_from_file
    ), not_from_file
    tracker = [k for k in model.state_dict() if k.startswith("tracker.")]
    assert len([k for k in not_from_file if k.startswith("tracker.")]) == len(tracker) == 127


def _official(prefix):
    layout = official_layout("video_knet")
    return {k[len(prefix) :]: tuple(v) for k, v in layout.items() if k.startswith(prefix)}


def _ours(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_stage_names_and_shapes_are_the_official_checkpoints():
    roi = nn.ModuleList(KernelUpdateHead(40) for _ in range(3))
    assert _ours(roi) == _official("roi_head.mask_head.")
    assert _ours(KernelUpdateHead(40)) == _official("tracker.mask_head.0.")
    # the tracker's last stage has no class branch
    assert _ours(KernelUpdateHead(40, with_cls=False)) == _official("tracker.mask_head.2.")


def test_kernel_head_names_and_shapes_are_the_official_checkpoints():
    assert _ours(ConvKernelHead(40)) == _official("rpn_head.")


def test_kernel_head_makes_stride_8_features_and_kernels_from_their_masks():
    torch.manual_seed(0)
    C, N, H, W = 64, 6, 64, 96
    head = ConvKernelHead(3, num_proposals=N, channels=C).eval()
    feats = [torch.randn(2, C, H // s, W // s) for s in (4, 8, 16, 32)]
    kernels, masks, x, seg = head(feats)
    assert kernels.shape == (2, N, C) and masks.shape == (2, N, H // 8, W // 8)
    assert x.shape == (2, C, H // 8, W // 8) and seg.shape == (2, 3, H // 8, W // 8)
    hard = (masks.sigmoid() > 0.5).float()
    expected = head.init_kernels.weight.flatten(1)[None] + torch.einsum("bnhw,bchw->bnc", hard, x)
    torch.testing.assert_close(kernels, expected)
    # P5 (with its position encoding) reaches the stride-8 features
    changed = [f.clone() for f in feats]
    changed[3] += 1.0
    assert not torch.allclose(head(changed)[2], x)


def test_kernel_updator_equals_the_official_formula():
    torch.manual_seed(0)
    R, C = 5, 16
    up = KernelUpdator(C, C, C).eval()
    x_feat, kernels = torch.randn(R, C), torch.randn(R, C)
    with torch.no_grad():
        got = up(x_feat, kernels)
        # knet/kernel_updator.py, written out: gates from the product of the two projections
        params = up.dynamic_layer(x_feat)
        inputs = up.input_layer(kernels)
        gate = inputs[:, :C] * params[:, :C]
        ig = torch.sigmoid(up.input_norm_in(up.input_gate(gate)))
        ug = torch.sigmoid(up.norm_in(up.update_gate(gate)))
        feats = ug * up.norm_out(params[:, -C:]) + ig * up.input_norm_out(inputs[:, -C:])
        expected = torch.relu(up.fc_norm(up.fc_layer(feats)))
    torch.testing.assert_close(got, expected)


def test_stage_gathers_with_hard_masks_updates_and_predicts():
    torch.manual_seed(0)
    B, N, C, H, W = 2, 4, 16, 6, 8
    head = KernelUpdateHead(3, in_channels=C, num_heads=2, feedforward_channels=32).eval()
    x, kernels = torch.randn(B, C, H, W), torch.randn(B, N, C)
    masks = torch.full((B, N, 3, 4), -5.0)
    masks[:, 0, :2, :2] = 5.0  # kernel 0 covers the top-left quarter (after resizing)
    cls, new_masks, new_kernels = head(x, kernels, masks)
    assert cls.shape == (B, N, 3) and new_masks.shape == (B, N, H, W)
    assert new_kernels.shape == (B, N, C)
    gathered = head.gather(head.transform(x), masks)
    xt = head.transform(x)
    torch.testing.assert_close(gathered[:, 0], xt[:, :, :4, :4].sum((-2, -1)))
    torch.testing.assert_close(gathered[:, 1], torch.zeros(B, C))  # an empty mask gathers 0
    # the mask branch is a 1x1 conv of the transformed features with the new kernels
    k = head.mask_kernels(new_kernels)
    torch.testing.assert_close(new_masks[0, 1], (k[0, 1][:, None, None] * xt[0]).sum(0))
    (cls.sum() + new_masks.sum()).backward()
    assert head.kernel_update_conv.dynamic_layer.weight.grad.abs().sum() > 0


def test_tracker_stages_share_one_kernel_over_the_clip_then_refine_per_frame():
    torch.manual_seed(0)
    B, T, N, C, H, W = 2, 3, 4, 16, 5, 6
    x = torch.randn(B, T, C, H, W)
    masks = torch.randn(B, T, N, H, W) * 4
    kernels = torch.randn(B, N, C)
    head = KernelUpdateHead(3, in_channels=C, num_heads=2, feedforward_channels=32).eval()
    cls, tube, video_kernels = head.forward_clip(x, kernels, masks)
    assert cls.shape == (B, N, 3) and tube.shape == (B, T, N, H, W)
    # the group feature is the mean over the frames of each frame's gathered feature
    xt = head.transform(x.flatten(0, 1))
    per_frame = head.gather(xt, masks.flatten(0, 1)).view(B, T, N, C)
    torch.testing.assert_close(video_kernels, head.update(per_frame.mean(1), kernels))
    # one kernel segments every frame
    k = head.mask_kernels(video_kernels)
    torch.testing.assert_close(
        tube[1, 2], torch.einsum("nc,chw->nhw", k[1], xt.view(B, T, C, H, W)[1, 2])
    )
    # the last stage: per-frame kernels, no class; a frame's kernels see only that frame
    last = KernelUpdateHead(3, in_channels=C, num_heads=2, feedforward_channels=32, with_cls=False)
    last.eval()
    frame_kernels = video_kernels[:, None].expand(B, T, N, C)
    none, tube2, k2 = last.forward_clip(x, frame_kernels, tube)
    assert none is None and tube2.shape == (B, T, N, H, W) and k2.shape == (B, T, N, C)
    x_changed = x.clone()
    x_changed[:, 0] += 1.0
    _, tube3, _ = last.forward_clip(x_changed, frame_kernels, tube)
    torch.testing.assert_close(tube3[:, 1:], tube2[:, 1:])
    assert not torch.allclose(tube3[:, 0], tube2[:, 0])


def test_stage_losses_equal_the_official_forms():
    torch.manual_seed(0)
    B, N, K, L = 2, 4, 3, 10
    cls, masks = torch.randn(B, N, K), torch.randn(B, N, L) * 2
    labels = [torch.tensor([2, 0]), torch.zeros(0, dtype=torch.long)]
    targets = [torch.rand(2, L).round(), torch.zeros(0, L)]
    indices = [
        (torch.tensor([3, 1]), torch.tensor([0, 1])),
        (torch.zeros(0, dtype=torch.long),) * 2,
    ]
    losses = kernel_stage_losses(cls, masks, indices, labels, targets)
    # focal over all 8 kernels, positives (0, 3) class 2 and (0, 1) class 0, / 2 positives
    onehot = torch.zeros(B * N, K)
    onehot[3, 2] = onehot[1, 0] = 1.0
    p = cls.reshape(-1, K).sigmoid()
    focal = -(
        onehot * 0.25 * (1 - p) ** 2 * p.log() + (1 - onehot) * 0.75 * p**2 * (1 - p).log()
    ).sum()
    torch.testing.assert_close(losses["loss_cls"], 2.0 * focal / 2)
    pred, tgt = masks[0, [3, 1]], targets[0]
    bce = -(tgt * pred.sigmoid().log() + (1 - tgt) * (1 - pred.sigmoid()).log()).mean()
    torch.testing.assert_close(losses["loss_mask"], bce)
    q = pred.sigmoid()
    d = 2 * (q * tgt).sum(1) / ((q * q).sum(1) + 1e-3 + (tgt * tgt).sum(1) + 1e-3)
    torch.testing.assert_close(losses["loss_dice"], 4.0 * (1 - d).mean())
    # no positives: class loss only over background, zero mask losses that keep the graph
    empty = kernel_stage_losses(None, masks.requires_grad_(), [indices[1]] * 2, [labels[1]] * 2,
                                [targets[1]] * 2)  # fmt: skip
    assert set(empty) == {"loss_mask", "loss_dice"} and float(empty["loss_mask"].detach()) == 0.0
    empty["loss_dice"].backward()


def test_semantic_loss_labels_the_matched_masks_in_kernel_order():
    """Official ConvKernelHeadVideo loss_rpn_seg: per frame a class map (background K) painted with
    the matched objects' masks in the order of their kernels; focal summed / labelled pixels."""
    torch.manual_seed(0)
    B, K, H, W = 2, 3, 4, 5
    logits = torch.randn(B, K, H, W) * 2
    masks = [torch.zeros(2, H, W), torch.zeros(0, H, W)]
    masks[0][0, :2, :3] = 0.4  # soft: any non-zero value counts
    masks[0][1, 1:3, 2:] = 1.0  # overlaps object 0 at (1, 2)
    labels = [torch.tensor([2, 0]), torch.zeros(0, dtype=torch.long)]
    empty = (torch.zeros(0, dtype=torch.long),) * 2
    # object 1 on kernel 4, object 0 on kernel 5: object 0 is painted last and wins the overlap
    got = semantic_seg_loss(logits, [(torch.tensor([4, 5]), torch.tensor([1, 0])), empty],
                            labels, masks)  # fmt: skip
    target = torch.full((B, H, W), K)
    target[0, 1:3, 2:] = 0
    target[0, :2, :3] = 2
    onehot = torch.nn.functional.one_hot(target, K + 1)[..., :K].permute(0, 3, 1, 2).float()
    p = logits.sigmoid()
    focal = -(
        onehot * 0.25 * (1 - p) ** 2 * p.log() + (1 - onehot) * 0.75 * p**2 * (1 - p).log()
    ).sum()
    torch.testing.assert_close(got, focal / (target < K).sum())
    # the other kernel order: object 1 wins (1, 2)
    swapped = semantic_seg_loss(logits, [(torch.tensor([5, 4]), torch.tensor([1, 0])), empty],
                                labels, masks)  # fmt: skip
    assert not torch.allclose(swapped, got)
    # no object anywhere: everything background, divided by 1
    none = semantic_seg_loss(logits, [empty, empty], [labels[1]] * 2, [masks[1]] * 2)
    torch.testing.assert_close(none, -(0.75 * p**2 * (1 - p).log()).sum())
    with pytest.raises(ValueError, match="frame 0's masks"):
        semantic_seg_loss(logits, [empty, empty], [labels[1]] * 2, [torch.zeros(0, 3, 3)] * 2)
