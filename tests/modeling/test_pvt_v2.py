"""vis_core.modeling.backbone.pvt_v2: PVTv2 with TeViT's messenger tokens, its FPN, and the loading
of official (mmdet) and original ImageNet weights.

Outputs were also compared with the official MsgShifT + mmdet FPN (hustvl/TeViT) on the same random
weights and clip (T=5, 3x128x224): max |diff| <= 6e-14 in float64 at every stage (TeViT README).
"""

import json
import os

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from torch import nn

from vis_core.config import add_pvt_v2_config
from vis_core.engine.checkpoint import (
    VideoCheckpointer,
    is_mmdet_detector_state_dict,
    rename_mmdet_backbone_neck,
)
from vis_core.modeling.backbone import (
    PVTv2,
    frames_per_clip,
    is_pvt_v2_imagenet_state_dict,
    pvt_v2_imagenet_to_ours,
    rename_pvt_v2_imagenet,
    shift_messengers,
)
from vis_core.modeling.backbone.pvt_v2 import _conv_as_linear

TEVIT_LAYOUT = os.path.join(
    os.path.dirname(__file__), "..", "projects", "data", "tevit_official_state_dict.json"
)
TINY = dict(
    embed_dims=(8, 16, 24, 32),
    num_heads=(1, 2, 2, 4),
    depths=(2, 2, 1, 2),
    mlp_ratios=(2, 2, 2, 2),
    drop_path_rate=0.0,
)


def official_layout(prefixes=("backbone.", "neck.")):
    """{name: shape} of the official TeViT MsgShifT checkpoint's backbone and neck."""
    with open(TEVIT_LAYOUT) as f:
        params = json.load(f)["params"]
    return {k: tuple(v) for k, v in params.items() if k.startswith(prefixes)}


def tiny(m=0, seed=0, **kwargs):
    torch.manual_seed(seed)
    return PVTv2(num_messenger_tokens=m, **{**TINY, **kwargs}).eval()


def run(model, x, num_frames):
    with torch.no_grad(), frames_per_clip(model, num_frames):
        return model(x)


# ---- layout, shapes, config ----


def test_b1_with_32_messengers_has_the_official_names_and_shapes():
    layout = official_layout(("backbone.",))
    ours = {
        "backbone." + k: tuple(v.shape)
        for k, v in PVTv2(num_messenger_tokens=32).state_dict().items()
    }
    assert ours == layout
    assert len(layout) == 161
    plain = {"backbone." + k for k in PVTv2(num_messenger_tokens=0).state_dict()}
    assert plain == set(layout) - {"backbone.msg_tokens"}


def test_shapes_and_strides_also_for_sizes_not_divisible_by_32():
    model = tiny(m=4)
    shapes = model.output_shape()
    assert {k: (s.channels, s.stride) for k, s in shapes.items()} == {
        "res2": (8, 4),
        "res3": (16, 8),
        "res4": (24, 16),
        "res5": (32, 32),
    }
    out = run(model, torch.randn(6, 3, 50, 70), num_frames=3)
    # every patch embed pads kernel // 2: sizes are ceil(size / stride)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res2": (6, 8, 13, 18),
        "res3": (6, 16, 7, 9),
        "res4": (6, 24, 4, 5),
        "res5": (6, 32, 2, 3),
    }
    only = tiny(out_features=("res3", "res5"))
    assert set(run(only, torch.randn(2, 3, 64, 64), 1)) == {"res3", "res5"}


def tiny_cfg(m=4, backbone="build_pvt_v2_fpn_backbone"):
    cfg = get_cfg()
    add_pvt_v2_config(cfg)
    cfg.MODEL.BACKBONE.NAME = backbone
    cfg.MODEL.PVT_V2.EMBED_DIMS = list(TINY["embed_dims"])
    cfg.MODEL.PVT_V2.NUM_HEADS = list(TINY["num_heads"])
    cfg.MODEL.PVT_V2.DEPTHS = list(TINY["depths"])
    cfg.MODEL.PVT_V2.MLP_RATIOS = list(TINY["mlp_ratios"])
    cfg.MODEL.PVT_V2.NUM_MESSENGER_TOKENS = m
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    return cfg


