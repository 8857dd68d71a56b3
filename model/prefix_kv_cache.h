// A KV cache in which G answer rows share one copy of their prompt's keys and values
// (docs/rollout.md#one-prefix-g-samples).
//
// Sampling G answers to one prompt needs the prompt (video rows + text, thousands of tokens) once,
// not G times: each row keeps only its own new tokens' K/V, and a new query attends to the shared
// prefix and to its row's own tokens separately; the two partial results merge exactly through their
// log-sum-exp. For G rows of a P-token prompt with T new tokens the cache holds P + G·T rows of K/V
// instead of G·(P + T). Several prompts share a batch, each with its own G; rows finish and leave
// (keep_rows) and new prompts' rows join (add_rows) between steps.
//
// Under sequence parallelism (sp/decode_cache.h) each rank holds its shard of the prefix and every
// ranks-th new token of a row (placement), and `combine` merges the ranks' partial (out, lse).
#pragma once

#include <ATen/Tensor.h>

#include <functional>
#include <memory>
#include <vector>

#include "model/kv_cache.h"
#include "model/qwen_vl.h"

namespace lvrl::model {

// One prompt's keys and values after its prefill.
struct PromptPrefix {
  std::vector<at::Tensor> keys, values;  // per layer [1, P, H_kv, D] (P: the tokens held here)
  int64_t next_position = 0;             // M-RoPE id of the first new token
  int64_t length() const { return keys.empty() ? 0 : keys.front().size(1); }
  int64_t bytes() const;
};

// Row `row` of a prefilled dense cache as a prefix (views: a cache sized to the prompt wastes nothing).
PromptPrefix prefix_of_row(const DenseKVCache& cache, int64_t row);

struct PrefilledPrompt {
  std::shared_ptr<const PromptPrefix> prefix;
  at::Tensor logits;  // [V] float32: the next-token logits after the prompt
};
// Prefills one prompt (input.input_ids [1, S]) in passes of `chunk` tokens (0: one pass), so
// activation memory is bounded by the chunk whatever the prompt's length.
// progress: called after each pass with (tokens done, total); may be empty.
PrefilledPrompt prefill_prompt(QwenVLImpl& model, const ModelInput& input, int64_t chunk = 0,
                               const PrefillProgress& progress = {});

// Which rank keeps a row's t-th new token: rank t mod ranks (balanced over ranks).
struct TokenPlacement {
  int rank = 0, ranks = 1;
};

class SharedPrefixKVCache : public KVCache {
 public:
  // Merges this rank's partial result (out [B, n, H, D], lse [B, H, n], accumulation type) with the
  // other ranks' in place; unset on one rank.
  using Combine = std::function<void(at::Tensor& out, at::Tensor& lse)>;

  // capacity: new tokens a row may have (max_new_tokens); a rank keeps ⌈capacity / ranks⌉ of them.
  SharedPrefixKVCache(const TextConfig& config, int64_t capacity, at::ScalarType dtype,
                      const at::Device& device, TokenPlacement placement = {}, Combine combine = {});

  // `count` new rows continuing `prefix` (at its next position), appended after the current rows;
  // returns the first new row's index.
  int64_t add_rows(std::shared_ptr<const PromptPrefix> prefix, int64_t count);
  // Makes room for rows of `capacity` new tokens (grows every row's block; never shrinks).
  void reserve(int64_t capacity);
  // Keeps these rows, in this order; the others' tokens are dropped and a prefix no row uses is freed.
  void keep_rows(const std::vector<int64_t>& rows);

  int64_t batch() const override { return static_cast<int64_t>(rows_.size()); }
  int64_t generated(int64_t row) const { return rows_.at(row).generated; }  // new tokens so far
  // Under SP only n = 1 (a decode step).
  at::Tensor attend(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    AttentionBackend& attention) override;
  void advance(const std::vector<int64_t>& valid) override;

  int64_t bytes() const;         // K/V held: each prefix once, plus the rows' own blocks
  int64_t prefix_bytes() const;  // each prefix once

 private:
  struct Row {
    std::shared_ptr<const PromptPrefix> prefix;
    int64_t generated = 0;  // new tokens of the row
    int64_t stored = 0;     // of those, kept on this rank
  };
  int64_t kept_now(const Row& row, int64_t n) const;  // of the n tokens being attended, kept here
  void grow(int64_t rows);

  int64_t layers_, kv_heads_, head_dim_;
  int64_t capacity_;  // new tokens per row kept on this rank
  at::TensorOptions options_;
  TokenPlacement placement_;
  Combine combine_;
  std::vector<Row> rows_;
  std::vector<at::Tensor> keys_, values_;  // per layer [B, capacity, H_kv, D]: the rows' own tokens
};

}  // namespace lvrl::model
