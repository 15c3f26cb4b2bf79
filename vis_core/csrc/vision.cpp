// Python bindings of vis_core._C, the compiled ops of vis_core.
// Each op has a pure-PyTorch twin in vis_core/layers; this module only holds the CUDA versions.
#include <torch/extension.h>

#include "ms_deform_attn/ms_deform_attn.h"

namespace vis_core {

static void check_inputs(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  TORCH_CHECK(value.is_cuda(), "vis_core._C.ms_deform_attn: value must be a CUDA tensor");
  TORCH_CHECK(value.dim() == 4, "ms_deform_attn: value must be (N, S, M, D), got ", value.sizes());
  TORCH_CHECK(
      spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
      "ms_deform_attn: spatial_shapes must be (L, 2), got ",
      spatial_shapes.sizes());
  TORCH_CHECK(
      sampling_locations.dim() == 6 && sampling_locations.size(5) == 2,
      "ms_deform_attn: sampling_locations must be (N, Lq, M, L, P, 2), got ",
      sampling_locations.sizes());
  TORCH_CHECK(
      attention_weights.dim() == 5,
      "ms_deform_attn: attention_weights must be (N, Lq, M, L, P), got ",
      attention_weights.sizes());
  TORCH_CHECK(
      level_start_index.dim() == 1 && level_start_index.size(0) == spatial_shapes.size(0),
      "ms_deform_attn: level_start_index must be (L,), got ",
      level_start_index.sizes());
}

at::Tensor ms_deform_attn_forward(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
#ifdef WITH_CUDA
  return ms_deform_attn_cuda_forward(
      value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
#else
  TORCH_CHECK(false, "vis_core._C was built without CUDA support");
#endif
}

std::vector<at::Tensor> ms_deform_attn_backward(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights,
    const at::Tensor& grad_output) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
#ifdef WITH_CUDA
  return ms_deform_attn_cuda_backward(
      value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output);
#else
  TORCH_CHECK(false, "vis_core._C was built without CUDA support");
#endif
}

}  // namespace vis_core

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "vis_core compiled ops (CUDA)";
  m.def(
      "ms_deform_attn_forward",
      &vis_core::ms_deform_attn_forward,
      "multi-scale deformable attention, forward (CUDA)");
  m.def(
      "ms_deform_attn_backward",
      &vis_core::ms_deform_attn_backward,
      "multi-scale deformable attention, backward (CUDA): grad_value, grad_locations, grad_weights");
}
