"""Multi-scale deformable attention: PyTorch twin vs a float64 reference written from the definition,
gradcheck, dispatch rules, the MSDeformAttn module, and (with a GPU and vis_core._C) CUDA vs twin.
"""

import math

import pytest
import torch

import vis_core.layers.deform_attn as msda
from vis_core.layers import MSDeformAttn, ms_deform_attn, ms_deform_attn_pytorch

requires_cuda_op = pytest.mark.skipif(
    not (torch.cuda.is_available() and msda.is_compiled_op_available()),
    reason="needs a GPU and vis_core._C built with CUDA",
)


def make_inputs(N, M, D, Lq, shapes, P, dtype=torch.float64, device="cpu", margin=0.2, seed=0):
    """Random inputs; locations range over [-margin, 1 + margin] so that padding is exercised."""
    g = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    areas = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    S = int(areas.sum())
    L = len(shapes)
    value = torch.randn(N, S, M, D, generator=g, dtype=dtype)
    locations = torch.rand(N, Lq, M, L, P, 2, generator=g, dtype=dtype) * (1 + 2 * margin) - margin
    weights = torch.rand(N, Lq, M, L, P, generator=g, dtype=dtype)
    weights = weights / weights.sum(dim=(-2, -1), keepdim=True)
    out = [value, spatial_shapes, level_start_index, locations, weights]
    return [t.to(device) for t in out]


def reference(value, spatial_shapes, level_start_index, locations, weights):
    """Direct float64 evaluation of the definition, one sample at a time (small inputs only).

    out[n, q, m*D:(m+1)*D] = sum_{l,p} w[n,q,m,l,p] * bilinear(value_l[n, :, :, m], x*W - 0.5, y*H - 0.5)
    where a pixel (h, w) outside [0, H) x [0, W) reads zero.
    """
    value = value.double()
    N, _, M, D = value.shape
    _, Lq, _, L, P, _ = locations.shape
    out = torch.zeros(N, Lq, M, D, dtype=torch.float64)
    for n in range(N):
        for q in range(Lq):
            for m in range(M):
                for lvl in range(L):
                    H, W = (int(v) for v in spatial_shapes[lvl])
                    start = int(level_start_index[lvl])

                    def pixel(h, w):
                        if 0 <= h < H and 0 <= w < W:
                            return value[n, start + h * W + w, m]
                        return torch.zeros(D, dtype=torch.float64)

                    for p in range(P):
                        x, y = (float(v) for v in locations[n, q, m, lvl, p])
                        hf, wf = y * H - 0.5, x * W - 0.5
                        h0, w0 = math.floor(hf), math.floor(wf)
                        dh, dw = hf - h0, wf - w0
                        sample = (
                            (1 - dh) * (1 - dw) * pixel(h0, w0)
                            + (1 - dh) * dw * pixel(h0, w0 + 1)
                            + dh * (1 - dw) * pixel(h0 + 1, w0)
                            + dh * dw * pixel(h0 + 1, w0 + 1)
                        )
                        out[n, q, m] += float(weights[n, q, m, lvl, p]) * sample
    return out.view(N, Lq, M * D)


@pytest.mark.parametrize(
    "N,M,D,Lq,shapes,P",
    [
        (1, 1, 1, 3, [(4, 5)], 1),
        (2, 2, 3, 4, [(6, 4), (3, 2)], 2),
        (1, 3, 2, 5, [(5, 7), (3, 3), (1, 2)], 3),
    ],
)
def test_twin_matches_reference(N, M, D, Lq, shapes, P):
    inputs = make_inputs(N, M, D, Lq, shapes, P)
    out = ms_deform_attn_pytorch(*inputs)
    assert out.shape == (N, Lq, M * D)
    torch.testing.assert_close(out, reference(*inputs), rtol=1e-10, atol=1e-10)


def test_twin_zero_outside_and_exact_at_pixel_centres():
    value, shapes, starts, loc, w = make_inputs(1, 1, 2, 2, [(3, 4)], 1)
    # centre of pixel (h=1, w=2) is x = (2 + 0.5) / 4, y = (1 + 0.5) / 3; far outside reads zero
    loc[0, 0, 0, 0, 0] = torch.tensor([2.5 / 4, 1.5 / 3], dtype=torch.float64)
    loc[0, 1, 0, 0, 0] = torch.tensor([3.0, -2.0], dtype=torch.float64)
    w.fill_(1.0)
    out = ms_deform_attn_pytorch(value, shapes, starts, loc, w)
    torch.testing.assert_close(out[0, 0], value[0, 1 * 4 + 2, 0])
    assert torch.all(out[0, 1] == 0)


def test_twin_uses_level_start_index():
    # the same value viewed through a shifted start index must read the shifted keys
    value, shapes, starts, loc, w = make_inputs(1, 2, 2, 3, [(2, 3), (2, 3)], 2, margin=0.0)
    swapped = value.clone()
    swapped[:, :6], swapped[:, 6:] = value[:, 6:], value[:, :6]
    out = ms_deform_attn_pytorch(value, shapes, starts, loc, w)
    out_swapped = ms_deform_attn_pytorch(swapped, shapes, starts.flip(0), loc, w)
    torch.testing.assert_close(out, out_swapped)


def test_gradcheck_twin():
    value, shapes, starts, loc, w = make_inputs(1, 2, 2, 2, [(3, 3), (2, 2)], 2, seed=3)
    value.requires_grad_()
    loc.requires_grad_()
    w.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v, l_, a: ms_deform_attn_pytorch(v, shapes, starts, l_, a),
        (value, loc, w),
        eps=1e-6,
        atol=1e-5,
    )