def test_config_defaults_are_pvt_v2_b1_and_the_fpn_builds_from_config():
    cfg = get_cfg()
    add_pvt_v2_config(cfg)
    p = cfg.MODEL.PVT_V2
    assert (p.EMBED_DIMS, p.NUM_HEADS, p.DEPTHS) == ([64, 128, 320, 512], [1, 2, 5, 8], [2] * 4)
    assert (p.SR_RATIOS, p.MLP_RATIOS, p.NUM_MESSENGER_TOKENS) == ([8, 4, 2, 1], [8, 8, 4, 4], 0)
    assert (p.DROP_PATH_RATE, p.NORM_EPS, p.SHIFT_STRIDES) == (0.1, 1e-6, [1, -1, 2, -2])

    backbone = build_backbone(tiny_cfg()).eval()
    assert isinstance(backbone.bottom_up, PVTv2)
    assert backbone.bottom_up.num_messenger_tokens == 4
    assert {k: (s.channels, s.stride) for k, s in backbone.output_shape().items()} == {
        "p2": (16, 4),
        "p3": (16, 8),
        "p4": (16, 16),
        "p5": (16, 32),
    }
    out = run(backbone, torch.randn(4, 3, 64, 96), num_frames=2)
    assert tuple(out["p2"].shape) == (4, 16, 16, 24) and tuple(out["p5"].shape) == (4, 16, 2, 3)
    plain = build_backbone(tiny_cfg(backbone="build_pvt_v2_backbone"))
    assert isinstance(plain, PVTv2)

    cfg = tiny_cfg()
    cfg.MODEL.FPN.IN_FEATURES = []
    with pytest.raises(ValueError, match="MODEL.FPN.IN_FEATURES"):
        build_backbone(cfg)


def test_detectron2_fpn_computes_mmdets_fpn():
    """mmdet FPN (num_outs = inputs): all laterals, top-down sum with nearest upsampling to the
    finer level's size, then the 3x3 output convs; written out here on the FPN's own convs."""
    fpn = build_backbone(tiny_cfg(m=0)).eval()
    for p in fpn.parameters():
        nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 3, 64, 96)
    out = run(fpn, x, 1)
    feats = run(fpn.bottom_up, x, 1)
    laterals = [getattr(fpn, f"fpn_lateral{i}")(feats[f"res{i}"]) for i in range(2, 6)]
    for i in range(3, 0, -1):
        up = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
        laterals[i - 1] = laterals[i - 1] + up
    for i in range(4):
        expected = getattr(fpn, f"fpn_output{i + 2}")(laterals[i])
        torch.testing.assert_close(out[f"p{i + 2}"], expected, rtol=1e-5, atol=1e-6)


# ---- the modules against direct references ----


def test_spatial_reduction_attention_is_the_original_formula():
    """q from the tokens; k, v from LN(strided conv(tokens)); the fused in_proj holds q, k, v rows
    in that order (as the original's q + kv, concatenated, for the ImageNet conversion)."""
    model = tiny()
    layer = model.layers[0].blocks[0]
    attn = layer.attn
    x = torch.randn(2, 16 * 24, 8)
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        out = attn(x, (16, 24), None)
        grid = x.transpose(1, 2).reshape(2, 8, 16, 24)
        kv_in = attn.norm(attn.sr(grid).flatten(2).transpose(1, 2))
        w, b = attn.attn.in_proj_weight, attn.attn.in_proj_bias
        q = x @ w[:8].T + b[:8]
        k = kv_in @ w[8:16].T + b[8:16]
        v = kv_in @ w[16:].T + b[16:]
        ref = torch.softmax(q @ k.transpose(1, 2) / 8**0.5, dim=-1) @ v
        ref = attn.attn.out_proj(ref)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_convs_on_messengers_are_what_they_do_to_a_constant_image():
    torch.manual_seed(0)
    msg = torch.randn(3, 5, 6)
    for conv in (
        nn.Conv2d(6, 4, 3, padding=1),
        nn.Conv2d(6, 4, 2, stride=2),
        nn.Conv2d(6, 6, 3, padding=1, groups=6),
    ):
        images = msg.reshape(15, 6, 1, 1).expand(15, 6, 8, 8)
        interior = conv(images)[:, :, 3, 3].reshape(3, 5, -1)  # away from the zero padding
        torch.testing.assert_close(_conv_as_linear(msg, conv), interior, rtol=1e-5, atol=1e-6)


