"""QueryInst pieces: official names and shapes (the TeViT checkpoint list), proposals, dynamic conv
against a direct loop, query interaction modes (what couples which frames), stage head and mask
head shapes, initialisation, errors."""

import math

import pytest
import torch
from torch import nn

from tests.projects.official_checkpoints import official_layout
from vis_core.modeling.query_inst import (
    INTERACTION_MODES,
    DIIHead,
    DynamicConv,
    DynamicMaskHead,
    EmbeddingRPNHead,
    query_interaction,
)


def _official_sub(prefix):
    layout = official_layout("tevit")
    return {k[len(prefix) :]: v for k, v in layout.items() if k.startswith(prefix)}


def _ours(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("stage", [0, 5])
def test_names_and_shapes_are_the_official_checkpoints(stage):
    assert _ours(DIIHead(40)) == _official_sub(f"roi_head.bbox_head.{stage}.")
    assert _ours(DynamicMaskHead(40)) == _official_sub(f"roi_head.mask_head.{stage}.")
    assert _ours(EmbeddingRPNHead(100, 256)) == _official_sub("rpn_head.")


def test_interaction_modes_share_the_official_parameters():
    ref = _ours(DIIHead(40, interaction="stqi"))
    for mode in ("spatial", "fused"):
        assert _ours(DIIHead(40, interaction=mode)) == ref
    ftsa = _ours(DIIHead(40, interaction="ftsa"))
    extra = sorted(set(ftsa) - set(ref))
    assert extra and all(k.startswith("temporal_attention") for k in extra)


def test_embedding_rpn_head_whole_image_proposals():
    head = EmbeddingRPNHead(5, 8)
    whwh = torch.tensor([[64.0, 48.0, 64.0, 48.0], [32.0, 40.0, 32.0, 40.0]])
    boxes, feats = head(whwh)
    assert boxes.shape == (2, 5, 4) and feats.shape == (2, 5, 8)
    assert torch.equal(boxes[0], torch.tensor([[0.0, 0.0, 64.0, 48.0]]).expand(5, 4))
    assert torch.equal(boxes[1], torch.tensor([[0.0, 0.0, 32.0, 40.0]]).expand(5, 4))
    assert torch.equal(feats[0], feats[1])
    (boxes.sum() + feats.sum()).backward()
    assert head.init_proposal_bboxes.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\(F, 4\)"):
        head(torch.zeros(2, 2))


def test_dynamic_conv_matches_a_direct_loop():
    torch.manual_seed(0)
    conv = DynamicConv(16, 4, 8, input_feat_shape=3, with_proj=True)
    for p in conv.parameters():  # non-trivial norms
        nn.init.normal_(p, std=0.3)
    q, roi = torch.randn(5, 16), torch.randn(5, 16, 3, 3)
    out, inner = conv(q, roi), conv.interact(q, roi)
    assert out.shape == (5, 8) and inner.shape == (5, 9, 8)
    relu = torch.relu
    for r in range(5):
        params = conv.dynamic_layer(q[r])
        w_in, w_out = params[: 16 * 4].view(16, 4), params[-4 * 8 :].view(4, 8)
        x = roi[r].reshape(16, 9).t()  # (S*S, C_in), row-major positions
        x = relu(conv.norm_in(x @ w_in))
        x = relu(conv.norm_out(x @ w_out))
        torch.testing.assert_close(inner[r], x, rtol=1e-5, atol=1e-5)
        y = relu(conv.fc_norm(conv.fc_layer(x.flatten())))
        torch.testing.assert_close(out[r], y, rtol=1e-5, atol=1e-5)
    no_proj = DynamicConv(16, 4, 8, input_feat_shape=3, with_proj=False)
    assert not hasattr(no_proj, "fc_layer") and no_proj(q, roi).shape == (5, 9, 8)
    with pytest.raises(RuntimeError, match="with_proj=False"):
        no_proj.project(inner)
    with pytest.raises(ValueError, match="DynamicConv"):
        conv(q, torch.randn(5, 16, 4, 4))


def _head(mode, seed=0):
    torch.manual_seed(seed)
    return DIIHead(
        7,
        in_channels=16,
        num_heads=2,
        feedforward_channels=32,
        dynamic_feat_channels=4,
        roi_feat_size=3,
        interaction=mode,
    ).eval()


@pytest.mark.parametrize("mode", INTERACTION_MODES)
def test_interaction_couples_frames_as_the_mode_says(mode):
    B, T, N, C = 2, 3, 4, 16
    head = _head(mode)
    x = torch.randn(B * T, N, C)
    base = head.interact(x, T)
    changed = x.clone()
    changed[1] += 1.0  # frame 1 of clip 0
    out = head.interact(changed, T)
    frame0_moved = not torch.allclose(out[0], base[0], atol=1e-6)
    assert frame0_moved == (mode != "spatial")
    assert torch.allclose(out[T:], base[T:], atol=1e-6)  # clip 1 never sees clip 0
    # every mode treats each query of a frame alike: permuting queries permutes the output
    perm = torch.randperm(N)
    torch.testing.assert_close(head.interact(x[:, perm], T), base[:, perm], rtol=1e-5, atol=1e-5)


def test_stqi_is_spatial_then_the_same_module_over_time():
    B, T, N, C = 2, 3, 4, 16
    head = _head("stqi")
    x = torch.randn(B * T, N, C)
    spatial = head.attention_norm(head.attention(x))
    seq = spatial.view(B, T, N, C).permute(0, 2, 1, 3).reshape(B * N, T, C)
    expected = head.attention_norm(head.attention(seq)).view(B, N, T, C).permute(0, 2, 1, 3)
    torch.testing.assert_close(head.interact(x, T), expected.reshape(B * T, N, C))
    # "fused" = one attention over the T*N queries of each clip
    fused = _head("fused")
    exp = fused.attention_norm(fused.attention(x.view(B, T * N, C))).view(B * T, N, C)
    torch.testing.assert_close(fused.interact(x, T), exp)
    # a single frame: stqi's temporal step is attention over a length-1 sequence
    assert head.interact(x[:1], 1).shape == (1, N, C)


def test_temporal_mode_mixes_each_query_over_its_frames_only():
    B, T, N, C = 1, 3, 4, 16
    head = _head("temporal")
    x = torch.randn(B * T, N, C)
    base = head.interact(x, T)
    changed = x.clone()
    changed[1, 0] += 1.0  # query 0 in frame 1
    out = head.interact(changed, T)
    assert not torch.allclose(out[0, 0], base[0, 0], atol=1e-6)  # the same query, another frame
    torch.testing.assert_close(out[:, 1:], base[:, 1:])  # the other queries: untouched
    seq = x.transpose(0, 1)  # (N, T, C): one sequence per query
    expected = head.attention_norm(head.attention(seq)).transpose(0, 1)
    torch.testing.assert_close(base, expected)


def test_stage_head_outputs_and_init():
    head = _head("stqi")
    F_, N = 6, 4
    cls, delta, obj, attn = head(torch.randn(F_ * N, 16, 3, 3), torch.randn(F_, N, 16), 3)
    assert cls.shape == (F_, N, 7) and delta.shape == (F_, N, 4)
    assert obj.shape == attn.shape == (F_, N, 16)
    prior = -math.log(0.99 / 0.01)
    assert torch.allclose(head.fc_cls.bias, torch.full((7,), prior))
    with pytest.raises(ValueError, match="RoI features"):
        head(torch.randn(5, 16, 3, 3), torch.randn(F_, N, 16), 3)
    with pytest.raises(ValueError, match="B\\*T"):
        head.interact(torch.randn(5, N, 16), 3)
    with pytest.raises(ValueError, match="interaction"):
        DIIHead(7, interaction="spatiotemporal")
    with pytest.raises(ValueError, match="ftsa"):
        query_interaction(torch.randn(3, N, 16), 3, "ftsa", head.attention, head.attention_norm)


def test_dynamic_mask_head_shapes_and_per_roi_independence():
    torch.manual_seed(0)
    head = DynamicMaskHead(
        5, in_channels=16, conv_out_channels=8, roi_feat_size=4, dynamic_feat_channels=4
    ).eval()
    roi, q = torch.randn(3, 16, 4, 4), torch.randn(3, 16)
    out = head(roi, q)
    assert out.shape == (3, 5, 8, 8)
    torch.testing.assert_close(head(roi[1:2], q[1:2]), out[1:2], rtol=1e-5, atol=1e-5)
    assert torch.equal(head.conv_logits.bias, torch.zeros(5))
    assert not hasattr(head.instance_interactive_conv, "fc_layer")
