#include "model/kv_cache.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "core/tensor_format.h"

namespace lvrl::model {

KVCache::KVCache(const TextConfig& config, int64_t batch, int64_t capacity, at::ScalarType dtype,
                 const at::Device& device)
    : batch_(batch), capacity_(capacity), lengths_(batch, 0) {
  LVRL_ASSERT(batch > 0 && capacity > 0,
              fmt::format("KV cache of batch {} and capacity {}", batch, capacity));
  auto options = at::TensorOptions().dtype(dtype).device(device);
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    keys_.push_back(at::zeros({batch, capacity, config.num_key_value_heads, config.head_dim()}, options));
    values_.push_back(at::zeros_like(keys_.back()));
  }
  rope_deltas = at::zeros({batch}, at::kLong);
}

at::Tensor KVCache::lengths() const {
  return at::tensor(lengths_, at::kLong);
}

std::pair<at::Tensor, at::Tensor> KVCache::append(int64_t layer, const at::Tensor& k, const at::Tensor& v) {
  LVRL_ASSERT(layer >= 0 && layer < static_cast<int64_t>(keys_.size()), fmt::format("layer {}", layer));
  LVRL_ASSERT(k.dim() == 4 && k.size(0) == batch_ && k.sizes() == v.sizes(),
              fmt::format("append k {} v {} to a cache of batch {}", k.sizes(), v.sizes(), batch_));
  const int64_t n = k.size(1);
  int64_t longest = 0;
  for (int64_t row = 0; row < batch_; ++row) {
    const int64_t end = lengths_[row] + n;
    if (end > capacity_) {
      throw InputError({"", 0, "kv_cache.capacity", std::to_string(capacity_)},
                       fmt::format("row {} holds {} tokens; {} more exceed the KV cache capacity {}", row,
                                   lengths_[row], n, capacity_));
    }
    keys_[layer][row].narrow(0, lengths_[row], n).copy_(k[row]);
    values_[layer][row].narrow(0, lengths_[row], n).copy_(v[row]);
    longest = std::max(longest, end);
  }
  return {keys_[layer].narrow(1, 0, longest), values_[layer].narrow(1, 0, longest)};
}

void KVCache::advance(const std::vector<int64_t>& valid) {
  LVRL_ASSERT(static_cast<int64_t>(valid.size()) == batch_, "one valid count per row");
  for (int64_t row = 0; row < batch_; ++row) lengths_[row] += valid[row];
}

}  // namespace lvrl::model