# ---- the messenger shift ----


def test_shift_moves_groups_of_whole_tokens_by_the_hand_computed_frames():
    T, M, C = 5, 8, 3
    frame = torch.arange(T, dtype=torch.float32)
    msg = frame[:, None, None].expand(T, M, C).clone()  # every value = its frame
    msg[..., 1] = torch.arange(M, dtype=torch.float32)  # channel 1 = the token index
    out = shift_messengers(msg, T, [1, -1, 2, -2])
    # tokens 0-1 rolled +1 (frame t gets t-1), 2-3 by -1 (t+1), 4-5 by +2 (t-2), 6-7 by -2 (t+2)
    expected_source = {
        0: [4, 4, 1, 1, 3, 3, 2, 2],
        1: [0, 0, 2, 2, 4, 4, 3, 3],
        2: [1, 1, 3, 3, 0, 0, 4, 4],
        3: [2, 2, 4, 4, 1, 1, 0, 0],
        4: [3, 3, 0, 0, 2, 2, 1, 1],
    }
    for t, sources in expected_source.items():
        assert out[t, :, 0].tolist() == sources
        assert out[t, :, 2].tolist() == sources  # all channels of a token move together
        assert out[t, :, 1].tolist() == list(range(M))  # tokens keep their slot
    back = shift_messengers(out, T, [-1, 1, -2, 2])
    assert torch.equal(back, msg)
    two_clips = torch.cat([msg, msg + 10])
    shifted = shift_messengers(two_clips, T, [1, -1, 2, -2])
    assert torch.equal(shifted[:T], out) and torch.equal(shifted[T:], out + 10)  # clips apart


def test_the_model_shifts_after_each_layer_by_the_official_rule():
    """Hooks read the messengers leaving each encoder layer of stage 0 and entering the next layer
    and the stage norm: layer 0 rolls by +1, -1, +2, -2 (token groups), layer 1 by the negation."""
    model = tiny(m=8, sr_ratios=(2, 2, 2, 1))
    stage = model.layers[0]
    seen = {}

    def keep(name):
        def hook(module, args, output=None):
            seen.setdefault(name, []).append(output if output is not None else args)

        return hook

    stage.blocks[0].register_forward_hook(keep("out0"))
    stage.blocks[1].register_forward_pre_hook(keep("in1"))
    stage.blocks[1].register_forward_hook(keep("out1"))
    stage.norm.register_forward_pre_hook(keep("norm"))
    T = 5
    run(model, torch.randn(2 * T, 3, 32, 32), num_frames=T)
    out0, in1 = seen["out0"][0][1], seen["in1"][0][2]
    out1, normed = seen["out1"][0][1], seen["norm"][1][0]  # the norm's 2nd call is on messengers
    assert not torch.equal(out0, in1)
    torch.testing.assert_close(in1, shift_messengers(out0, T, [1, -1, 2, -2]), rtol=0, atol=0)
    torch.testing.assert_close(normed, shift_messengers(out1, T, [-1, 1, -2, 2]), rtol=0, atol=0)
    clip0 = out0[:T].reshape(T, 8, -1)
    for t in range(T):
        for group, stride in enumerate([1, -1, 2, -2]):
            tokens = slice(2 * group, 2 * group + 2)
            assert torch.equal(in1[t, tokens], clip0[(t - stride) % T, tokens])
    # stage 2 has one layer: an odd last layer does not shift
    assert model.layer_shifts(2) == [None]
    assert model.layer_shifts(0) == [[1, -1, 2, -2], [-1, 1, -2, 2]]
    assert tiny(m=8, depths=(3, 2, 1, 2)).layer_shifts(0) == [[1, -1, 2, -2], [-1, 1, -2, 2], None]


