"""TeViT project: configs, training step (ground truth and none), gradients, learning, inference
(whole video, windows), query interaction modes end to end, official checkpoint loading."""

import os

import pytest
import torch
import yaml
from detectron2.modeling import BACKBONE_REGISTRY, build_model
from tevit import add_tevit_config

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
from vis_core.engine.checkpoint import convert_mmdet_backbone_neck, rename_mmdet_resnet

ROOT = project_root("TeViT")
CONFIG_NAMES = project_config_names(ROOT)
QUICK = "synthvis_quick/TeViT_R18.yaml"
TINY = [
    "MODEL.TEVIT.NUM_CLASSES", "3",
    "MODEL.TEVIT.NUM_PROPOSALS", "6",
    "MODEL.TEVIT.HIDDEN_DIM", "32",
    "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.TEVIT.NHEADS", "2",
    "MODEL.TEVIT.DIM_FEEDFORWARD", "64",
    "MODEL.TEVIT.DYNAMIC_DIM", "8",
    "MODEL.TEVIT.NUM_STAGES", "2",
    "MODEL.TEVIT.STAGE_LOSS_WEIGHTS", "[1.0, 1.0]",
]  # fmt: skip
# The MsgShifT configs need vis_core's PVTv2 backbone (built on another branch of issue 14).
HAS_MSGSHIFT = "build_pvt_v2_fpn_backbone" in BACKBONE_REGISTRY._obj_map


def make_cfg(config=QUICK, opts=()):
    return project_cfg(ROOT, add_tevit_config, config, opts)


def tiny_model(opts=(), seed=0):
    return seeded_model(make_cfg(opts=TINY + list(opts)), seed)


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize("config", CONFIG_NAMES)
def test_every_config_loads_and_builds(config):
    if "MsgShifT" in config and not HAS_MSGSHIFT:
        pytest.skip("MsgShifT backbone (build_pvt_v2_fpn_backbone) not merged yet")
    cfg = make_cfg(config)
    model = build_model(cfg)
    assert type(model).__name__ == "TeViT"
    assert get_num_classes(cfg) == ("MODEL.TEVIT.NUM_CLASSES", model.num_classes)
    assert len(model.roi_head.bbox_head) == cfg.MODEL.TEVIT.NUM_STAGES


def test_base_config_has_the_official_defaults():
    cfg = make_cfg("youtubevis_2019/TeViT_R50.yaml")
    t = cfg.MODEL.TEVIT
    assert (t.NUM_PROPOSALS, t.NUM_STAGES, t.HIDDEN_DIM, t.INTERACTION) == (100, 6, 256, "stqi")
    assert (t.COST_CLASS, t.COST_BOX_L1, t.COST_GIOU) == (2.0, 5.0, 2.0)
    assert (t.CLASS_WEIGHT, t.BOX_L1_WEIGHT, t.GIOU_WEIGHT, t.MASK_WEIGHT) == (2.0, 5.0, 2.0, 8.0)
    assert t.DICE_EPS == 1e-5 and list(t.BOX_DELTA_STDS) == [0.5, 0.5, 1.0, 1.0]
    s = cfg.SOLVER
    assert (s.OPTIMIZER, s.BASE_LR, s.WEIGHT_DECAY, s.BACKBONE_MULTIPLIER) == (
        "ADAMW",
        2.5e-4,
        1e-4,
        0.1,
    )
    assert (s.MAX_ITER, tuple(s.STEPS), s.WARMUP_ITERS, s.WARMUP_FACTOR) == (
        9200,
        (6100, 8500),
        770,
        1e-3,
    )
    assert s.CLIP_GRADIENTS.CLIP_TYPE == "full_model" and s.CLIP_GRADIENTS.CLIP_VALUE == 0.1
    assert cfg.INPUT.SAMPLING_FRAME_NUM == 5 and cfg.INPUT.SAMPLING_FRAME_MODE == "key_random"
    assert cfg.TEST.VIS.MAX_TRACKS == 10 and cfg.TEST.VIS.WINDOW_SIZE == 0
    for name, classes in (("ovis", 25), ("youtubevis_2021", 40), ("youtubevis_2019", 40)):
        with open(os.path.join(ROOT, "configs", name, "TeViT_MsgShifT.yaml")) as f:
            raw = yaml.safe_load(f)  # read as text: MODEL.PVT_V2 comes with the MsgShifT backbone
        assert raw["MODEL"]["TEVIT"]["NUM_CLASSES"] == classes
        assert raw["MODEL"]["BACKBONE"]["NAME"] == "build_pvt_v2_fpn_backbone"
        assert raw["MODEL"]["PVT_V2"]["NUM_MESSENGER_TOKENS"] == 32


