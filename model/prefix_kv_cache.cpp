#include "model/prefix_kv_cache.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "core/error.h"
#include "core/tensor_format.h"

namespace lvrl::model {

int64_t PromptPrefix::bytes() const {
  int64_t total = 0;
  for (size_t i = 0; i < keys.size(); ++i) total += keys[i].nbytes() + values[i].nbytes();
  return total;
}

PromptPrefix prefix_of_row(const DenseKVCache& cache, int64_t row) {
  PromptPrefix prefix;
  for (int64_t layer = 0; layer < cache.layers(); ++layer) {
    prefix.keys.push_back(cache.keys(layer, row));
    prefix.values.push_back(cache.values(layer, row));
  }
  prefix.next_position = cache.next_position(row);
  return prefix;
}

PrefilledPrompt prefill_prompt(QwenVLImpl& model, const ModelInput& input, int64_t chunk,
                               const PrefillProgress& progress) {
  LVRL_ASSERT(input.input_ids.dim() == 2 && input.input_ids.size(0) == 1,
              fmt::format("prefill_prompt of input_ids {} (one prompt)", input.input_ids.sizes()));
  const at::Tensor weight = model.lm_head_weight();
  DenseKVCache cache(model.config().text, 1, input.input_ids.size(1), weight.scalar_type(), weight.device());
  at::Tensor logits = model.prefill(input, cache, chunk, progress);
  return {std::make_shared<const PromptPrefix>(prefix_of_row(cache, 0)), logits[0]};
}

SharedPrefixKVCache::SharedPrefixKVCache(const TextConfig& config, int64_t capacity, at::ScalarType dtype,
                                         const at::Device& device, TokenPlacement placement, Combine combine)
    : layers_(config.num_hidden_layers),
      kv_heads_(config.num_key_value_heads),
      head_dim_(config.head_dim()),
      capacity_((capacity + placement.ranks - 1) / placement.ranks),
      options_(at::TensorOptions().dtype(dtype).device(device)),
      placement_(placement),
      combine_(std::move(combine)) {
  LVRL_ASSERT(capacity > 0, fmt::format("shared-prefix cache of capacity {}", capacity));
  LVRL_ASSERT(placement.ranks >= 1 && placement.rank >= 0 && placement.rank < placement.ranks,
              fmt::format("placement rank {} of {}", placement.rank, placement.ranks));
  for (int64_t layer = 0; layer < layers_; ++layer) {
    keys_.push_back(at::zeros({0, capacity_, kv_heads_, head_dim_}, options_));
    values_.push_back(at::zeros_like(keys_.back()));
  }
}

void SharedPrefixKVCache::grow(int64_t rows) {
  for (int64_t layer = 0; layer < layers_; ++layer) {
    at::Tensor more = at::zeros({rows, capacity_, kv_heads_, head_dim_}, options_);
    keys_[layer] = at::cat({keys_[layer], more});
    values_[layer] = at::cat({values_[layer], more});
  }
}

void SharedPrefixKVCache::reserve(int64_t capacity) {
  const int64_t per_rank = (capacity + placement_.ranks - 1) / placement_.ranks;
  if (per_rank <= capacity_) return;
  for (int64_t layer = 0; layer < layers_; ++layer) {
    at::Tensor more = at::zeros({batch(), per_rank - capacity_, kv_heads_, head_dim_}, options_);
    keys_[layer] = at::cat({keys_[layer], more}, 1);
    values_[layer] = at::cat({values_[layer], more}, 1);
  }
  capacity_ = per_rank;
}

int64_t SharedPrefixKVCache::add_rows(std::shared_ptr<const PromptPrefix> prefix, int64_t count) {
  LVRL_ASSERT(prefix != nullptr && count > 0, fmt::format("add {} rows", count));
  LVRL_ASSERT(static_cast<int64_t>(prefix->keys.size()) == layers_,
              fmt::format("a prefix of {} layers for a model of {}", prefix->keys.size(), layers_));
  const int64_t first = batch();
  grow(count);
  for (int64_t i = 0; i < count; ++i) {
    rows_.push_back({prefix, 0, 0});
    next_position_.push_back(prefix->next_position);
  }
  return first;
}

void SharedPrefixKVCache::keep_rows(const std::vector<int64_t>& rows) {
  std::vector<Row> kept;
  std::vector<int64_t> positions;
  for (int64_t row : rows) {
    LVRL_ASSERT(row >= 0 && row < batch(), fmt::format("keep row {} of {}", row, batch()));
    kept.push_back(rows_[row]);
    positions.push_back(next_position_[row]);
  }
  const at::Tensor index = at::tensor(rows, at::kLong).to(options_.device());
  for (int64_t layer = 0; layer < layers_; ++layer) {
    keys_[layer] = keys_[layer].index_select(0, index);
    values_[layer] = values_[layer].index_select(0, index);
  }
  rows_ = std::move(kept);
  next_position_ = std::move(positions);
}

int64_t SharedPrefixKVCache::kept_now(const Row& row, int64_t n) const {
  if (placement_.ranks == 1) return n;
  return row.generated % placement_.ranks == placement_.rank ? 1 : 0;
}

at::Tensor SharedPrefixKVCache::attend(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                       const at::Tensor& v, AttentionBackend& attention) {
  const int64_t batch = this->batch(), n = q.size(1);
  LVRL_ASSERT(layer >= 0 && layer < layers_ && q.dim() == 4 && q.size(0) == batch && k.size(0) == batch &&
                  k.sizes() == v.sizes() && k.size(1) == n,
              fmt::format("attend layer {}: q {} k {} v {} over {} rows", layer, q.sizes(), k.sizes(),
                          v.sizes(), batch));
  LVRL_ASSERT(placement_.ranks == 1 || n == 1,
              fmt::format("{} new tokens per row under a {}-rank placement (decode steps only)", n,
                          placement_.ranks));
  // The rows' own tokens: stored at each row's own length, attended causally (bottom-right).
  std::vector<int64_t> key_lengths(batch);
  int64_t longest = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const Row& row = rows_[b];
    const int64_t kept = kept_now(row, n);
    if (row.stored + kept > capacity_) {
      throw InputError({"", 0, "kv_cache.capacity", std::to_string(capacity_)},
                       fmt::format("row {} holds {} new tokens; {} more exceed the cache's capacity {}", b,
                                   row.stored, kept, capacity_));
    }
    if (kept > 0) {
      keys_[layer][b].narrow(0, row.stored, kept).copy_(k[b].narrow(0, n - kept, kept));
      values_[layer][b].narrow(0, row.stored, kept).copy_(v[b].narrow(0, n - kept, kept));
    }
    key_lengths[b] = row.stored + kept;
    longest = std::max(longest, key_lengths[b]);
  }
  AttentionSpec own_spec;
  own_spec.mask = MaskKind::Causal;
  own_spec.key_lengths = at::tensor(key_lengths, at::kLong);
  AttentionResult own;
  if (longest > 0) {
    own = attention.forward(q, keys_[layer].narrow(1, 0, longest), values_[layer].narrow(1, 0, longest),
                            own_spec);
  } else {  // no row has a token here yet (a rank's first step under SP)
    own.out = at::zeros_like(q);
    own.lse = at::full({batch, q.size(2), n}, -INFINITY,
                       q.options().dtype(q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat));
  }
  const at::ScalarType accumulate = own.lse.scalar_type();
  at::Tensor out = own.out.to(accumulate);  // [B, n, H, D]
  at::Tensor lse = own.lse.contiguous();    // [B, H, n]