def test_frames_meet_only_through_the_messengers_and_clips_never():
    x = torch.randn(6, 3, 32, 48, generator=torch.Generator().manual_seed(0))  # B=2 clips, T=3
    y = x.clone()
    y[1] = torch.randn_like(y[1])  # frame 1 of clip 0
    plain = tiny(m=0)
    a, b = run(plain, x, 3), run(plain, y, 3)
    alone = run(plain, x[:1], 1)
    for name in a:
        assert torch.equal(a[name][0], b[name][0])  # frame 0 does not see frame 1
        assert not torch.equal(a[name][1], b[name][1])
        # alone: the same up to the batch size's effect on the conv kernels' rounding
        torch.testing.assert_close(a[name][:1], alone[name], rtol=1e-4, atol=1e-5)

    msg = tiny(m=4)
    a, b = run(msg, x, 3), run(msg, y, 3)
    for name in a:
        assert (a[name][0] - b[name][0]).abs().max() > 1e-4  # frame 0 hears frame 1
        assert torch.equal(a[name][3:], b[name][3:])  # clip 1 hears nothing of clip 0


def test_messengers_are_what_set_the_plain_model_apart():
    """Same weights: M=0 and M=4 differ only by the messenger path; with the messengers' own
    updates zeroed out they still shape the patches (as queries and keys), so outputs differ."""
    plain, msg = tiny(m=0), tiny(m=4)
    missing, unexpected = msg.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["msg_tokens"] and unexpected == []
    x = torch.randn(2, 3, 32, 32)
    a, b = run(plain, x, 2), run(msg, x, 2)
    assert all((a[k] - b[k]).abs().max() > 1e-4 for k in a)


# ---- bad input ----


def test_messenger_tokens_learn():
    model = tiny(m=4).train()
    with frames_per_clip(model, 2):
        out = model(torch.randn(4, 3, 32, 32))
    sum(v.square().mean() for v in out.values()).backward()
    assert model.msg_tokens.grad is not None and model.msg_tokens.grad.abs().sum() > 0


def test_bad_input_raises_clear_errors():
    msg = tiny(m=4)
    with pytest.raises(ValueError, match="7 images is not a whole number of clips of 2 frames"):
        run(msg, torch.randn(7, 3, 32, 32), 2)
    with pytest.raises(ValueError, match="needs the frames per clip"):
        with torch.no_grad():
            msg(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"takes \(B\*T, C, H, W\)"):
        run(msg, torch.randn(1, 2, 3, 32, 32), 2)
    with pytest.raises(ValueError, match="positive int"):
        with frames_per_clip(msg, 0):
            pass
    with pytest.raises(ValueError, match="num_heads has 3 entries"):
        PVTv2(num_heads=(1, 2, 5))
    with pytest.raises(ValueError, match="6 messenger tokens cannot be cut into 4 equal groups"):
        PVTv2(num_messenger_tokens=6)
    with pytest.raises(ValueError, match="not divisible by its 3 heads"):
        PVTv2(num_heads=(3, 2, 5, 8))
    with pytest.raises(ValueError, match="out_features"):
        PVTv2(out_features=("p2",))
    with pytest.raises(ValueError, match="whole number of clips"):
        shift_messengers(torch.randn(7, 4, 8), 2, [1, -1])