def test_backbone_multiplier_leaves_the_fpn_at_the_base_rate():
    from vis_core.engine.trainer import video_param_groups

    cfg = make_cfg(opts=TINY + ["SOLVER.BACKBONE_MULTIPLIER", "0.1"])
    cfg.SOLVER.BACKBONE_MULTIPLIER_MODULE = "backbone.bottom_up"
    model = build_model(cfg)
    lrs = {}
    for g in video_param_groups(cfg, model):
        for p in g["params"]:
            lrs[id(p)] = g["lr"]
    named = dict(model.named_parameters())
    base = cfg.SOLVER.BASE_LR
    assert lrs[id(named["backbone.fpn_lateral2.weight"])] == base
    assert lrs[id(named["backbone.bottom_up.stem.conv1.weight"])] == pytest.approx(base * 0.1)
    assert lrs[id(named["roi_head.bbox_head.0.fc_cls.weight"])] == base


def test_bad_configs_fail_clearly():
    with pytest.raises(ValueError, match="OUT_CHANNELS"):
        build_model(make_cfg(opts=TINY + ["MODEL.FPN.OUT_CHANNELS", "16"]))
    with pytest.raises(ValueError, match="IN_FEATURES"):
        build_model(make_cfg(opts=TINY + ["MODEL.TEVIT.IN_FEATURES", "['p3', 'p9']"]))
    with pytest.raises(ValueError, match="STAGE_LOSS_WEIGHTS"):
        build_model(make_cfg(opts=TINY + ["MODEL.TEVIT.STAGE_LOSS_WEIGHTS", "[1.0]"]))
    with pytest.raises(ValueError, match="interaction"):
        build_model(make_cfg(opts=TINY + ["MODEL.TEVIT.INTERACTION", "temporal_spatial"]))


# ---------------------------------------------------------------- training
def test_training_step_with_and_without_ground_truth_reaches_every_part():
    model = tiny_model()
    model.train()
    clips = [make_clip(t=3, seed=0, absent={(0, 1)}), make_clip(t=3, n=0, seed=1)]
    losses = model(clips)
    assert set(losses) == {
        f"stage{s}_loss_{k}" for s in range(2) for k in ("cls", "bbox", "iou", "mask")
    }
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in (
        "rpn_head.init_proposal_bboxes.weight",
        "rpn_head.init_proposal_features.weight",
        "roi_head.bbox_head.0.attention.attn.in_proj_weight",
        "roi_head.bbox_head.1.fc_reg.weight",
        "roi_head.mask_head.0.conv_logits.weight",
        "roi_head.mask_head.0.instance_interactive_conv.dynamic_layer.weight",
        "backbone.bottom_up.stem.conv1.weight",
    ):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    # (a later stage's mask head learns once its boxes overlap the objects: with random weights
    # its crops may hold no object, where dice has no gradient)


def test_only_empty_ground_truth_trains_every_query_towards_background():
    model = tiny_model()
    model.train()
    losses = model([make_clip(t=2, n=0, seed=2)])
    for s in range(2):
        assert losses[f"stage{s}_loss_cls"] > 0
        for k in ("bbox", "iou", "mask"):
            assert float(losses[f"stage{s}_loss_{k}"].detach()) == 0.0
    sum(losses.values()).backward()  # the graph stays whole without positives


def test_positives_are_the_present_frames_of_matched_tracks():
    model = tiny_model()
    model.train()
    clip = make_clip(t=3, n=2, seed=3, absent={(0, 1), (1, 2)})
    images = model._images(clip["image"])
    targets = model.prepare_targets([clip], images.tensor.shape[-2:])
    assert targets[0]["valid"].tolist() == [[True, False, True], [True, True, False]]
    feats = model._features(images, 3)
    whwh = model._whwh(images)
    boxes, queries = model.rpn_head(whwh)
    out = model.roi_head.run_stage(0, feats, boxes, queries, 3)
    indices = model.roi_head.assign(out, whwh, 3, targets)
    frames, q, clips, tracks = model.roi_head._positives(indices, 3, boxes.shape[1], targets)
    assert len(frames) == 4  # 2 tracks x 2 present frames, one query per track in all frames
    assert {(int(f), int(m)) for f, m in zip(frames, tracks)} == {(0, 0), (2, 0), (0, 1), (1, 1)}
    per_track = {int(m): {int(x) for x, mm in zip(q, tracks) if mm == m} for m in tracks}
    assert all(len(v) == 1 for v in per_track.values())


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


