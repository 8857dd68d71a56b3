// The aggregation modes of loss_aggregation.h (the contract and formulas are there).
#include "trainer/loss_aggregation.h"

#include <ATen/ATen.h>

#include "core/config.h"
#include "core/error.h"

namespace lvrl::trainer {

LossAggregationOptions LossAggregationOptions::from_config(const Config& config) {
  LossAggregationOptions options;
  const std::string& mode = config.get<std::string>("trainer.loss_agg");
  options.mode = mode == "seq_mean_token_mean"  ? LossAggregation::SeqMeanTokenMean
                 : mode == "seq_mean_token_sum" ? LossAggregation::SeqMeanTokenSum
                 : mode == "constant"           ? LossAggregation::Constant
                                                : LossAggregation::TokenMean;
  options.constant = config.get<double>("trainer.loss_agg_constant");
  return options;
}

StepNormaliser& StepNormaliser::operator+=(const StepNormaliser& other) {
  tokens += other.tokens;
  answers += other.answers;
  return *this;
}

StepNormaliser count_step_normaliser(const at::Tensor& mask) {
  LVRL_ASSERT(mask.dim() == 2 && mask.scalar_type() == at::kBool, "count_step_normaliser: mask [B, T] bool");
  at::Tensor counts = at::stack({mask.sum(), mask.any(1).sum()}).to(at::kCPU, at::kDouble);
  return {counts[0].item<double>(), counts[1].item<double>()};
}

at::Tensor aggregate_loss(const LossAggregationOptions& options, const at::Tensor& per_token,
                          const at::Tensor& mask, const StepNormaliser& step,
                          const at::Tensor& sequence_tokens) {
  LVRL_ASSERT(per_token.dim() == 2 && per_token.sizes() == mask.sizes() && mask.scalar_type() == at::kBool,
              "aggregate_loss: per_token and mask must be [B, T], the mask bool");
  const at::Tensor zero = at::zeros({}, per_token.options());
  at::Tensor masked = at::where(mask, per_token, zero);  // [B, T]
  double divisor = 0;
  at::Tensor numerator;
  switch (options.mode) {
    case LossAggregation::TokenMean:
      numerator = masked.sum();
      divisor = step.tokens;
      break;
    case LossAggregation::SeqMeanTokenMean: {
      at::Tensor lengths = sequence_tokens.defined()
                               ? sequence_tokens.to(per_token.device(), per_token.scalar_type())
                               : mask.sum(1).to(per_token.scalar_type());  // [B]
      LVRL_ASSERT(lengths.dim() == 1 && lengths.size(0) == mask.size(0),
                  "aggregate_loss: sequence_tokens [B]");
      at::Tensor row_sums = masked.sum(1);
      numerator = at::where(lengths > 0, row_sums / lengths.clamp_min(1), at::zeros_like(row_sums)).sum();
      divisor = step.answers;
      break;
    }
    case LossAggregation::SeqMeanTokenSum:
      numerator = masked.sum();
      divisor = step.answers;
      break;
    case LossAggregation::Constant:
      numerator = masked.sum();
      divisor = options.constant * step.answers;
      break;
  }
  if (divisor <= 0) {
    // A step without answer tokens: nothing to learn; the micro-batch must be empty as well.
    LVRL_ASSERT(!mask.any().item<bool>(),
                "aggregate_loss: the step normaliser is 0 but this micro-batch has tokens");
    return numerator * 0.0;
  }
  return numerator / divisor;
}

}  // namespace lvrl::trainer
