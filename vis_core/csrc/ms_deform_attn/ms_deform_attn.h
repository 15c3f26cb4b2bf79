// Multi-scale deformable attention (Deformable DETR's operator), CUDA implementation.
//
// Shapes (legend: N batch, S flattened keys over all levels, M heads, D channels per head,
// Lq queries, L levels, P sampling points per level and head):
//   value               (N, S, M, D)
//   spatial_shapes      (L, 2) int64, (H, W) of each level
//   level_start_index   (L,) int64, offset of each level in S
//   sampling_locations  (N, Lq, M, L, P, 2), (x, y) in [0, 1], align_corners=False
//   attention_weights   (N, Lq, M, L, P)
//   output              (N, Lq, M * D)
// Bilinear sampling with zero padding outside the feature map.
#pragma once
#include <torch/extension.h>

#include <vector>

namespace vis_core {

#ifdef WITH_CUDA
at::Tensor ms_deform_attn_cuda_forward(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);

// Returns {grad_value, grad_sampling_locations, grad_attention_weights}.
std::vector<at::Tensor> ms_deform_attn_cuda_backward(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights,
    const at::Tensor& grad_output);
#endif

}  // namespace vis_core
