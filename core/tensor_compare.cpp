#include "core/tensor_compare.h"

#include <ATen/ATen.h>

#include "core/error.h"

namespace lvrl {

double max_relative_difference(const at::Tensor& actual, const at::Tensor& reference) {
  LVRL_ASSERT(actual.sizes() == reference.sizes(), "max_relative_difference of tensors of different shapes");
  const at::Tensor a = actual.detach().to(at::kCPU, at::kDouble);
  const at::Tensor r = reference.detach().to(at::kCPU, at::kDouble);
  if (r.numel() == 0) return 0;
  const double scale = r.abs().max().item<double>();
  const double difference = (a - r).abs().max().item<double>();
  return scale > 0 ? difference / scale : difference;
}

}  // namespace lvrl
