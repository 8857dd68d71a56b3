// Keys and values of earlier tokens, per layer, for incremental decoding (docs/model.md#decode-positions).
//
// Preallocated once ([B, capacity, H_kv, D] per layer) so decoding never reallocates. Every row is
// left-aligned: row b's tokens sit at cache indices 0 .. length(b)-1, whatever its prompt length,
// so a batch of prompts of different lengths needs no padding in front and attention masks the
// tail with key_lengths. A step appends n tokens to every row at that row's own length; the rows'
// lengths then advance by the number of *valid* new tokens (a right-padded prefill writes the padding
// too, but it lies past the row's length and the next append overwrites it).
//
// The cache also keeps each row's rope delta: the 3-D position id of the token at cache index c is
// c + rope_delta(b) on all three axes once the prompt (with its vision blocks) is in.
#pragma once

#include <ATen/Tensor.h>

#include <vector>

#include "model/qwen_config.h"

namespace lvrl::model {

class KVCache {
 public:
  KVCache(const TextConfig& config, int64_t batch, int64_t capacity, at::ScalarType dtype,
          const at::Device& device);

  int64_t batch() const { return batch_; }
  int64_t capacity() const { return capacity_; }
  int64_t length(int64_t row) const { return lengths_[row]; }
  at::Tensor lengths() const;  // [B] int64 CPU

  // Writes k/v [B, n, H_kv, D] of `layer` at each row's current length. Returns the layer's keys and
  // values up to the longest row after the write, [B, max_b(length_b + n), H_kv, D]. InputError when
  // a row would exceed the capacity (names the row, its length and the capacity).
  std::pair<at::Tensor, at::Tensor> append(int64_t layer, const at::Tensor& k, const at::Tensor& v);

  // After every layer appended: each row's length grows by valid[b] (≤ n appended).
  void advance(const std::vector<int64_t>& valid);

  at::Tensor rope_deltas;  // [B] int64 CPU; set by prefill

 private:
  int64_t batch_, capacity_;
  std::vector<int64_t> lengths_;
  std::vector<at::Tensor> keys_, values_;  // per layer [B, capacity, H_kv, D]
};

}  // namespace lvrl::model
