// How far a result is from its reference, measured one way in checks (`lvrl sp check`, the
// benchmarks) and tests alike: max |actual − reference| / max |reference|, in float64 on the CPU.
// Relative to the largest reference value rather than element by element, so entries near zero do
// not blow up the figure; tolerances are stated against it (e.g. 1e-10 for float64 kernels, 1e-5
// for float32).
#pragma once

#include <ATen/Tensor.h>

namespace lvrl {

// The absolute difference when the reference is all zero; NaN when either holds a NaN.
double max_relative_difference(const at::Tensor& actual, const at::Tensor& reference);

}  // namespace lvrl
