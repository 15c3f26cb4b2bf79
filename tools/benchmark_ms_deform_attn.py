#!/usr/bin/env python
"""Time multi-scale deformable attention at Mask2Former-VIS's pixel-decoder shapes.

Shapes: one clip of T frames (T = 2, the training clip, and T = 36, a long inference clip) at
--height x --width input, padded to --size-divisibility (32 in Base-Mask2Former_VIS.yaml), three
levels at strides 8, 16 and 32; the encoder's queries are all the pixels of the three levels
(Lq = S), 8 heads, 4 points, 256 channels (32 per head). Each frame is one sample (N = T), as in
the per-frame pixel decoder. Locations are uniform in [0, 1], weights a softmax over levels and
points.

On the CPU only the PyTorch twin runs (``ms_deform_attn_pytorch``). With ``--device cuda`` and
vis_core._C built, the compiled op and the twin both run on the GPU; their times, peak memory and
the largest relative difference of output and gradients (float32) are printed.

Times are medians of --repeats calls after one warm-up, "fwd" the op alone, "fwd+bwd" the op and
its backward into value, locations and weights. --frames-per-call splits a clip into calls of that
many frames (the frames are independent, so the clip's time is the sum); 0 = the whole clip in one
call. The default on the CPU is 6 frames per call, which bounds the twin's memory (it holds
N x 8 x 32 x Lq x 3 x 4 sampled values, about 4.5 GB for 36 frames at once).

    python tools/benchmark_ms_deform_attn.py [--device cpu|cuda] [--frames 2 36] [--threads 1]
"""

import argparse
import math
import time
from typing import Callable, Dict, List

import numpy as np
import torch

from vis_core.layers import is_compiled_op_available, ms_deform_attn
from vis_core.utils.benchmark import peak_memory_mb


def level_shapes(height: int, width: int, divisibility: int, strides=(8, 16, 32)) -> List[tuple]:
    """(H, W) of each level after padding the input to a multiple of ``divisibility``."""
    if divisibility > 0:
        height = int(math.ceil(height / divisibility) * divisibility)
        width = int(math.ceil(width / divisibility) * divisibility)
    return [(math.ceil(height / s), math.ceil(width / s)) for s in strides]


def make_inputs(N, shapes, heads, head_dim, points, device, gen):
    """Random op inputs for N frames whose queries are all the pixels of all levels."""
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    areas = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    S = int(areas.sum())
    L = len(shapes)
    value = torch.randn(N, S, heads, head_dim, generator=gen)
    locations = torch.rand(N, S, heads, L, points, 2, generator=gen)
    weights = torch.randn(N, S, heads, L * points, generator=gen).softmax(-1)
    weights = weights.view(N, S, heads, L, points)  # (N, Lq, M, L*P) -> (N, Lq, M, L, P)
    tensors = [value, spatial_shapes, level_start_index, locations, weights]
    return [t.to(device) for t in tensors]


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_clip(inputs, impl: str, frames_per_call: int, backward: bool) -> Dict[str, torch.Tensor]:
    """Run the op over the clip in chunks of frames; returns the output (and gradients)."""
    value, shapes, starts, locations, weights = inputs
    N = value.shape[0]
    step = frames_per_call if frames_per_call > 0 else N
    outs, grads = [], {"value": [], "locations": [], "weights": []}
    for k in range(0, N, step):
        v, loc, w = (t[k : k + step] for t in (value, locations, weights))
        if backward:
            v, loc, w = (t.detach().requires_grad_() for t in (v, loc, w))
        out = ms_deform_attn(v, shapes, starts, loc, w, impl=impl)
        if backward:
            out.backward(torch.ones_like(out))
            for name, t in zip(("value", "locations", "weights"), (v, loc, w)):
                grads[name].append(t.grad)
        outs.append(out.detach())
    result = {"output": torch.cat(outs)}
    if backward:
        result.update({name: torch.cat(g) for name, g in grads.items()})
    return result


def timed(fn: Callable[[], object], device: str, repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls after one warm-up."""
    fn()
    synchronize(device)
    elapsed = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        elapsed.append(time.perf_counter() - start)
    return float(np.median(elapsed)) * 1e3


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, nargs="+", default=[2, 36])
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--size-divisibility", type=int, default=32)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--frames-per-call", type=int, default=None, help="default: 6 on the CPU, 0 (all) on CUDA"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("benchmark_ms_deform_attn: --device cuda asked for, but no GPU is visible")
    frames_per_call = args.frames_per_call
    if frames_per_call is None:
        frames_per_call = 0 if device.startswith("cuda") else 6
    impls = ["pytorch"]
    if device.startswith("cuda"):
        if is_compiled_op_available():
            impls = ["cuda", "pytorch"]
        else:
            print("vis_core._C is not built: only the PyTorch twin is timed on the GPU")
    shapes = level_shapes(args.height, args.width, args.size_divisibility)
    S = sum(h * w for h, w in shapes)
    head_dim = args.channels // args.heads
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else "-"
    print(
        f"torch {torch.__version__}, device {device} ({gpu}), {torch.get_num_threads()} CPU "
        f"thread(s); input {args.height}x{args.width} padded to /{args.size_divisibility}: "
        f"levels {shapes}, S = Lq = {S} per frame, heads {args.heads}, points {args.points}, "
        f"channels {args.channels}; frames per call: {frames_per_call or 'all'}"
    )
    header = (
        f"{'T':>3} {'impl':>8} {'fwd ms':>10} {'fwd+bwd ms':>11} {'fwd ms/frame':>13} "
        f"{'peak MB':>9}"
    )
    print(header)
    gen = torch.Generator().manual_seed(args.seed)
    for T in args.frames:
        inputs = make_inputs(T, shapes, args.heads, head_dim, args.points, device, gen)
        results = {}
        for impl in impls:
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            with torch.no_grad():
                fwd = timed(
                    lambda: run_clip(inputs, impl, frames_per_call, False), device, args.repeats
                )
            both = timed(
                lambda: run_clip(inputs, impl, frames_per_call, True), device, args.repeats
            )
            if len(impls) == 2:
                results[impl] = run_clip(inputs, impl, frames_per_call, True)
            print(
                f"{T:>3} {impl:>8} {fwd:>10.1f} {both:>11.1f} {fwd / T:>13.1f} "
                f"{peak_memory_mb(device):>9.0f}"
            )
        if len(results) == 2:
            errors = {
                k: rel_err(results["cuda"][k], results["pytorch"][k]) for k in results["cuda"]
            }
            print(
                "    cuda vs pytorch, max relative difference: "
                + ", ".join(f"{k} {v:.2e}" for k, v in errors.items())
            )


if __name__ == "__main__":
    main()
