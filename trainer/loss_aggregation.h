// From per-token losses to the step's loss (docs/trainer.md#aggregation-over-tokens), so that it is
// the same on one device and spread over ranks and micro-batches.
//
// The contract: the optimizer step's loss is the SUM over every micro-batch on every rank of
// aggregate_loss(...), each called with the same StepNormaliser — the whole step's totals (all
// ranks, all micro-batches), all-reduced by the caller before the first backward. Then the summed
// gradients equal the single-device gradient of the whole batch. With m the mask, l the per-token
// loss, n_b the answer's full token count (sequence_tokens; under SP the count over all its shards):
//   token_mean:          Σ_{b,t} m·l / N_tokens
//   seq_mean_token_mean: Σ_b (Σ_t m·l) / n_b / N_answers      (rows with n_b = 0 add nothing)
//   seq_mean_token_sum:  Σ_{b,t} m·l / N_answers
//   constant:            Σ_{b,t} m·l / (C · N_answers)        (Dr. GRPO, C = trainer.loss_agg_constant)
// N_tokens counts answer tokens; N_answers counts answers once each (an answer split over SP ranks
// is one answer: count it on one rank of its group only).
#pragma once

#include <ATen/Tensor.h>

namespace lvrl {
class Config;
}

namespace lvrl::trainer {

enum class LossAggregation { TokenMean, SeqMeanTokenMean, SeqMeanTokenSum, Constant };

struct LossAggregationOptions {
  LossAggregation mode = LossAggregation::TokenMean;
  double constant = 1024;  // C of `constant`, in tokens

  // trainer.loss_agg, trainer.loss_agg_constant.
  static LossAggregationOptions from_config(const Config& config);
};

struct StepNormaliser {
  double tokens = 0;   // N_tokens: answer tokens of the whole optimizer step
  double answers = 0;  // N_answers: answers of the whole optimizer step
  StepNormaliser& operator+=(const StepNormaliser& other);
};

// The local contribution of one micro-batch (mask [B, T] bool; a row with no token is no answer);
// sum them over micro-batches and ranks to get the step's.
StepNormaliser count_step_normaliser(const at::Tensor& mask);

// per_token [B, T] float (differentiable), mask [B, T] bool, sequence_tokens [B] (n_b; undefined =
// each row's own mask count) → a scalar in per_token's dtype.
at::Tensor aggregate_loss(const LossAggregationOptions& options, const at::Tensor& per_token,
                          const at::Tensor& mask, const StepNormaliser& step,
                          const at::Tensor& sequence_tokens = {});

}  // namespace lvrl::trainer
