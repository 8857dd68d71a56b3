// Choosing each answer row's next token from the model's logits (docs/rollout.md).
//
// Truncation runs in one fixed order: mask (vision placeholders, padded rows) → temperature → top-k →
// top-p over the renormalised top-k (the token that crosses p is kept) → min-p (relative to the most
// likely remaining token); then one uniform draw picks a token by inverse CDF. No step sorts the whole
// vocabulary: top-k is at::topk; top-p without top-k grows a partial top-k (64, doubling) until the
// kept mass reaches p; plain temperature and min-p sampling walk the ids in order (one cumsum).
//
// Two log-probs come back per token. `logprobs` is the full softmax of logits/T over every embedding
// row, computed by model::logprobs_from_logits — the very function the trainer's token_logprobs uses,
// so rollout and trainer agree on the behaviour log-prob. `sampled_logprobs` is the log-prob under the
// truncated distribution actually drawn from, for importance corrections that want it.
//
// Each row draws from its own generator, exactly one uniform per step, so a row's tokens depend only
// on its logits, its parameters and its seed — not on the batch around it (up to the last bit of a
// batched device reduction).
#pragma once

#include <ATen/Tensor.h>
#include <ATen/core/Generator.h>

#include <cstdint>
#include <string>
#include <vector>

#include "rollout/token_mask.h"

namespace lvrl {
class Config;
}

namespace lvrl::rollout {

struct SamplingParams {
  double temperature = 1.0;  // 0 = greedy (argmax over the allowed ids)
  int64_t top_k = 0;         // 0 = off
  double top_p = 1.0;        // 1 = off
  double min_p = 0.0;        // 0 = off
  int64_t max_new_tokens = 1024;
  uint64_t seed = 0;
  std::vector<std::string> stop;  // stop strings besides EOS / <|im_end|> (rollout/stop_checker.h)

  // The rollout.* keys (rollout/rollout_config.cpp), checked; errors name the file the value came from.
  static SamplingParams from_config(const Config& config);
  // InputError naming the rollout.<key> and its value when a field is out of its range (temperature
  // ≥ 0 and finite, top_k ≥ 0, 0 < top_p ≤ 1, 0 ≤ min_p ≤ 1, max_new_tokens ≥ 1, no empty stop string).
  void check() const;
  bool greedy() const { return temperature == 0.0; }
};

// One per answer row, seeded with the row's seed (a CPU generator whatever device the logits are on).
at::Generator row_generator(uint64_t seed);

struct SampledTokens {
  at::Tensor tokens;            // [B] int64, CPU
  at::Tensor logprobs;          // [B] float32, CPU: log-prob under softmax(logits / T) over all V_rows
                                //   (T = 1 for greedy) — what the trainer recomputes
  at::Tensor sampled_logprobs;  // [B] float32, CPU: log-prob under the truncated, renormalised
                                //   distribution sampled from (mask, top-k, top-p, min-p); 0 for greedy
};

// logits [B, V_rows] float32 (CPU or the model's device); params[b] and generators[b] for row b;
// allowed [V_rows] bool from sampling_token_mask (any device). Masked ids are never chosen, even when
// their logits are the largest; a row whose allowed logits are all −inf is a bug (asserts).
SampledTokens sample_tokens(const at::Tensor& logits, const std::vector<const SamplingParams*>& params,
                            std::vector<at::Generator>& generators, const at::Tensor& allowed);

}  // namespace lvrl::rollout