def test_frames_per_clip_restores_the_previous_value():
    fpn = build_backbone(tiny_cfg())
    with frames_per_clip(fpn, 3):
        assert fpn.bottom_up.num_frames == 3
        with frames_per_clip(fpn, 5):
            assert fpn.bottom_up.num_frames == 5
        assert fpn.bottom_up.num_frames == 3
    assert fpn.bottom_up.num_frames is None


# ---- checkpoints ----


class _Detector(nn.Module):
    """A detector's top level as the TeViT meta-architecture has it: ``backbone`` = the FPN;
    official mmdet names are renamed while loading."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if is_mmdet_detector_state_dict(state_dict, prefix):
            rename_mmdet_backbone_neck(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def b1_detector(m):
    cfg = get_cfg()
    add_pvt_v2_config(cfg)
    cfg.MODEL.PVT_V2.NUM_MESSENGER_TOKENS = m
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.BACKBONE.NAME = "build_pvt_v2_fpn_backbone"
    return _Detector(build_backbone(cfg, ShapeSpec(channels=3)))


@pytest.mark.parametrize("m", [32, 0])
def test_official_backbone_and_neck_load_whole(tmp_path, m):
    """A file in the official mmcv format with a distinct random tensor under every backbone./neck.
    name of the TeViT checkpoint (M=0: without msg_tokens, as the COCO QueryInst-PVT init): every
    tensor reaches the model, every parameter comes from the file (matched by value)."""
    from tests.projects.official_checkpoints import (
        assert_loaded_whole,
        random_state_dict,
        write_checkpoint,
    )

    layout = official_layout()
    if m == 0:
        del layout["backbone.msg_tokens"]
    assert len(layout) == 177 - (m == 0)
    state = random_state_dict(layout)
    path = write_checkpoint(state, str(tmp_path / "tevit.pth"), "mmcv")
    model = b1_detector(m)
    VideoCheckpointer(model).load(path)
    assert assert_loaded_whole(model, state) == len(layout)
    lateral = model.backbone.fpn_lateral2.weight
    assert torch.equal(lateral, state["neck.lateral_convs.0.conv.weight"])
    assert torch.equal(model.backbone.fpn_output5.bias, state["neck.fpn_convs.3.conv.bias"])


def test_the_full_official_file_into_a_plain_model_leaves_only_msg_tokens_over():
    from tests.projects.official_checkpoints import random_state_dict

    state = random_state_dict(official_layout())
    missing, unexpected = b1_detector(0).load_state_dict(state, strict=False)
    assert missing == [] and unexpected == ["backbone.bottom_up.msg_tokens"]


def test_rename_mmdet_backbone_neck_maps_levels_and_refuses_what_it_cannot_place():
    sd = {
        "model.backbone.layers.0.2.weight": 1,
        "model.neck.lateral_convs.0.conv.weight": 2,
        "model.neck.fpn_convs.3.conv.bias": 3,
        "model.roi_head.x": 4,
        "other": 5,
    }
    assert is_mmdet_detector_state_dict(sd, "model.")
    assert rename_mmdet_backbone_neck(sd, "model.") == 3
    assert sd == {
        "model.backbone.bottom_up.layers.0.2.weight": 1,
        "model.backbone.fpn_lateral2.weight": 2,
        "model.backbone.fpn_output5.bias": 3,
        "model.roi_head.x": 4,
        "other": 5,
    }
    assert not is_mmdet_detector_state_dict(sd, "model.")
    with pytest.raises(ValueError, match="already have"):
        rename_mmdet_backbone_neck(sd, "model.")
    with pytest.raises(ValueError, match="neck.lateral_convs.0.bn.weight"):
        rename_mmdet_backbone_neck({"neck.lateral_convs.0.bn.weight": 1})


def _original_imagenet_state_dict(model: PVTv2, seed=0):
    """A state dict in the original release's layout (whai362/PVT classification/pvt_v2.py names:
    patch_embed{s}, block{s}.{l} with attn.q / attn.kv Linear, mlp.fc1/fc2 Linear,
    mlp.dwconv.dwconv, norm{s}, head) for a model of ``model``'s sizes, random values."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(shape, generator=g)

    sd = {}
    for s, stage in enumerate(model.layers, start=1):
        proj = stage.patch_embed.projection
        c = proj.out_channels
        sd[f"patch_embed{s}.proj.weight"] = r(*proj.weight.shape)
        sd[f"patch_embed{s}.proj.bias"] = r(c)
        sd[f"patch_embed{s}.norm.weight"], sd[f"patch_embed{s}.norm.bias"] = r(c), r(c)
        for i, block in enumerate(stage.blocks):
            p = f"block{s}.{i}."
            hidden = block.ffn.layers[0].out_channels
            for n in ("norm1", "norm2"):
                sd[p + n + ".weight"], sd[p + n + ".bias"] = r(c), r(c)
            sd[p + "attn.q.weight"], sd[p + "attn.q.bias"] = r(c, c), r(c)
            sd[p + "attn.kv.weight"], sd[p + "attn.kv.bias"] = r(2 * c, c), r(2 * c)
            sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"] = r(c, c), r(c)
            if block.attn.sr_ratio > 1:
                sd[p + "attn.sr.weight"] = r(*block.attn.sr.weight.shape)
                sd[p + "attn.sr.bias"] = r(c)
                sd[p + "attn.norm.weight"], sd[p + "attn.norm.bias"] = r(c), r(c)
            sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"] = r(hidden, c), r(hidden)
            sd[p + "mlp.dwconv.dwconv.weight"] = r(hidden, 1, 3, 3)
            sd[p + "mlp.dwconv.dwconv.bias"] = r(hidden)
            sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"] = r(c, hidden), r(c)
        sd[f"norm{s}.weight"], sd[f"norm{s}.bias"] = r(c), r(c)
    sd["head.weight"], sd["head.bias"] = r(10, c), r(10)
    return sd


