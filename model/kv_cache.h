// Keys and values of earlier tokens, per layer, for incremental decoding (docs/model.md#decode-positions).
//
// A cache owns the attention of new queries over what it holds: TextAttention hands it the new
// tokens' q/k/v and gets the attention output back, so the way keys are stored (one dense block per
// row, one prompt prefix shared by G rows, a prefix sharded by sequence over SP ranks) never leaks
// into the model. Every cache also knows each row's next M-RoPE position: once a prompt (with its
// vision blocks) is in, a row's later tokens sit at consecutive ids, equal on all three axes.
#pragma once

#include <ATen/Tensor.h>

#include <vector>

#include "model/attention.h"
#include "model/qwen_config.h"

namespace lvrl::model {

class KVCache {
 public:
  virtual ~KVCache() = default;
  virtual int64_t batch() const = 0;

  // q [B, n, H, D], k/v [B, n, H_kv, D] (rotated) of the n new tokens of every row at `layer`: stores
  // k/v and returns the new queries' attention over the row's cached tokens and the new ones (causal
  // among the new), [B, n, H, D]. Rows' lengths grow only at advance().
  virtual at::Tensor attend(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            AttentionBackend& attention) = 0;
  // After every layer attended: row b's length and next position grow by valid[b] (≤ n).
  virtual void advance(const std::vector<int64_t>& valid);

  // M-RoPE ids of the next n tokens of every row, [3, B, n] int64 CPU.
  at::Tensor next_positions(int64_t n) const;
  int64_t next_position(int64_t row) const { return next_position_.at(row); }
  void set_next_position(int64_t row, int64_t position) { next_position_.at(row) = position; }

 protected:
  std::vector<int64_t> next_position_;  // [B]; subclasses size it with their rows
};

// One preallocated block per row ([B, capacity, H_kv, D] per layer) so decoding never reallocates.
// Every row is left-aligned: row b's tokens sit at cache indices 0 .. length(b)-1, whatever its
// prompt length, so a batch of prompts of different lengths needs no padding in front and attention
// masks the tail with key lengths. A step writes n tokens to every row at that row's own length; a
// right-padded prefill writes the padding too, but it lies past the row's length and the next write
// overwrites it.
class DenseKVCache : public KVCache {
 public:
  DenseKVCache(const TextConfig& config, int64_t batch, int64_t capacity, at::ScalarType dtype,
               const at::Device& device);

  int64_t batch() const override { return batch_; }
  int64_t capacity() const { return capacity_; }
  int64_t length(int64_t row) const { return lengths_[row]; }
  at::Tensor lengths() const;  // [B] int64 CPU

  // InputError when a row would exceed the capacity (names the row, its length and the capacity).
  at::Tensor attend(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    AttentionBackend& attention) override;
  void advance(const std::vector<int64_t>& valid) override;

  // Row `row`'s keys and values of `layer`, [1, length(row), H_kv, D] views.
  at::Tensor keys(int64_t layer, int64_t row) const;
  at::Tensor values(int64_t layer, int64_t row) const;
  int64_t layers() const { return static_cast<int64_t>(keys_.size()); }
  int64_t bytes() const;  // of the preallocated blocks

 private:
  int64_t batch_, capacity_;
  std::vector<int64_t> lengths_;
  std::vector<at::Tensor> keys_, values_;  // per layer [B, capacity, H_kv, D]
};

}  // namespace lvrl::model
