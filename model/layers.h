// Building blocks shared by both towers: RMSNorm and the SwiGLU MLP, with transformers' numerics.
#pragma once

#include <ATen/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace lvrl::model {

// y = weight ⊙ cast_to_input_dtype(x_f32 · rsqrt(mean(x_f32²) + eps)): the normalized value is cast
// back to the input's dtype *before* the weight multiplies it (docs/model.md#vision-forward). Float64 inputs
// are normalized in float64.
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x);  // [..., dim] → same

  at::Tensor weight;  // [dim], initialised to ones
 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// down(SiLU(gate(x)) ⊙ up(x)); the vision tower's has biases, the language model's none.
class SwiGLUImpl : public torch::nn::Module {
 public:
  SwiGLUImpl(int64_t dim, int64_t hidden, bool bias);
  at::Tensor forward(const at::Tensor& x);  // [..., dim] → [..., dim]

  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr};  // [hidden, dim]
  torch::nn::Linear down_proj{nullptr};                    // [dim, hidden]
};
TORCH_MODULE(SwiGLU);

}  // namespace lvrl::model