  // The shared prefixes: every new query of every row of a prompt sees the whole prefix, so the G
  // rows' queries go through one Full attention against the one copy, as a [1, G·n] query block.
  std::map<const PromptPrefix*, std::vector<int64_t>> by_prefix;
  for (int64_t b = 0; b < batch; ++b) by_prefix[rows_[b].prefix.get()].push_back(b);
  AttentionSpec full;
  full.mask = MaskKind::Full;
  for (const auto& [prefix, members] : by_prefix) {
    if (prefix->length() == 0) continue;
    const auto g = static_cast<int64_t>(members.size());
    const at::Tensor index = at::tensor(members, at::kLong).to(q.device());
    const at::Tensor queries = q.index_select(0, index).reshape({1, g * n, q.size(2), q.size(3)});
    AttentionResult part = attention.forward(queries, prefix->keys[layer], prefix->values[layer], full);
    const at::Tensor part_out = part.out.view({g, n, q.size(2), q.size(3)});
    const at::Tensor part_lse = part.lse.view({q.size(2), g, n}).permute({1, 0, 2});  // [g, H, n]
    at::Tensor rows_out = out.index_select(0, index), rows_lse = lse.index_select(0, index);
    merge_attention_partial(rows_out, rows_lse, part_out, part_lse);
    out.index_copy_(0, index, rows_out);
    lse.index_copy_(0, index, rows_lse);
  }
  if (combine_) combine_(out, lse);
  return out.to(q.scalar_type());
}

void SharedPrefixKVCache::advance(const std::vector<int64_t>& valid) {
  KVCache::advance(valid);
  for (size_t b = 0; b < rows_.size(); ++b) {
    Row& row = rows_[b];
    if (placement_.ranks == 1) {
      row.stored += valid[b];
    } else if (valid[b] > 0) {
      row.stored += kept_now(row, 1);
    }
    row.generated += valid[b];
  }
}

int64_t SharedPrefixKVCache::prefix_bytes() const {
  std::map<const PromptPrefix*, int64_t> unique;
  for (const Row& row : rows_) unique[row.prefix.get()] = row.prefix->bytes();
  int64_t total = 0;
  for (const auto& [prefix, bytes] : unique) total += bytes;
  return total;
}

int64_t SharedPrefixKVCache::bytes() const {
  int64_t total = prefix_bytes();
  for (int64_t layer = 0; layer < layers_; ++layer) total += keys_[layer].nbytes() + values_[layer].nbytes();
  return total;
}

}  // namespace lvrl::model