def test_training_rejects_clips_of_different_lengths():
    model = tiny_model()
    model.train()
    with pytest.raises(ValueError, match="one length"):
        model([make_clip(t=2), make_clip(t=3)])


# ---------------------------------------------------------------- inference
def test_whole_video_inference_output():
    model = tiny_model()
    model.eval()
    video = make_video(t=5)
    with torch.no_grad():
        out = model([video])[0]
    k = 10 if 6 * 3 >= 10 else 6 * 3
    assert out["pred_scores"].shape == (k,) and out["pred_classes"].shape == (k,)
    assert out["pred_masks"].shape == (k, 5, 96, 144) and out["pred_masks"].dtype == torch.bool
    assert int(out["pred_classes"].max()) < 3
    assert torch.all(out["pred_scores"][:-1] >= out["pred_scores"][1:])
    # the score of a track is its class probability averaged over the frames
    with torch.no_grad():
        _, _, raw = model._run(list(video["image"]))
    mean = raw["cls"].sigmoid().mean(0)
    assert torch.allclose(out["pred_scores"].max(), mean.max())


def test_windowed_equals_whole_video_when_one_window_covers_it():
    model = tiny_model()
    model.eval()
    video = make_video(t=4)
    with torch.no_grad():
        whole = model([video])[0]
        model.window_size = 4
        windowed = model([video])[0]
    assert torch.equal(whole["pred_scores"], windowed["pred_scores"])
    assert torch.equal(whole["pred_classes"], windowed["pred_classes"])
    assert torch.equal(decode_tracks(windowed["pred_mask_rles"], 4, 96, 144), whole["pred_masks"])


def test_windows_cover_every_frame_and_differ_from_whole_video():
    model = tiny_model()
    model.eval()
    video = make_video(t=5)
    with torch.no_grad():
        whole = model([video])[0]
        model.window_size = 2
        windowed = model([video])[0]
    assert len(windowed["pred_mask_rles"]) == len(whole["pred_scores"])
    assert all(len(track) == 5 for track in windowed["pred_mask_rles"])
    # STQI couples the frames of a clip: windows of 2 frames give other scores
    assert not torch.allclose(whole["pred_scores"], windowed["pred_scores"])


@pytest.mark.parametrize("mode", ["spatial", "stqi", "fused"])
def test_interaction_modes_end_to_end(mode):
    """Changing frame 1 changes frame 0's class logits only where queries meet across frames."""
    model = tiny_model(["MODEL.TEVIT.INTERACTION", mode])
    model.eval()
    video = make_video(t=3)
    changed = dict(video, image=list(video["image"]))
    changed["image"][1] = 255 - changed["image"][1]
    with torch.no_grad():
        _, _, a = model._run(list(video["image"]))
        _, _, b = model._run(changed["image"])
    frame0_same = torch.allclose(a["cls"][0], b["cls"][0], atol=1e-5)
    assert frame0_same == (mode == "spatial")


def test_inference_rejects_empty_video():
    model = tiny_model()
    model.eval()
    with pytest.raises(ValueError, match="no frames"):
        model([dict(make_video(t=1), image=[])])


# ---------------------------------------------------------------- checkpoints
def _r50_cfg(weights=""):
    return make_cfg("youtubevis_2019/TeViT_R50.yaml", ["MODEL.WEIGHTS", weights])


def _official_names_as_ours(layout):
    converted = dict(layout)
    convert_mmdet_backbone_neck(converted)
    return {k: tuple(v) for k, v in converted.items() if not k.endswith("num_batches_tracked")}


