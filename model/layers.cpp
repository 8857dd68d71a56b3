#include "model/layers.h"

#include <ATen/ATen.h>

namespace lvrl::model {

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", at::ones({dim}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  const at::ScalarType compute = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor xf = x.to(compute);
  at::Tensor normalized = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps_);
  return weight * normalized.to(x.scalar_type());
}

SwiGLUImpl::SwiGLUImpl(int64_t dim, int64_t hidden, bool bias) {
  gate_proj =
      register_module("gate_proj", torch::nn::Linear(torch::nn::LinearOptions(dim, hidden).bias(bias)));
  up_proj = register_module("up_proj", torch::nn::Linear(torch::nn::LinearOptions(dim, hidden).bias(bias)));
  down_proj =
      register_module("down_proj", torch::nn::Linear(torch::nn::LinearOptions(hidden, dim).bias(bias)));
}

at::Tensor SwiGLUImpl::forward(const at::Tensor& x) {
  return down_proj(at::silu(gate_proj(x)) * up_proj(x));
}

}  // namespace lvrl::model
