#include "model/kv_cache.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "core/tensor_format.h"
#include "model/rope.h"

namespace lvrl::model {

void KVCache::advance(const std::vector<int64_t>& valid) {
  LVRL_ASSERT(valid.size() == next_position_.size(),
              fmt::format("{} valid counts for {} rows", valid.size(), next_position_.size()));
  for (size_t row = 0; row < valid.size(); ++row) next_position_[row] += valid[row];
}

at::Tensor KVCache::next_positions(int64_t n) const {
  const at::Tensor start = at::tensor(next_position_, at::kLong);
  return decode_positions(start, at::zeros_like(start), n);
}

DenseKVCache::DenseKVCache(const TextConfig& config, int64_t batch, int64_t capacity, at::ScalarType dtype,
                           const at::Device& device)
    : batch_(batch), capacity_(capacity), lengths_(batch, 0) {
  LVRL_ASSERT(batch > 0 && capacity > 0,
              fmt::format("KV cache of batch {} and capacity {}", batch, capacity));
  auto options = at::TensorOptions().dtype(dtype).device(device);
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    keys_.push_back(at::zeros({batch, capacity, config.num_key_value_heads, config.head_dim()}, options));
    values_.push_back(at::zeros_like(keys_.back()));
  }
  next_position_.assign(batch, 0);
}

at::Tensor DenseKVCache::lengths() const {
  return at::tensor(lengths_, at::kLong);
}

at::Tensor DenseKVCache::attend(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                AttentionBackend& attention) {
  LVRL_ASSERT(layer >= 0 && layer < layers(), fmt::format("layer {}", layer));
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
  // The n new queries of row b sit at cache indices length_b .. length_b + n − 1 and see keys up to
  // their own index (bottom-right causal against the row's key length).
  AttentionSpec spec;
  spec.mask = MaskKind::Causal;
  spec.key_lengths = lengths() + n;
  return attention.forward(q, keys_[layer].narrow(1, 0, longest), values_[layer].narrow(1, 0, longest), spec)
      .out;
}

void DenseKVCache::advance(const std::vector<int64_t>& valid) {
  KVCache::advance(valid);
  for (int64_t row = 0; row < batch_; ++row) lengths_[row] += valid[row];
}

at::Tensor DenseKVCache::keys(int64_t layer, int64_t row) const {
  return keys_.at(layer).narrow(0, row, 1).narrow(1, 0, lengths_.at(row));
}

at::Tensor DenseKVCache::values(int64_t layer, int64_t row) const {
  return values_.at(layer).narrow(0, row, 1).narrow(1, 0, lengths_.at(row));
}

int64_t DenseKVCache::bytes() const {
  int64_t total = 0;
  for (size_t i = 0; i < keys_.size(); ++i) total += keys_[i].nbytes() + values_[i].nbytes();
  return total;
}

}  // namespace lvrl::model
