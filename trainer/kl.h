// KL to the reference policy (docs/trainer.md#kl-to-the-reference): the per-token estimators and the
// two ways a step uses them — a loss term (β·KL_t added to each token's loss, see policy_loss.h) or a
// penalty subtracted from the reward before advantages (rewards_with_kl_penalty here; Reinforce++
// places it per token, see advantages.h).
//
// With δ_t = log π_ref − log π_θ per answer token:
//   k1 = −δ                       (the log-ratio; unbiased, high variance, can be negative)
//   k2 = ½·δ²
//   k3 = exp(δ) − δ − 1           ("low variance", ≥ 0), with δ clamped to [−20, 20] first (no overflow)
//                                  and the result clamped to [−10, 10], as the common implementations do.
// Masked tokens are 0 and get no gradient, whatever their log-probs hold (padding may be −inf).
#pragma once

#include <ATen/Tensor.h>

namespace lvrl {
class Config;
}

namespace lvrl::trainer {

enum class KlEstimator { K1, K2, K3 };
enum class KlMode { Loss, Reward };

struct KlOptions {
  double coef = 1e-2;  // β; 0 = no KL (and no reference model)
  KlEstimator estimator = KlEstimator::K3;
  KlMode mode = KlMode::Loss;

  // trainer.kl.{coef, estimator, mode} (trainer/trainer_config.cpp).
  static KlOptions from_config(const Config& config);
  bool enabled() const { return coef > 0; }
  bool as_loss() const { return enabled() && mode == KlMode::Loss; }
  bool in_reward() const { return enabled() && mode == KlMode::Reward; }
};

// logprobs [B, T] float (log π_θ; differentiable or not), ref_logprobs [B, T] (log π_ref), mask [B, T]
// bool → [B, T] in logprobs' dtype: the estimator per token, 0 where masked.
at::Tensor kl_per_token(KlEstimator estimator, const at::Tensor& logprobs, const at::Tensor& ref_logprobs,
                        const at::Tensor& mask);

// KL in the reward for per-answer estimators (GRPO, RLOO, REINFORCE with a baseline):
// r_i − β·Σ_t kl_{i,t} over the answer's tokens. rewards [N] float, kl [N, T] (from kl_per_token,
// masked), → [N] float64. The KL is detached: a reward carries no gradient.
at::Tensor rewards_with_kl_penalty(const at::Tensor& rewards, const at::Tensor& kl, double coef);

}  // namespace lvrl::trainer
