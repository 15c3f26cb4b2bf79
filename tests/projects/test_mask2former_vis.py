"""Mask2Former-VIS project: configs, training step, inference (whole video and windows), checkpoints."""

import pickle

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
import torch.nn.functional as F
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from mask2former_vis import (
    add_mask2former_vis_config,
    encode_rle,
    link_queries,
    masks_to_original_size,
    select_top_pairs,
)

from tests.projects.common import (
    decode_tracks,
    make_clip,
    make_video,
    project_cfg,
    project_config_names,
    project_root,
    seeded_model,
)
from vis_core.modeling.position_encoding import (
    PositionEmbeddingSine,
    PositionEmbeddingSine3D,
    sine_code,
)

ROOT = project_root("Mask2Former_VIS")
CONFIG_NAMES = project_config_names(ROOT)
SYNTHVIS = "synthvis/Mask2Former_VIS_R18.yaml"
TINY = [
    "MODEL.MASK2FORMER_VIS.NUM_CLASSES", "3",
    "MODEL.MASK2FORMER_VIS.NUM_QUERIES", "6",
    "MODEL.MASK2FORMER_VIS.HIDDEN_DIM", "64",
    "MODEL.MASK2FORMER_VIS.DIM_FEEDFORWARD", "64",
    "MODEL.MASK2FORMER_VIS.DEC_LAYERS", "3",
    "MODEL.MASK2FORMER_VIS.TRAIN_NUM_POINTS", "64",
    "MODEL.MASK2FORMER_VIS.PIXEL_DECODER.CONVS_DIM", "64",
    "MODEL.MASK2FORMER_VIS.PIXEL_DECODER.MASK_DIM", "64",
    "MODEL.MASK2FORMER_VIS.PIXEL_DECODER.ENC_LAYERS", "1",
    "MODEL.MASK2FORMER_VIS.PIXEL_DECODER.ENC_DIM_FEEDFORWARD", "64",
]  # fmt: skip


def make_cfg(config=SYNTHVIS, opts=()):
    return project_cfg(ROOT, add_mask2former_vis_config, config, opts)


def tiny_model(opts=(), seed=0):
    return seeded_model(make_cfg(opts=TINY + list(opts)), seed)


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize("config", CONFIG_NAMES)
def test_every_config_loads_and_builds(config):
    cfg = make_cfg(config)
    torch.manual_seed(0)
    model = build_model(cfg)
    m = cfg.MODEL.MASK2FORMER_VIS
    assert type(model).__name__ == "Mask2FormerVIS"
    pred = model.sem_seg_head.predictor
    assert pred.num_layers == m.DEC_LAYERS and pred.num_queries == m.NUM_QUERIES
    assert pred.class_embed.out_features == m.NUM_CLASSES + 1
    assert (
        len(model.sem_seg_head.pixel_decoder.transformer.encoder.layers)
        == m.PIXEL_DECODER.ENC_LAYERS
    )


def test_base_config_has_paper_defaults():
    cfg = make_cfg("youtubevis_2019/Mask2Former_VIS_R50.yaml")
    m = cfg.MODEL.MASK2FORMER_VIS
    assert (m.NUM_QUERIES, m.HIDDEN_DIM, m.NHEADS, m.DIM_FEEDFORWARD, m.DEC_LAYERS) == (
        100, 256, 8, 2048, 9,
    )  # fmt: skip
    assert (m.CLASS_WEIGHT, m.MASK_WEIGHT, m.DICE_WEIGHT, m.NO_OBJECT_WEIGHT) == (
        2.0,
        5.0,
        5.0,
        0.1,
    )
    assert (m.TRAIN_NUM_POINTS, m.OVERSAMPLE_RATIO, m.IMPORTANCE_SAMPLE_RATIO) == (12544, 3.0, 0.75)
    assert m.PIXEL_DECODER.ENC_LAYERS == 6 and m.PIXEL_DECODER.NORM == "GN"
    assert cfg.INPUT.SAMPLING_FRAME_NUM == 2 and cfg.INPUT.SAMPLING_FRAME_RANGE == 20
    assert cfg.SOLVER.OPTIMIZER == "ADAMW" and cfg.SOLVER.BASE_LR == 1e-4
    assert cfg.SOLVER.WEIGHT_DECAY == 0.05 and cfg.SOLVER.BACKBONE_MULTIPLIER == 0.1
    assert cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE == "full_model" and cfg.SOLVER.AMP.ENABLED
    assert cfg.TEST.VIS.MAX_TRACKS == 10 and cfg.TEST.VIS.WINDOW_SIZE == 0
    assert cfg.SOLVER.MAX_ITER == 6000
    assert make_cfg("youtubevis_2021/Mask2Former_VIS_R50.yaml").SOLVER.MAX_ITER == 8000
    ovis = make_cfg("ovis/Mask2Former_VIS_R50.yaml")
    assert ovis.MODEL.MASK2FORMER_VIS.NUM_CLASSES == 25 and ovis.TEST.VIS.WINDOW_SIZE == 36