def test_dispatch_rules(monkeypatch):
    inputs = make_inputs(1, 1, 2, 2, [(2, 2)], 1)
    assert msda._resolve_impl("auto", inputs[0]) == "pytorch"  # CPU tensors -> twin
    assert msda._resolve_impl("pytorch", inputs[0]) == "pytorch"
    with pytest.raises(ValueError, match="impl must be one of"):
        ms_deform_attn(*inputs, impl="triton")
    with pytest.raises(RuntimeError, match="needs CUDA tensors|not built"):
        ms_deform_attn(*inputs, impl="cuda")
    monkeypatch.setattr(msda, "_C", None)
    monkeypatch.setattr(msda, "_C_IMPORT_ERROR", ImportError("no module _C"))
    with pytest.raises(RuntimeError, match="vis_core._C is not built"):
        ms_deform_attn(*inputs, impl="cuda")
    # the env var forces the twin even where the compiled op would be chosen
    monkeypatch.setattr(msda, "_C", object())
    fake_cuda = torch.empty(0)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    assert msda._resolve_impl("auto", fake_cuda) == "cuda"
    monkeypatch.setenv(msda.FORCE_PYTORCH_ENV, "1")
    assert msda._resolve_impl("auto", fake_cuda) == "pytorch"


def test_contract_errors():
    value, shapes, starts, loc, w = make_inputs(1, 2, 2, 2, [(3, 3)], 1)
    with pytest.raises(ValueError, match="S=8 keys"):
        ms_deform_attn(value[:, :8], shapes, starts, loc, w)
    with pytest.raises(ValueError, match="attention_weights must be"):
        ms_deform_attn(value, shapes, starts, loc, w[..., :0])
    with pytest.raises(ValueError, match="sampling_locations must be"):
        ms_deform_attn(value, shapes, starts, loc[:, :, :1], w)


def test_module_init_and_forward():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=3)
    bias = attn.sampling_offsets.bias.view(4, 2, 3, 2)
    # head 0 looks along +x, head 1 (90 degrees) along +y; point k at distance k + 1
    torch.testing.assert_close(bias[0, 1, :, 0], torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(bias[1, 0, :, 1], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.all(attn.attention_weights.weight == 0)

    shapes = torch.tensor([[6, 5], [3, 3]])
    starts = torch.tensor([0, 30])
    N, Lq, S = 2, 7, 39
    query = torch.randn(N, Lq, 32)
    feats = torch.randn(N, S, 32)
    ref2 = torch.rand(N, Lq, 2, 2)
    out = attn(query, ref2, feats, shapes, starts)
    assert out.shape == (N, Lq, 32)
    ref4 = torch.cat([ref2, torch.rand(N, Lq, 2, 2) * 0.5], dim=-1)
    assert attn(query, ref4, feats, shapes, starts).shape == (N, Lq, 32)

    # padded keys do not influence the output
    mask = torch.zeros(N, S, dtype=torch.bool)
    mask[:, 30:] = True
    changed = feats.clone()
    changed[:, 30:] += 100.0
    torch.testing.assert_close(
        attn(query, ref2, feats, shapes, starts, mask),
        attn(query, ref2, changed, shapes, starts, mask),
    )
    out.sum().backward()
    assert attn.sampling_offsets.weight.grad is not None
    assert attn.sampling_offsets.weight.grad.abs().sum() > 0


def test_module_errors():
    with pytest.raises(ValueError, match="divisible"):
        MSDeformAttn(d_model=30, n_heads=8)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=1)
    with pytest.raises(ValueError, match="built for 2 levels"):
        attn(
            torch.randn(1, 2, 16),
            torch.rand(1, 2, 1, 2),
            torch.randn(1, 4, 16),
            torch.tensor([[2, 2]]),
            torch.tensor([0]),
        )


# ---------------------------------------------------------------- GPU: compiled op vs twin
def _rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@requires_cuda_op
@pytest.mark.parametrize(
    "N,M,D,Lq,shapes,P",
    [(2, 8, 32, 300, [(45, 80), (23, 40), (12, 20)], 4), (1, 2, 3, 17, [(7, 5), (3, 2)], 2)],
)
def test_cuda_op_matches_twin_float32(N, M, D, Lq, shapes, P):
    inputs = make_inputs(N, M, D, Lq, shapes, P, dtype=torch.float32, device="cuda", margin=0.1)
    grads = []
    outs = []
    for impl in ("cuda", "pytorch"):
        value, shp, starts, loc, w = (t.clone() for t in inputs)
        for t in (value, loc, w):
            t.requires_grad_()
        out = ms_deform_attn(value, shp, starts, loc, w, impl=impl)
        torch.manual_seed(0)
        g = torch.randn(out.shape, device=out.device)
        out.backward(g)
        outs.append(out.detach())
        grads.append([value.grad, loc.grad, w.grad])
    assert _rel_err(outs[0], outs[1]) < 1e-4
    for g_cuda, g_twin in zip(*grads):
        assert _rel_err(g_cuda, g_twin) < 1e-4


@requires_cuda_op
def test_cuda_op_gradcheck_float64():
    value, shapes, starts, loc, w = make_inputs(1, 2, 2, 3, [(3, 4), (2, 2)], 2, device="cuda")
    for t in (value, loc, w):
        t.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v, l_, a: ms_deform_attn(v, shapes, starts, l_, a, impl="cuda"),
        (value, loc, w),
        eps=1e-6,
        atol=1e-5,
    )
    # the reference on the CPU agrees with the op in float64
    out = ms_deform_attn(value, shapes, starts, loc, w, impl="cuda").detach().cpu()
    ref = reference(*(t.detach().cpu() for t in (value, shapes, starts, loc, w)))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
