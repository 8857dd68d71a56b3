// The gradient of one optimizer step over any DP × SP layout, equal to the single-device gradient
// (docs/trainer.md#the-step).
//
// How the layout disappears:
//  - Token and answer counts of the whole optimizer step are all-reduced over the data-parallel
//    ranks before the first backward, and every micro-batch's loss is aggregated against them
//    (trainer/loss_aggregation.h), so the step's loss is a plain sum that splits over micro-batches,
//    SP shards and DP ranks without changing.
//  - Each micro-batch runs the whole decoder under SP (sp::shard_sequence: positions and the label
//    shift decided on the whole sequence, then split); per-token values (π_old, advantages,
//    weights) are shifted to the position that predicts their token and sharded the same way.
//  - Gradients are summed over every rank of the world after the last micro-batch.
//  - The G answers of a prompt share one copy of its video rows (video_row_start).
//  - SP attention is installed for the step by a guard that restores the model's own afterwards, so
//    prefill and decode work after a training step.
#pragma once

#include <ATen/Tensor.h>

#include <functional>
#include <memory>

#include "core/config.h"
#include "model/qwen_vl.h"
#include "sp/layout.h"
#include "sp/mesh.h"
#include "trainer/loss_aggregation.h"
#include "trainer/train_batch.h"

namespace lvrl::trainer {

// One micro-batch's per-token values on this rank, [B, l], aligned with the positions that predict
// each response token (this rank's shard of the label-shifted sequence).
struct TokenBatch {
  at::Tensor logprobs;          // log π_θ(token) at the sampling temperature; differentiable
  at::Tensor old_logprobs;      // π_old (the record's behaviour log-probs, or a recompute)
  at::Tensor sampled_logprobs;  // under the truncated distribution the token was drawn from
  at::Tensor ref_logprobs;      // under the reference policy; undefined unless every sequence has them
  at::Tensor advantages;        // the answer's advantage on each of its tokens
  at::Tensor mask;              // bool: a response token is predicted here
  at::Tensor entropy;           // the policy's entropy at each position; differentiable; only with
                                // GradientOptions::entropy
};
// ℓ [B, l] per token (entries where mask is false are ignored).
using TokenLoss = std::function<at::Tensor(const TokenBatch&)>;

struct GradientOptions {
  int64_t micro_batch_tokens = 16384;
  sp::SpMode sp_mode = sp::SpMode::Ulysses;
  LossAggregationOptions aggregation;
  bool recompute = true;  // recompute each decoder layer's activations in backward (trainer.recompute)
  bool entropy = false;   // compute TokenBatch::entropy (an extra LM-head pass: trainer.entropy_coef > 0)
  static GradientOptions from_config(const Config& config);  // trainer.*, sp.mode
};

struct GradientResult {
  double loss = 0;            // the step's loss, summed over every rank (the single-device value)
  int64_t tokens = 0;         // response tokens of the whole step (all DP ranks)
  int64_t sequences = 0;      // answers of the whole step
  int64_t micro_batches = 0;  // run by this rank
};

// local: this DP rank's share of the step (dp_share). Accumulates into the parameters' .grad
// (zero them first) and sums them over mesh.world(). Every rank must call it together.
GradientResult accumulate_gradients(model::QwenVLImpl& model, const TrainBatch& local,
                                    const std::shared_ptr<sp::Mesh>& mesh, const GradientOptions& options,
                                    const TokenLoss& loss);

}  // namespace lvrl::trainer
