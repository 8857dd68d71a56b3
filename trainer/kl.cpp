// The KL estimators of kl.h; formulas there.
#include "trainer/kl.h"

#include <ATen/ATen.h>

#include "core/config.h"
#include "core/error.h"

namespace lvrl::trainer {

KlOptions KlOptions::from_config(const Config& config) {
  KlOptions options;
  options.coef = config.get<double>("trainer.kl.coef");
  const std::string& estimator = config.get<std::string>("trainer.kl.estimator");
  options.estimator = estimator == "k1"   ? KlEstimator::K1
                      : estimator == "k2" ? KlEstimator::K2
                                          : KlEstimator::K3;
  options.mode = config.get<std::string>("trainer.kl.mode") == "reward" ? KlMode::Reward : KlMode::Loss;
  return options;
}

at::Tensor kl_per_token(KlEstimator estimator, const at::Tensor& logprobs, const at::Tensor& ref_logprobs,
                        const at::Tensor& mask) {
  LVRL_ASSERT(logprobs.sizes() == ref_logprobs.sizes() && logprobs.sizes() == mask.sizes(),
              "kl_per_token: logprobs, ref_logprobs and mask must have one shape [B, T]");
  LVRL_ASSERT(mask.scalar_type() == at::kBool, "kl_per_token: the mask must be bool");
  // where() on the inputs, not the result: a masked −inf would otherwise send NaN through backward.
  at::Tensor zero = at::zeros({}, logprobs.options());
  at::Tensor delta = at::where(mask, ref_logprobs.to(logprobs.scalar_type()) - logprobs, zero);  // [B, T]
  at::Tensor kl;
  switch (estimator) {
    case KlEstimator::K1:
      kl = -delta;
      break;
    case KlEstimator::K2:
      kl = 0.5 * delta * delta;
      break;
    case KlEstimator::K3: {
      at::Tensor clamped = delta.clamp(-20.0, 20.0);
      kl = (clamped.exp() - clamped - 1.0).clamp(-10.0, 10.0);
      break;
    }
  }
  return at::where(mask, kl, zero);
}

at::Tensor rewards_with_kl_penalty(const at::Tensor& rewards, const at::Tensor& kl, double coef) {
  LVRL_ASSERT(rewards.dim() == 1 && kl.dim() == 2 && kl.size(0) == rewards.size(0),
              "rewards_with_kl_penalty: rewards [N] and kl [N, T]");
  return rewards.to(at::kDouble) - coef * kl.detach().to(at::kDouble).sum(1);
}

}  // namespace lvrl::trainer
