// The policy loss of policy_loss.h (formulas there). Masked positions are replaced by neutral values
// (log-ratio 0, advantage 0) before any arithmetic, so padding (−inf log-probs) never reaches exp or
// backward; the results are masked again at the end.
#include "trainer/policy_loss.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cmath>

#include "core/config.h"
#include "core/error.h"

namespace lvrl::trainer {
namespace {

constexpr double kLogRatioClamp = 20.0;

void check_same_shape(const at::Tensor& tensor, const at::Tensor& mask, const char* name) {
  LVRL_ASSERT(tensor.defined(), fmt::format("policy_loss: {} is needed by the options", name));
  LVRL_ASSERT(tensor.sizes() == mask.sizes(),
              fmt::format("policy_loss: {} must be [B, T] like the mask", name));
}

}  // namespace

PolicyLossOptions PolicyLossOptions::from_config(const Config& config) {
  PolicyLossOptions options;
  options.ratio =
      config.get<std::string>("trainer.ratio") == "sequence" ? RatioLevel::Sequence : RatioLevel::Token;
  options.clip_low = config.get<double>("trainer.clip_low");
  options.clip_high = config.get<double>("trainer.clip_high");
  options.dual_clip = config.get<double>("trainer.dual_clip");
  options.entropy_coef = config.get<double>("trainer.entropy_coef");
  options.tis_cap = config.get<double>("trainer.tis_cap");
  options.kl = KlOptions::from_config(config);
  if (options.dual_clip > 0 && options.dual_clip <= 1) {
    throw InputError(
        {config.source_of("trainer.dual_clip"), 0, "trainer.dual_clip", fmt::format("{}", options.dual_clip)},
        "expected 0 (off) or a bound c > 1 on the loss of negative advantages");
  }
  return options;
}

PolicyLossStats& PolicyLossStats::operator+=(const PolicyLossStats& other) {
  at::Tensor sum = packed() + other.packed();
  *this = unpacked(sum);
  return *this;
}

at::Tensor PolicyLossStats::packed() const {
  return at::tensor(std::vector<double>{tokens, clipped_low, clipped_high, dual_clipped, tis_capped,
                                        pg_loss_sum, ratio_sum, ppo_kl_sum, kl_sum, entropy_sum},
                    at::kDouble);
}

PolicyLossStats PolicyLossStats::unpacked(const at::Tensor& packed) {
  at::Tensor values = packed.to(at::kCPU, at::kDouble).contiguous();
  LVRL_ASSERT(values.numel() == kFields, "PolicyLossStats::unpacked: wrong field count");
  const double* v = values.data_ptr<double>();
  PolicyLossStats stats;
  stats.tokens = v[0];
  stats.clipped_low = v[1];
  stats.clipped_high = v[2];
  stats.dual_clipped = v[3];
  stats.tis_capped = v[4];
  stats.pg_loss_sum = v[5];
  stats.ratio_sum = v[6];
  stats.ppo_kl_sum = v[7];
  stats.kl_sum = v[8];
  stats.entropy_sum = v[9];
  return stats;
}

PolicyLossTerms policy_loss(const PolicyLossOptions& options, const PolicyLossInputs& inputs) {
  const at::Tensor& mask = inputs.mask;
  LVRL_ASSERT(mask.defined() && mask.dim() == 2 && mask.scalar_type() == at::kBool,
              "policy_loss: mask must be [B, T] bool");
  check_same_shape(inputs.logprobs, mask, "logprobs");
  check_same_shape(inputs.old_logprobs, mask, "old_logprobs");
  const at::TensorOptions float_options = inputs.logprobs.options();
  const at::Tensor zero = at::zeros({}, float_options);
  const at::Tensor logprobs = inputs.logprobs;
  const at::Tensor old_logprobs = inputs.old_logprobs.detach().to(float_options.dtype());

  at::Tensor advantages = inputs.advantages.detach().to(float_options.dtype());
  if (advantages.dim() == 1) advantages = advantages.unsqueeze(1).expand(mask.sizes());
  check_same_shape(advantages, mask, "advantages");
  advantages = at::where(mask, advantages, zero);  // [B, T]

  const at::Tensor token_log_ratio = at::where(mask, logprobs - old_logprobs, zero);  // [B, T]
  at::Tensor log_ratio = token_log_ratio;
  if (options.ratio == RatioLevel::Sequence) {
    at::Tensor sequence_log_ratio = inputs.sequence_log_ratio;  // [B]
    if (sequence_log_ratio.defined()) {
      LVRL_ASSERT(sequence_log_ratio.dim() == 1 && sequence_log_ratio.size(0) == mask.size(0),
                  "policy_loss: sequence_log_ratio must be [B]");
      sequence_log_ratio = sequence_log_ratio.detach().to(float_options.dtype());
    } else {
      at::Tensor lengths = mask.sum(1).clamp_min(1).to(float_options.dtype());
      sequence_log_ratio = token_log_ratio.detach().sum(1) / lengths;
    }
    at::Tensor safe_logprobs = at::where(mask, logprobs, zero);
    log_ratio =
        at::where(mask, safe_logprobs - safe_logprobs.detach() + sequence_log_ratio.unsqueeze(1), zero);
  }
  at::Tensor ratio = log_ratio.clamp(-kLogRatioClamp, kLogRatioClamp).exp();  // [B, T]
  at::Tensor clipped_ratio = ratio.clamp(1.0 - options.clip_low, 1.0 + options.clip_high);
  at::Tensor pg = at::max(-advantages * ratio, -advantages * clipped_ratio);  // [B, T]
  at::Tensor negative = advantages < 0;
  at::Tensor dual_clipped = at::zeros_like(mask);
  if (options.dual_clip > 0) {
    at::Tensor bound = -options.dual_clip * advantages;
    dual_clipped = negative & (pg > bound) & mask;
    pg = at::where(negative, at::min(pg, bound), pg);
  }
  at::Tensor tis_capped = at::zeros_like(mask);
  if (options.tis_cap > 0) {
    check_same_shape(inputs.behaviour_logprobs, mask, "behaviour_logprobs");
    at::Tensor behaviour = inputs.behaviour_logprobs.detach().to(float_options.dtype());
    at::Tensor weight =
        at::where(mask, old_logprobs - behaviour, zero).clamp(-kLogRatioClamp, kLogRatioClamp).exp();
    tis_capped = (weight > options.tis_cap) & mask;
    pg = pg * weight.clamp_max(options.tis_cap);
  }
  pg = at::where(mask, pg, zero);

  PolicyLossTerms terms;
  at::Tensor loss = pg;
  if (options.kl.as_loss()) {
    check_same_shape(inputs.ref_logprobs, mask, "ref_logprobs");
    terms.kl = kl_per_token(options.kl.estimator, logprobs, inputs.ref_logprobs, mask);
    loss = loss + options.kl.coef * terms.kl;
  }
  at::Tensor entropy;
  if (inputs.entropy.defined()) {
    check_same_shape(inputs.entropy, mask, "entropy");
    entropy = at::where(mask, inputs.entropy, zero);
  }
  if (options.entropy_coef > 0) {
    LVRL_ASSERT(entropy.defined(), "policy_loss: entropy_coef > 0 needs the entropy");
    loss = loss - options.entropy_coef * entropy;
  }
  terms.per_token = at::where(mask, loss, zero);
  terms.pg = pg;

  // One device-to-host copy for every statistic.
  auto count = [&](const at::Tensor& flags) { return (flags & mask).sum().to(at::kDouble); };
  auto total = [&](const at::Tensor& values) {
    return at::where(mask, values.detach(), zero).sum().to(at::kDouble);
  };
  const at::Tensor none = at::zeros({}, float_options.dtype(at::kDouble));
  at::Tensor sums = at::stack({
      mask.sum().to(at::kDouble),
      count(negative & (ratio < 1.0 - options.clip_low)),
      count((advantages > 0) & (ratio > 1.0 + options.clip_high)),
      count(dual_clipped),
      count(tis_capped),
      total(pg),
      total(ratio),
      total(-token_log_ratio),
      terms.kl.defined() ? total(terms.kl) : none,
      entropy.defined() ? total(entropy) : none,
  });
  terms.stats = PolicyLossStats::unpacked(sums);
  return terms;
}

}  // namespace lvrl::trainer
