// CUDA kernels of multi-scale deformable attention (see ms_deform_attn.h for the shapes).
//
// Sampling convention (grid_sample with align_corners=False, zero padding): a location (x, y) in
// [0, 1] on a level of size (H, W) reads the pixel grid at (h, w) = (y * H - 0.5, x * W - 0.5);
// each of the four integer neighbours contributes its bilinear weight when it lies inside the map.
//
// Forward: one thread per output element (n, q, m, d), summing over levels and points.
// Backward: one thread per sample (n, q, m, l, p), looping over the D channels; it owns the
// gradients of its location and weight (plain stores) and scatters into grad_value with atomics.
// Only c10/cuda headers: ATen/cuda/CUDAContext.h pulls in cuBLAS/cuSPARSE headers, which minimal
// CUDA toolkits (nvcc + cudart only) do not ship.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include "ms_deform_attn.h"

namespace vis_core {

namespace {

constexpr int kThreads = 256;

inline int64_t num_blocks(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return blocks < 1 ? 1 : (blocks > 65535LL * 64 ? 65535LL * 64 : blocks);
}

// Geometry of one bilinear sample: the four neighbour offsets into the level (or -1 when the
// neighbour is outside the map) and the fractional parts.
template <typename scalar_t>
struct Bilinear {
  int64_t idx[4];  // (h0, w0), (h0, w1), (h1, w0), (h1, w1) as h * W + w, or -1
  scalar_t lh, lw;  // fractional offsets of the sample from (h0, w0)

  __device__ Bilinear(scalar_t x, scalar_t y, int64_t H, int64_t W) {
    const scalar_t h_im = y * static_cast<scalar_t>(H) - static_cast<scalar_t>(0.5);
    const scalar_t w_im = x * static_cast<scalar_t>(W) - static_cast<scalar_t>(0.5);
    const scalar_t h_floor = floor(h_im);
    const scalar_t w_floor = floor(w_im);
    lh = h_im - h_floor;
    lw = w_im - w_floor;
    // Clamp before the integer conversion so far-away samples cannot overflow.
    const int64_t h0 = static_cast<int64_t>(fmax(fmin(h_floor, static_cast<scalar_t>(H)), static_cast<scalar_t>(-2)));
    const int64_t w0 = static_cast<int64_t>(fmax(fmin(w_floor, static_cast<scalar_t>(W)), static_cast<scalar_t>(-2)));
    const int64_t h1 = h0 + 1;
    const int64_t w1 = w0 + 1;
    const bool h0_in = h0 >= 0 && h0 < H;
    const bool h1_in = h1 >= 0 && h1 < H;
    const bool w0_in = w0 >= 0 && w0 < W;
    const bool w1_in = w1 >= 0 && w1 < W;
    idx[0] = (h0_in && w0_in) ? h0 * W + w0 : -1;
    idx[1] = (h0_in && w1_in) ? h0 * W + w1 : -1;
    idx[2] = (h1_in && w0_in) ? h1 * W + w0 : -1;
    idx[3] = (h1_in && w1_in) ? h1 * W + w1 : -1;
  }
};

template <typename scalar_t>
__global__ void ms_deform_attn_forward_kernel(
    const int64_t total,
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ spatial_shapes,
    const int64_t* __restrict__ level_start_index,
    const scalar_t* __restrict__ locations,
    const scalar_t* __restrict__ weights,
    scalar_t* __restrict__ output,
    const int64_t S,
    const int64_t M,
    const int64_t D,
    const int64_t Lq,
    const int64_t L,
    const int64_t P) {
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    // index enumerates (n, q, m, d), which is also the output layout (N, Lq, M * D).
    const int64_t d = index % D;
    const int64_t m = (index / D) % M;
    const int64_t nq = index / (D * M);  // n * Lq + q
    const int64_t n = nq / Lq;
    const int64_t row = M * D;  // stride of one key in value
    const scalar_t* value_nm = value + n * S * row + m * D + d;
    const int64_t sample_base = (nq * M + m) * L * P;  // first (l, p) of this (n, q, m)
    scalar_t acc = 0;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t H = spatial_shapes[2 * l];
      const int64_t W = spatial_shapes[2 * l + 1];
      const scalar_t* value_l = value_nm + level_start_index[l] * row;
      for (int64_t p = 0; p < P; ++p) {
        const int64_t s = sample_base + l * P + p;
        const Bilinear<scalar_t> b(locations[2 * s], locations[2 * s + 1], H, W);
        const scalar_t hh = 1 - b.lh, hw = 1 - b.lw;
        const scalar_t corner_w[4] = {hh * hw, hh * b.lw, b.lh * hw, b.lh * b.lw};
        scalar_t sample = 0;
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          if (b.idx[c] >= 0) {
            sample += corner_w[c] * value_l[b.idx[c] * row];
          }
        }
        acc += weights[s] * sample;
      }
    }
    output[index] = acc;
  }
}

