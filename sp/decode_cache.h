// Generation over P sequence-parallel ranks (docs/rollout.md#sequence-parallel-rollout): a prompt too
// long for one rank is prefilled with SP attention and its keys/values stay where they were computed,
// sharded by sequence; every decode step then runs the new token on every rank, each rank attends
// over the keys it holds, and the ranks' partial (out, lse) merge exactly by log-sum-exp after an
// all-gather of [B, 1, H, D] and [B, H, 1]. A row's new tokens are kept round-robin (its t-th token
// on rank t mod P), so decode memory stays balanced. Every rank must make the same calls in the
// same order (they are collectives over mesh.sp()).
#pragma once

#include <ATen/Tensor.h>

#include <memory>

#include "model/prefix_kv_cache.h"
#include "model/qwen_vl.h"
#include "sp/layout.h"
#include "sp/mesh.h"

namespace lvrl::sp {

// Prefills one prompt (input.input_ids [1, S]; video rows as input.video_embeds, or none) with SP
// attention in `mode`; this rank keeps the K/V of its real tokens (padding dropped). The returned
// logits [V] (after the prompt's last token) are the same on every rank.
model::PrefilledPrompt prefill_prompt_sharded(model::QwenVLImpl& model, const model::ModelInput& input,
                                              const std::shared_ptr<Mesh>& mesh, SpMode mode);

// A decode cache whose rows attend over this rank's prefix shards and new tokens, merged over the
// SP group. capacity: new tokens per row overall (max_new_tokens).
std::unique_ptr<model::SharedPrefixKVCache> make_sharded_decode_cache(const model::TextConfig& config,
                                                                      int64_t capacity, at::ScalarType dtype,
                                                                      const at::Device& device,
                                                                      std::shared_ptr<Mesh> mesh);

}  // namespace lvrl::sp