# ---------------------------------------------------------------- training


def test_training_step_with_and_without_ground_truth():
    model = tiny_model()
    model.train()
    batch = [make_clip(seed=0, absent={(1, 0)}), make_clip(seed=1, n=0)]
    losses = model(batch)
    # 3 terms for the learnable queries' prediction and each of the 3 layers
    assert len(losses) == 3 * 4
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_dice_2"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for name in ("backbone.stem.conv1.weight", "sem_seg_head.pixel_decoder.adapter_1.weight",
                 "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.self_attn.value_proj.weight",
                 "sem_seg_head.predictor.query_feat.weight",
                 "sem_seg_head.predictor.transformer_cross_attention_layers.0.multihead_attn.in_proj_weight"):  # fmt: skip
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_masked_attention_switch_in_training_and_inference(monkeypatch):
    """MASKED_ATTENTION False: every cross-attention reads the whole clip (no mask), with the same
    parameters as the masked model, in training and inference; True: masks block pixels."""
    from vis_core.modeling.transformer_layers import CrossAttentionLayer

    seen = []
    forward = CrossAttentionLayer.forward

    def spy(self, tgt, memory, memory_mask=None, pos=None, query_pos=None):
        seen.append(memory_mask)
        return forward(self, tgt, memory, memory_mask=memory_mask, pos=pos, query_pos=query_pos)

    monkeypatch.setattr(CrossAttentionLayer, "forward", spy)
    masked = tiny_model()
    plain = tiny_model(["MODEL.MASK2FORMER_VIS.MASKED_ATTENTION", "False"])
    plain.load_state_dict(masked.state_dict())  # the switch adds or removes no parameter
    outputs = {}
    for name, model in (("masked", masked), ("plain", plain)):
        seen.clear()
        model.train()
        losses = model([make_clip(seed=0)])
        sum(losses.values()).backward()
        assert len(seen) == 3
        if name == "masked":
            assert all(m is not None and m.dtype == torch.bool and m.any() for m in seen)
        else:
            assert all(m is None for m in seen)
        seen.clear()
        model.eval()
        with torch.no_grad():
            outputs[name] = model([make_video()])[0]
        assert len(seen) == 3 and all((m is None) == (name == "plain") for m in seen)
    assert not torch.equal(outputs["masked"]["pred_scores"], outputs["plain"]["pred_scores"])


def test_only_empty_ground_truth_trains():
    model = tiny_model()
    model.train()
    losses = model([make_clip(seed=2, n=0)])
    assert losses["loss_mask"].item() == 0.0 and losses["loss_ce"].item() > 0
    sum(losses.values()).backward()