def test_r50_model_names_and_shapes_are_the_official_ones_after_conversion():
    model = build_model(_r50_cfg())
    ours = {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert ours == _official_names_as_ours(official_layout("tevit", "tevit_r50"))
    # the head is the same as the MsgShifT model's (the main list)
    main = official_layout("tevit")
    head = {k: v for k, v in main.items() if k.startswith(("roi_head.", "rpn_head."))}
    assert {k: v for k, v in ours.items() if k.startswith(("roi_head.", "rpn_head."))} == {
        k: v for k, v in head.items() if not k.endswith("num_batches_tracked")
    }
    assert len(head) == 446


def test_official_r50_checkpoint_loads_whole_through_model_weights(tmp_path):
    """The released tevit_r50.pth layout (mmcv: state dict under 'state_dict'): every official
    tensor reaches the model and every tensor of ours comes from the file."""
    layout = official_layout("tevit", "tevit_r50")
    state = random_state_dict(layout, seed=3)
    path = write_checkpoint(state, str(tmp_path / "tevit_r50.pth"), "mmcv")
    model = build_model(_r50_cfg(path))
    load_inference_weights(model, path)
    weights = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(layout) == 780
    assert assert_loaded_whole(model, weights) > 700


def test_resnet_converter_names_and_errors():
    sd = {
        "backbone.conv1.weight": 1,
        "backbone.bn1.running_var": 2,
        "backbone.layer3.5.bn2.bias": 3,
        "backbone.layer2.1.conv3.weight": 8,
        "backbone.layer1.0.downsample.0.weight": 4,
        "backbone.layer1.0.downsample.1.weight": 5,
        "neck.fpn_convs.3.conv.bias": 6,
        "roi_head.bbox_head.0.fc_cls.bias": 7,
    }
    convert_mmdet_backbone_neck(sd)
    assert sd == {
        "backbone.bottom_up.stem.conv1.weight": 1,
        "backbone.bottom_up.stem.conv1.norm.running_var": 2,
        "backbone.bottom_up.res4.5.conv2.norm.bias": 3,
        "backbone.bottom_up.res3.1.conv3.weight": 8,
        "backbone.bottom_up.res2.0.shortcut.weight": 4,
        "backbone.bottom_up.res2.0.shortcut.norm.weight": 5,
        "backbone.fpn_output5.bias": 6,
        "roi_head.bbox_head.0.fc_cls.bias": 7,
    }
    with pytest.raises(ValueError, match="ResNet"):
        rename_mmdet_resnet({"backbone.bottom_up.layers.0.0.norm.weight": 0})
    with pytest.raises(ValueError, match="FPN"):
        convert_mmdet_backbone_neck({"neck.lateral_convs.0.bn.weight": 0})


@pytest.mark.skipif(not HAS_MSGSHIFT, reason="MsgShifT backbone not registered")
def test_official_msgshift_checkpoint_loads_whole_through_model_weights(tmp_path):
    """The released tevit_msgshift.pth layout (623 entries, mmcv format): names and shapes equal
    ours key for key after the rename, every official tensor reaches the model and every tensor of
    ours comes from the file."""
    layout = official_layout("tevit")
    state = random_state_dict(layout, seed=4)
    path = write_checkpoint(state, str(tmp_path / "tevit_msgshift.pth"), "mmcv")
    cfg = make_cfg("youtubevis_2019/TeViT_MsgShifT.yaml", ["MODEL.WEIGHTS", path])
    model = build_model(cfg)
    renamed = dict(layout)
    convert_mmdet_backbone_neck(renamed, resnet=False)
    ours = {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert ours == {
        k: tuple(v) for k, v in renamed.items() if not k.endswith("num_batches_tracked")
    }
    load_inference_weights(model, path)
    weights = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(layout) == 623
    assert assert_loaded_whole(model, weights) > 600


@pytest.mark.skipif(not HAS_MSGSHIFT, reason="MsgShifT backbone not registered")
def test_coco_queryinst_pvt_b1_initialisation_loads_all_but_messengers_and_classes(tmp_path):
    """The official training starts from COCO QueryInst-PVTv2-B1 (the tevit_msgshift layout
    without the messenger tokens, 80 classes). Loaded through MODEL.WEIGHTS as training starts:
    every tensor but the 80-class layers (fc_cls, conv_logits of the 6 stages) comes from the
    file; the messenger tokens and the class layers keep their initialisation."""
    not_from_file, not_reached, class_layers = load_pretraining_layout(
        "tevit",
        build_model(make_cfg("youtubevis_2019/TeViT_MsgShifT.yaml")),
        str(tmp_path / "queryinst_pvtv2-b1_coco.pth"),
        keep=lambda k: k != "backbone.msg_tokens",
        class_markers=(".fc_cls.", ".conv_logits."),
        seed=7,
    )
    assert not_reached == class_layers and len(class_layers) == 24
    assert not_from_file == sorted(["backbone.bottom_up.msg_tokens"] + class_layers), not_from_file