template <typename scalar_t>
__global__ void ms_deform_attn_backward_kernel(
    const int64_t total,
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ spatial_shapes,
    const int64_t* __restrict__ level_start_index,
    const scalar_t* __restrict__ locations,
    const scalar_t* __restrict__ weights,
    const scalar_t* __restrict__ grad_output,
    scalar_t* __restrict__ grad_value,
    scalar_t* __restrict__ grad_locations,
    scalar_t* __restrict__ grad_weights,
    const int64_t S,
    const int64_t M,
    const int64_t D,
    const int64_t Lq,
    const int64_t L,
    const int64_t P) {
  for (int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; s < total;
       s += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    // s enumerates (n, q, m, l, p), the layout of attention_weights.
    const int64_t l = (s / P) % L;
    const int64_t nqm = s / (P * L);  // (n * Lq + q) * M + m
    const int64_t m = nqm % M;
    const int64_t n = nqm / (M * Lq);
    const int64_t row = M * D;
    const int64_t H = spatial_shapes[2 * l];
    const int64_t W = spatial_shapes[2 * l + 1];
    const int64_t offset = (n * S + level_start_index[l]) * row + m * D;  // value[n, start_l, m, 0]
    const scalar_t* value_l = value + offset;
    scalar_t* grad_value_l = grad_value + offset;
    const scalar_t* grad_out = grad_output + nqm * D;
    const scalar_t weight = weights[s];

    const Bilinear<scalar_t> b(locations[2 * s], locations[2 * s + 1], H, W);
    const scalar_t hh = 1 - b.lh, hw = 1 - b.lw;
    const scalar_t corner_w[4] = {hh * hw, hh * b.lw, b.lh * hw, b.lh * b.lw};
    // Derivatives of the corner weights with respect to lw and lh.
    const scalar_t dw_dlw[4] = {-hh, hh, -b.lh, b.lh};
    const scalar_t dw_dlh[4] = {-hw, -b.lw, hw, b.lw};

    scalar_t g_weight = 0, g_lw = 0, g_lh = 0;
    for (int64_t d = 0; d < D; ++d) {
      const scalar_t go = grad_out[d];
      scalar_t sample = 0, dsample_dlw = 0, dsample_dlh = 0;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        if (b.idx[c] >= 0) {
          const int64_t pos = b.idx[c] * row + d;
          const scalar_t v = value_l[pos];
          sample += corner_w[c] * v;
          dsample_dlw += dw_dlw[c] * v;
          dsample_dlh += dw_dlh[c] * v;
          atomicAdd(grad_value_l + pos, go * weight * corner_w[c]);
        }
      }
      g_weight += go * sample;
      g_lw += go * dsample_dlw;
      g_lh += go * dsample_dlh;
    }
    grad_weights[s] = g_weight;
    // lw = x * W - 0.5 - floor(.), so d lw / d x = W (and d lh / d y = H).
    grad_locations[2 * s] = weight * g_lw * static_cast<scalar_t>(W);
    grad_locations[2 * s + 1] = weight * g_lh * static_cast<scalar_t>(H);
  }
}

void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* name) {
  TORCH_CHECK(
      a.device() == b.device(),
      "ms_deform_attn: ",
      name,
      " is on ",
      b.device(),
      " but value is on ",
      a.device());
}

}  // namespace