def test_a_few_steps_lower_the_loss():
    model = tiny_model()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = [make_clip(seed=3, h=32, w=64)]
    totals = []
    for _ in range(4):
        torch.manual_seed(0)
        loss = sum(model(batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(loss.item())
    assert totals[-1] < totals[0]


def test_training_rejects_clips_of_different_lengths():
    model = tiny_model()
    model.train()
    with pytest.raises(ValueError, match="one length"):
        model([make_clip(t=2), make_clip(t=3)])


# ---------------------------------------------------------------- inference


def test_whole_video_inference_output():
    model = tiny_model(["TEST.VIS.MAX_TRACKS", "5"]).eval()
    with torch.no_grad():
        out = model([make_video(t=4)])[0]
    assert set(out) == {"pred_scores", "pred_classes", "pred_masks"}
    assert out["pred_masks"].shape == (5, 4, 96, 144) and out["pred_masks"].dtype == torch.bool
    assert torch.all(out["pred_scores"][:-1] >= out["pred_scores"][1:])
    assert out["pred_classes"].min() >= 0 and out["pred_classes"].max() < 3


def test_windowed_equals_whole_video_when_one_window_covers_it():
    model = tiny_model(["TEST.VIS.MAX_TRACKS", "8"]).eval()
    video = make_video(t=5)
    with torch.no_grad():
        whole = model([video])[0]
        results = []
        for window, cache_mb in ((5, 1024.0), (9, 1024.0), (5, 0.0)):
            model.window_size, model.window_cache_mb = window, cache_mb
            results.append(model([video])[0])
    for win in results:
        assert set(win) == {"pred_scores", "pred_classes", "pred_mask_rles"}
        torch.testing.assert_close(win["pred_scores"], whole["pred_scores"])
        assert torch.equal(win["pred_classes"], whole["pred_classes"])
        masks = decode_tracks(win["pred_mask_rles"], 5, 96, 144)
        assert torch.equal(masks, whole["pred_masks"])
    assert whole["pred_masks"].any()


def test_windows_are_linked_by_query_embeddings():
    """Frames 2-3 repeat frames 0-1 and the model shuffles its queries in the second window: linking
    must undo the shuffle, so each track's masks in frames 2-3 equal those in frames 0-1."""
    model = tiny_model(["TEST.VIS.MAX_TRACKS", "6"]).eval()
    video = make_video(t=2)
    video["image"] = video["image"] + video["image"]
    head = model.sem_seg_head
    original_forward = head.forward
    calls = []
    shuffle = torch.tensor([3, 0, 5, 1, 4, 2])

    def shuffled_forward(features, num_frames, return_aux=True):
        out = original_forward(features, num_frames, return_aux)
        calls.append(num_frames)
        if len(calls) % 2 == 0:  # the second window of each pass
            out = {k: v[:, shuffle] if torch.is_tensor(v) else v for k, v in out.items()}
        return out

    head.forward = shuffled_forward
    model.window_size = 2
    with torch.no_grad():
        out = model([video])[0]
    masks = decode_tracks(out["pred_mask_rles"], 4, 96, 144)
    assert torch.equal(masks[:, :2], masks[:, 2:])
    # with two windows each class score is the mean over the frames of identical windows
    model.window_size = 0
    head.forward = original_forward
    with torch.no_grad():
        whole = model([make_video(t=2) | {"image": video["image"][:2]}])[0]
    torch.testing.assert_close(out["pred_scores"], whole["pred_scores"])


def test_link_queries_recovers_a_permutation():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(10, 16, generator=g)
    perm = torch.randperm(10, generator=g)
    current = ref[perm] + 0.01 * torch.randn(10, 16, generator=g)
    found = link_queries(ref, current)
    assert torch.equal(perm[found], torch.arange(10))


def test_encode_rle_matches_pycocotools():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand((5, 13, 17), generator=g) > 0.6
    masks[1] = False
    masks[2] = True
    masks[3] = False
    masks[3, 0, 0] = True  # a run starting at the first pixel
    rles = encode_rle(masks)
    assert rles[1] is None
    for m, rle in zip(masks, rles):
        if rle is None:
            continue
        ref = mask_util.encode(np.asfortranarray(m.numpy().astype(np.uint8)))
        assert rle["size"] == [13, 17]
        assert rle["counts"] == ref["counts"].decode("ascii")
        assert np.array_equal(mask_util.decode(rle), m.numpy())
    assert encode_rle(torch.zeros((0, 4, 4), dtype=torch.bool)) == []


def test_masks_to_original_size_matches_published_postprocessing():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn((3, 7, 16, 24), generator=g)
    ours = masks_to_original_size(logits, (60, 90), (64, 96), (120, 180), frame_chunk=3)
    ref = F.interpolate(logits, size=(64, 96), mode="bilinear", align_corners=False)[:, :, :60, :90]
    ref = F.interpolate(ref, size=(120, 180), mode="bilinear", align_corners=False) > 0
    assert torch.equal(ours, ref)


def test_select_top_pairs_keeps_query_class_pairs():
    probs = torch.tensor([[0.1, 0.7], [0.6, 0.65], [0.0, 0.2]])
    scores, classes, queries = select_top_pairs(probs, 3)
    torch.testing.assert_close(scores, torch.tensor([0.7, 0.65, 0.6]))
    assert classes.tolist() == [1, 1, 0] and queries.tolist() == [0, 1, 1]


def test_position_encoding_3d_adds_a_time_code_to_the_2d_code():
    x = torch.zeros(1, 3, 8, 4, 5)
    pos3d = PositionEmbeddingSine3D(4, normalize=True)(x)  # (1, 3, 8, 4, 5)
    pos2d = PositionEmbeddingSine(4, normalize=True)(x[:, 0])  # (1, 8, 4, 5)
    z = torch.arange(1, 4, dtype=torch.float32) / (3 + 1e-6) * 2 * np.pi
    time_code = sine_code(z, 8, 10000.0)  # (3, 8)
    torch.testing.assert_close(pos3d[0], pos2d[0][None] + time_code[:, :, None, None])
    # a frame's code depends on the clip length (normalised time), as in the official code
    other = PositionEmbeddingSine3D(4, normalize=True)(torch.zeros(1, 2, 8, 4, 5))
    assert not torch.allclose(other[0, 0], pos3d[0, 0])


# ---------------------------------------------------------------- checkpoints


def official_head_shapes(cfg, backbone_channels):
    """Names and shapes of the official Mask2Former-VIS checkpoints' head, written out from the
    official module structure (MSDeformAttnPixelDecoder + VideoMultiScaleMaskedTransformerDecoder).
    """
    m, pd = cfg.MODEL.MASK2FORMER_VIS, cfg.MODEL.MASK2FORMER_VIS.PIXEL_DECODER
    C, M, F_, Q, K = pd.CONVS_DIM, pd.MASK_DIM, pd.ENC_DIM_FEEDFORWARD, m.NUM_QUERIES, m.NUM_CLASSES
    H, L, P, heads = m.HIDDEN_DIM, 3, pd.ENC_N_POINTS, pd.ENC_NHEADS
    s = {}
    p = "sem_seg_head.pixel_decoder."
    for i, name in enumerate(["res5", "res4", "res3"]):
        s[f"{p}input_proj.{i}.0.weight"] = (C, backbone_channels[name], 1, 1)
        for k in ("input_proj.{i}.0.bias", "input_proj.{i}.1.weight", "input_proj.{i}.1.bias"):
            s[p + k.format(i=i)] = (C,)
    s[p + "transformer.level_embed"] = (L, C)
    for i in range(pd.ENC_LAYERS):
        e = f"{p}transformer.encoder.layers.{i}."
        s.update({
            e + "self_attn.sampling_offsets.weight": (heads * L * P * 2, C),
            e + "self_attn.sampling_offsets.bias": (heads * L * P * 2,),
            e + "self_attn.attention_weights.weight": (heads * L * P, C),
            e + "self_attn.attention_weights.bias": (heads * L * P,),
            e + "self_attn.value_proj.weight": (C, C), e + "self_attn.value_proj.bias": (C,),
            e + "self_attn.output_proj.weight": (C, C), e + "self_attn.output_proj.bias": (C,),
            e + "norm1.weight": (C,), e + "norm1.bias": (C,),
            e + "linear1.weight": (F_, C), e + "linear1.bias": (F_,),
            e + "linear2.weight": (C, F_), e + "linear2.bias": (C,),
            e + "norm2.weight": (C,), e + "norm2.bias": (C,),
        })  # fmt: skip
    s.update({
        p + "mask_features.weight": (M, C, 1, 1), p + "mask_features.bias": (M,),
        p + "adapter_1.weight": (C, backbone_channels["res2"], 1, 1),
        p + "adapter_1.norm.weight": (C,), p + "adapter_1.norm.bias": (C,),
        p + "layer_1.weight": (C, C, 3, 3), p + "layer_1.norm.weight": (C,), p + "layer_1.norm.bias": (C,),
    })  # fmt: skip
    d = "sem_seg_head.predictor."
    for i in range(m.DEC_LAYERS):
        for group, attn in (("transformer_self_attention_layers", "self_attn"),
                            ("transformer_cross_attention_layers", "multihead_attn")):  # fmt: skip
            a = f"{d}{group}.{i}."
            s.update({
                a + f"{attn}.in_proj_weight": (3 * H, H), a + f"{attn}.in_proj_bias": (3 * H,),
                a + f"{attn}.out_proj.weight": (H, H), a + f"{attn}.out_proj.bias": (H,),
                a + "norm.weight": (H,), a + "norm.bias": (H,),
            })  # fmt: skip
        f = f"{d}transformer_ffn_layers.{i}."
        FF = m.DIM_FEEDFORWARD
        s.update({
            f + "linear1.weight": (FF, H), f + "linear1.bias": (FF,),
            f + "linear2.weight": (H, FF), f + "linear2.bias": (H,),
            f + "norm.weight": (H,), f + "norm.bias": (H,),
        })  # fmt: skip
    s.update({
        d + "decoder_norm.weight": (H,), d + "decoder_norm.bias": (H,),
        d + "query_feat.weight": (Q, H), d + "query_embed.weight": (Q, H),
        d + "level_embed.weight": (L, H),
        d + "class_embed.weight": (K + 1, H), d + "class_embed.bias": (K + 1,),
        d + "mask_embed.layers.0.weight": (H, H), d + "mask_embed.layers.0.bias": (H,),
        d + "mask_embed.layers.1.weight": (H, H), d + "mask_embed.layers.1.bias": (H,),
        d + "mask_embed.layers.2.weight": (M, H), d + "mask_embed.layers.2.bias": (M,),
        "criterion.empty_weight": (K + 1,),
    })  # fmt: skip
    return s


def official_state_dict(model, cfg, seed=0, num_classes=None):
    g = torch.Generator().manual_seed(seed)
    channels = {k: v.channels for k, v in model.backbone.output_shape().items()}
    shapes = official_head_shapes(cfg, channels)
    if num_classes is not None:  # e.g. a COCO instance model: 80 classes
        for k in ("sem_seg_head.predictor.class_embed.weight", "sem_seg_head.predictor.class_embed.bias",
                  "criterion.empty_weight"):  # fmt: skip
            shapes[k] = (num_classes + 1,) + shapes[k][1:]
    sd = {k: torch.randn(shape, generator=g) for k, shape in shapes.items()}
    # the backbone is detectron2's ResNet: its names are detectron2's
    sd.update({k: torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()
               if k.startswith("backbone.") and v.is_floating_point()})  # fmt: skip
    return sd


def test_model_names_and_shapes_are_the_official_ones():
    cfg = make_cfg(opts=TINY)
    model = build_model(cfg)
    expected = official_state_dict(model, cfg)
    ours = {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert set(ours) == set(expected)
    assert all(ours[k] == tuple(v.shape) for k, v in expected.items())


@pytest.mark.parametrize("fmt", ["pth", "pkl"])
@pytest.mark.parametrize("legacy", [False, True])
def test_official_checkpoint_loads_without_renaming(tmp_path, fmt, legacy):
    """Official files: .pkl (the model zoo's, numpy arrays read with detectron2's name-matching
    heuristics) or .pth; ``legacy``: the first release's ``static_query`` name."""
    cfg = make_cfg(opts=TINY)
    model = build_model(cfg)
    sd = official_state_dict(model, cfg, seed=1)
    expected = dict(sd)
    if legacy:
        sd["sem_seg_head.predictor.static_query.weight"] = sd.pop(
            "sem_seg_head.predictor.query_feat.weight"
        )
    path = str(tmp_path / f"official.{fmt}")
    if fmt == "pkl":
        with open(path, "wb") as f:
            pickle.dump({"model": {k: v.numpy() for k, v in sd.items()}, "__author__": "FAIR"}, f)
    else:
        torch.save({"model": sd}, path)
    checkpointer = DetectionCheckpointer(model)
    results = []  # what load() found missing or unexpected
    load_model = checkpointer._load_model
    checkpointer._load_model = (
        lambda checkpoint: results.append(load_model(checkpoint)) or results[-1]
    )
    checkpointer.load(path)
    (incompatible,) = results
    assert not incompatible.missing_keys and not incompatible.unexpected_keys
    state = model.state_dict()
    for k, v in expected.items():
        assert torch.equal(state[k], v), k


def test_coco_instance_checkpoint_loads_all_but_the_class_head(tmp_path):
    cfg = make_cfg(opts=TINY)
    model = build_model(cfg)
    sd = official_state_dict(model, cfg, seed=2, num_classes=80)
    path = str(tmp_path / "coco.pth")
    torch.save({"model": sd}, path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    DetectionCheckpointer(model).load(path)
    state = model.state_dict()
    skipped = {"sem_seg_head.predictor.class_embed.weight", "sem_seg_head.predictor.class_embed.bias",
               "criterion.empty_weight"}  # fmt: skip
    for k, v in sd.items():
        if k in skipped:
            assert torch.equal(state[k], before[k]), k
        else:
            assert torch.equal(state[k], v), k


# ---------------------------------------------------------------- fidelity to the official code
@pytest.mark.parametrize("fmt", ["pkl", "pth"])
def test_official_checkpoint_layout_loads_whole_through_model_weights(tmp_path, fmt):
    """The released file's names and shapes (tests/projects/data, from the official code): every
    official tensor reaches the paper-config model and every tensor of ours comes from the file."""
    from tests.projects.official_checkpoints import check_official_file

    def cfg_with_weights(path):
        return make_cfg("youtubevis_2019/Mask2Former_VIS_R50.yaml", ["MODEL.WEIGHTS", path])

    path = str(tmp_path / f"official.{fmt}")
    assert check_official_file("m2f_vis", cfg_with_weights, path, fmt, seed=1) == (558, 558)


@pytest.mark.parametrize("config", CONFIG_NAMES)
def test_every_shipped_config_resolves_to_the_official_inference_values(config):
    cfg = make_cfg(config)
    assert cfg.TEST.VIS.MAX_TRACKS == 10  # the official top-10 (query, class) pairs per video
    assert cfg.INPUT.SAMPLING_MAX_TRIES == 0  # clips with no object are trained on
    assert cfg.TEST.VIS.MASK_THRESHOLD == 0.5


def test_a_clip_with_no_visible_object_trains_every_query_towards_no_object(tiny_ytvis):
    """As the official mapper and criterion: the clip is kept, and the loss is the class term of
    every query against "no object" (no mask terms)."""
    from vis_core.data import YTVISDatasetMapper, load_ytvis_json

    json_path, image_root, _ = tiny_ytvis
    video = load_ytvis_json(json_path, image_root)[0]
    video["annotations"] = [[] for _ in range(video["length"])]
    cfg = make_cfg(opts=TINY + ["INPUT.MIN_SIZE_TRAIN", "(48,)", "INPUT.MAX_SIZE_TRAIN", "64"])
    clip = YTVISDatasetMapper(cfg, is_train=True)(video)
    assert clip is not None and all(len(inst) == 0 for inst in clip["instances"])
    model = build_model(cfg)
    model.train()
    losses = model([clip])
    assert losses["loss_ce"].item() > 0
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    sum(losses.values()).backward()
    grad = model.sem_seg_head.predictor.class_embed.weight.grad
    assert grad is not None and grad.abs().sum() > 0