def test_original_imagenet_weights_convert_and_load_whole():
    model = PVTv2()  # B1, as pvt_v2_b1.pth
    original = _original_imagenet_state_dict(model)
    assert is_pvt_v2_imagenet_state_dict(original)
    assert not is_pvt_v2_imagenet_state_dict(model.state_dict())
    ours = pvt_v2_imagenet_to_ours(original)
    model.load_state_dict(ours, strict=True)
    layer = model.layers[1].blocks[1]
    q, kv = original["block2.1.attn.q.weight"], original["block2.1.attn.kv.weight"]
    assert torch.equal(layer.attn.attn.in_proj_weight, torch.cat([q, kv]))
    assert torch.equal(layer.ffn.layers[0].weight[:, :, 0, 0], original["block2.1.mlp.fc1.weight"])
    assert torch.equal(layer.ffn.layers[4].bias, original["block2.1.mlp.fc2.bias"])
    assert torch.equal(layer.ffn.layers[1].weight, original["block2.1.mlp.dwconv.dwconv.weight"])
    assert torch.equal(model.layers[3].norm.weight, original["norm4.weight"])
    assert torch.equal(
        model.layers[0].patch_embed.projection.bias, original["patch_embed1.proj.bias"]
    )
    # everything of the model comes from the file (160 tensors; head dropped, q + kv fused)
    assert len(ours) == len(model.state_dict()) == 160

    # as MODEL.WEIGHTS of a detector whose backbone is the FPN around PVTv2
    detector = b1_detector(0)
    whole = {"model." + k: v for k, v in original.items()}
    assert rename_pvt_v2_imagenet(whole, "model.") == 160
    missing, unexpected = nn.ModuleDict({"model": detector}).load_state_dict(whole, strict=False)
    assert unexpected == [] and all(".fpn_" in k for k in missing) and len(missing) == 16
    assert torch.equal(detector.backbone.bottom_up.layers[3].norm.bias, original["norm4.bias"])

    with pytest.raises(ValueError, match="block1.0.attn.pool.weight"):
        pvt_v2_imagenet_to_ours({**original, "block1.0.attn.pool.weight": torch.zeros(1)})
    no_kv = {k: v for k, v in original.items() if k != "block1.0.attn.kv.weight"}
    with pytest.raises(ValueError, match="needs q and kv"):
        pvt_v2_imagenet_to_ours(no_kv)