at::Tensor ms_deform_attn_cuda_forward(
    const at::Tensor& value_in,
    const at::Tensor& spatial_shapes_in,
    const at::Tensor& level_start_index_in,
    const at::Tensor& sampling_locations_in,
    const at::Tensor& attention_weights_in) {
  check_same_device(value_in, spatial_shapes_in, "spatial_shapes");
  check_same_device(value_in, level_start_index_in, "level_start_index");
  check_same_device(value_in, sampling_locations_in, "sampling_locations");
  check_same_device(value_in, attention_weights_in, "attention_weights");
  TORCH_CHECK(
      sampling_locations_in.scalar_type() == value_in.scalar_type() &&
          attention_weights_in.scalar_type() == value_in.scalar_type(),
      "ms_deform_attn: value, sampling_locations and attention_weights must share a dtype");
  c10::cuda::CUDAGuard guard(value_in.device());
  const auto value = value_in.contiguous();
  const auto spatial_shapes = spatial_shapes_in.to(at::kLong).contiguous();
  const auto level_start_index = level_start_index_in.to(at::kLong).contiguous();
  const auto locations = sampling_locations_in.contiguous();
  const auto weights = attention_weights_in.contiguous();

  const int64_t N = value.size(0), S = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Lq = locations.size(1), L = locations.size(3), P = locations.size(4);
  auto output = at::empty({N, Lq, M * D}, value.options());
  const int64_t total = N * Lq * M * D;
  if (total == 0) {
    return output;
  }
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_forward", [&] {
    ms_deform_attn_forward_kernel<scalar_t><<<num_blocks(total), kThreads, 0, stream>>>(
        total,
        value.data_ptr<scalar_t>(),
        spatial_shapes.data_ptr<int64_t>(),
        level_start_index.data_ptr<int64_t>(),
        locations.data_ptr<scalar_t>(),
        weights.data_ptr<scalar_t>(),
        output.data_ptr<scalar_t>(),
        S, M, D, Lq, L, P);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return output;
}

std::vector<at::Tensor> ms_deform_attn_cuda_backward(
    const at::Tensor& value_in,
    const at::Tensor& spatial_shapes_in,
    const at::Tensor& level_start_index_in,
    const at::Tensor& sampling_locations_in,
    const at::Tensor& attention_weights_in,
    const at::Tensor& grad_output_in) {
  check_same_device(value_in, grad_output_in, "grad_output");
  c10::cuda::CUDAGuard guard(value_in.device());
  const auto value = value_in.contiguous();
  const auto spatial_shapes = spatial_shapes_in.to(at::kLong).contiguous();
  const auto level_start_index = level_start_index_in.to(at::kLong).contiguous();
  const auto locations = sampling_locations_in.contiguous();
  const auto weights = attention_weights_in.contiguous();
  const auto grad_output = grad_output_in.to(value.scalar_type()).contiguous();

  const int64_t N = value.size(0), S = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Lq = locations.size(1), L = locations.size(3), P = locations.size(4);
  TORCH_CHECK(
      grad_output.numel() == N * Lq * M * D,
      "ms_deform_attn backward: grad_output has ", grad_output.numel(), " elements, expected ",
      N * Lq * M * D);
  auto grad_value = at::zeros_like(value);
  auto grad_locations = at::zeros_like(locations);
  auto grad_weights = at::zeros_like(weights);
  const int64_t total = N * Lq * M * L * P;
  if (total == 0) {
    return {grad_value, grad_locations, grad_weights};
  }
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward", [&] {
    ms_deform_attn_backward_kernel<scalar_t><<<num_blocks(total), kThreads, 0, stream>>>(
        total,
        value.data_ptr<scalar_t>(),
        spatial_shapes.data_ptr<int64_t>(),
        level_start_index.data_ptr<int64_t>(),
        locations.data_ptr<scalar_t>(),
        weights.data_ptr<scalar_t>(),
        grad_output.data_ptr<scalar_t>(),
        grad_value.data_ptr<scalar_t>(),
        grad_locations.data_ptr<scalar_t>(),
        grad_weights.data_ptr<scalar_t>(),
        S, M, D, Lq, L, P);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {grad_value, grad_locations, grad_weights};
}

}  // namespace vis_core