# ---- a record of the official code's outputs ----

GOLDEN = os.path.join(os.path.dirname(__file__), "data", "pvt_v2_official_outputs.json")
# TINY's sizes, with heads the official constructor can express (C_s = 8 * heads_s); stages 1, 2
# have an odd layer count: their last layer does not shift (seen in stage 2's attention; stage 3,
# without spatial reduction, has no messengers among its keys).
GOLDEN_CONFIG = {
    **TINY,
    "num_heads": (1, 2, 3, 4),
    "depths": (2, 1, 1, 2),
    "num_messenger_tokens": 8,
}
GOLDEN_CLIP = dict(clips=2, frames=3, height=64, width=96)


def golden_weights(model: nn.Module, seed: int = 0) -> dict:
    """Deterministic weights for every tensor of ``model`` (in name order): matrices and kernels
    ~ N(0, 1/fan_in), LayerNorm weights 1 + N(0, 0.2^2), biases N(0, 0.2^2)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, value in sorted(model.state_dict().items()):
        noise = torch.randn(value.shape, generator=g, dtype=torch.float64)
        if value.dim() > 1:
            out[name] = noise / value[0].numel() ** 0.5
        else:
            out[name] = (1.0 if name.endswith("weight") else 0.0) + 0.2 * noise
    return out


def golden_model_and_clip(num_messenger_tokens: int = GOLDEN_CONFIG["num_messenger_tokens"]):
    """Our tiny MsgShifT (or, with 0 messengers, PVTv2) + FPN (16 channels) in float64 with
    ``golden_weights``, and its input."""
    fpn_cfg = tiny_cfg(m=num_messenger_tokens)
    for key in ("embed_dims", "num_heads", "depths", "mlp_ratios"):
        fpn_cfg.MODEL.PVT_V2[key.upper()] = list(GOLDEN_CONFIG[key])
    fpn = build_backbone(fpn_cfg).double().eval()
    fpn.load_state_dict(golden_weights(fpn))
    n = GOLDEN_CLIP["clips"] * GOLDEN_CLIP["frames"]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(
        n, 3, GOLDEN_CLIP["height"], GOLDEN_CLIP["width"], generator=g, dtype=torch.float64
    )
    return fpn, x


def summarise(t: torch.Tensor) -> list:
    """sum, sum of |x|, and 5 values spread over the flattened tensor."""
    flat = t.detach().flatten().double()
    picks = torch.linspace(0, flat.numel() - 1, 5).long()
    return [flat.sum().item(), flat.abs().sum().item()] + flat[picks].tolist()


@pytest.mark.parametrize("variant", ["msgshift", "plain"])
def test_outputs_equal_the_official_msgshift_and_mmdet_fpn(variant):
    """The record was made by the official code (hustvl/TeViT @961fd6b, run outside the repository:
    MsgShifT, or for M=0 mmdet's PyramidVisionTransformerV2, + mmdet FPN) given ``golden_weights``
    through ``rename_mmdet_backbone_neck``, in float64."""
    with open(GOLDEN) as f:
        golden = json.load(f)[variant]
    fpn, x = golden_model_and_clip(
        0 if variant == "plain" else GOLDEN_CONFIG["num_messenger_tokens"]
    )
    with torch.no_grad(), frames_per_clip(fpn, GOLDEN_CLIP["frames"]):
        feats = fpn.bottom_up(x)
        out = fpn(x)
    assert set(golden) == set(feats) | set(out)
    for name, expected in golden.items():
        got = summarise(feats[name] if name in feats else out[name])
        torch.testing.assert_close(
            torch.tensor(got), torch.tensor(expected), rtol=1e-9, atol=1e-9, msg=name
        )
