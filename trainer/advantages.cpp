// The advantage estimators of advantages.h (formulas there). Group statistics use index_add over
// group_index so groups need not be contiguous; all arithmetic is float64 so the all-equal test and
// the zero advantages it implies are exact.
#include "trainer/advantages.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/config.h"
#include "core/error.h"

namespace lvrl::trainer {
namespace {

struct GroupStats {
  at::Tensor index;      // [N] int64: group_index on the rewards' device
  at::Tensor count;      // [K] float64
  at::Tensor mean;       // [K] float64
  at::Tensor deviation;  // [N] float64: r_i − r̄_g
  at::Tensor variance;   // [K] float64, unbiased; 0 for a group of one
  at::Tensor all_equal;  // [N] bool: the answer's group has one distinct reward (or one answer)
};

GroupStats group_stats(const at::Tensor& rewards, const at::Tensor& group_index) {
  LVRL_ASSERT(rewards.dim() == 1 && group_index.dim() == 1 && rewards.size(0) == group_index.size(0),
              "advantages: rewards [N] and group_index [N]");
  LVRL_ASSERT(!at::isFloatingType(group_index.scalar_type()), "advantages: group_index must be integer");
  at::Tensor r = rewards.detach().to(at::kDouble);
  at::Tensor index = group_index.to(r.device(), at::kLong);
  GroupStats stats;
  stats.index = index;
  if (r.numel() == 0) {
    stats.deviation = r;
    stats.all_equal = at::zeros({0}, r.options().dtype(at::kBool));
    return stats;
  }
  LVRL_ASSERT(index.min().item<int64_t>() >= 0, "advantages: group_index must be ≥ 0");
  const int64_t groups = index.max().item<int64_t>() + 1;
  at::Tensor zeros = at::zeros({groups}, r.options());
  stats.count = zeros.index_add(0, index, at::ones_like(r));
  stats.mean = zeros.index_add(0, index, r) / stats.count.clamp_min(1);
  stats.deviation = r - stats.mean.index_select(0, index);
  at::Tensor squares = zeros.index_add(0, index, stats.deviation * stats.deviation);
  stats.variance = at::where(stats.count > 1, squares / (stats.count - 1).clamp_min(1), zeros);
  // All equal ⇔ every reward equals one member's (whichever index_copy keeps): exact, no rounding.
  at::Tensor member = zeros.index_copy(0, index, r);
  at::Tensor differing = zeros.index_add(0, index, (r != member.index_select(0, index)).to(at::kDouble));
  stats.all_equal = (differing == 0).index_select(0, index);
  return stats;
}

}  // namespace

AdvantageOptions AdvantageOptions::from_config(const Config& config) {
  AdvantageOptions options;
  const std::string& name = config.get<std::string>("trainer.advantage");
  options.estimator = name == "rloo"                 ? AdvantageEstimator::Rloo
                      : name == "reinforce_pp"       ? AdvantageEstimator::ReinforcePlusPlus
                      : name == "reinforce_baseline" ? AdvantageEstimator::ReinforceBaseline
                                                     : AdvantageEstimator::Grpo;
  options.divide_by_std = config.get<bool>("trainer.advantage_std");
  return options;
}

at::Tensor sequence_advantages(const AdvantageOptions& options, const at::Tensor& rewards,
                               const at::Tensor& group_index) {
  switch (options.estimator) {
    case AdvantageEstimator::Grpo:
      return grpo_advantages(rewards, group_index, options.divide_by_std);
    case AdvantageEstimator::Rloo:
      return rloo_advantages(rewards, group_index);
    case AdvantageEstimator::ReinforceBaseline:
      return reinforce_baseline_advantages(rewards, group_index);
    case AdvantageEstimator::ReinforcePlusPlus:
      break;
  }
  LVRL_ASSERT(false, "sequence_advantages: Reinforce++ is per token (reinforce_pp_advantages)");
  return {};
}

at::Tensor grpo_advantages(const at::Tensor& rewards, const at::Tensor& group_index, bool divide_by_std) {
  GroupStats stats = group_stats(rewards, group_index);
  if (stats.deviation.numel() == 0) return stats.deviation;
  at::Tensor advantage = stats.deviation;
  if (divide_by_std)
    advantage = advantage / (stats.variance.sqrt().index_select(0, stats.index) + kGrpoStdEpsilon);
  return at::where(stats.all_equal, at::zeros_like(advantage), advantage);
}

at::Tensor rloo_advantages(const at::Tensor& rewards, const at::Tensor& group_index) {
  GroupStats stats = group_stats(rewards, group_index);
  if (stats.deviation.numel() == 0) return stats.deviation;
  at::Tensor count = stats.count.index_select(0, stats.index);
  at::Tensor advantage = stats.deviation * count / (count - 1).clamp_min(1);
  return at::where(stats.all_equal, at::zeros_like(advantage), advantage);
}

at::Tensor reinforce_baseline_advantages(const at::Tensor& rewards, const at::Tensor& group_index) {
  GroupStats stats = group_stats(rewards, group_index);
  if (stats.deviation.numel() == 0) return stats.deviation;
  at::Tensor centred = at::where(stats.all_equal, at::zeros_like(stats.deviation), stats.deviation);
  return whiten(centred, masked_moments(centred));
}

MaskedMoments& MaskedMoments::operator+=(const MaskedMoments& other) {
  sum += other.sum;
  sum_squares += other.sum_squares;
  count += other.count;
  return *this;
}

MaskedMoments masked_moments(const at::Tensor& values, const at::Tensor& mask) {
  at::Tensor x = values.detach().to(at::kDouble);
  at::Tensor selected =
      mask.defined() ? mask.to(x.device(), at::kBool) : at::ones_like(x, x.options().dtype(at::kBool));
  LVRL_ASSERT(selected.sizes() == x.sizes(), "masked_moments: values and mask must have one shape");
  x = at::where(selected, x, at::zeros({}, x.options()));
  at::Tensor sums = at::stack({x.sum(), (x * x).sum(), selected.sum().to(at::kDouble)}).cpu();
  const double* s = sums.data_ptr<double>();
  return {s[0], s[1], s[2]};
}

at::Tensor whiten(const at::Tensor& values, const MaskedMoments& moments, const at::Tensor& mask) {
  at::Tensor x = values.detach().to(at::kDouble);
  at::Tensor zero = at::zeros({}, x.options());
  if (moments.count <= 1) return at::zeros_like(x);
  const double mean = moments.sum / moments.count;
  const double variance =
      std::max(0.0, (moments.sum_squares - moments.count * mean * mean) / (moments.count - 1));
  at::Tensor whitened = (x - mean) / std::sqrt(variance + kWhitenEpsilon);
  return mask.defined() ? at::where(mask.to(x.device(), at::kBool), whitened, zero) : whitened;
}

at::Tensor reinforce_pp_returns(const at::Tensor& rewards, const at::Tensor& kl, const at::Tensor& mask,
                                double kl_coef) {
  LVRL_ASSERT(rewards.dim() == 1 && mask.dim() == 2 && mask.size(0) == rewards.size(0),
              "reinforce_pp_returns: rewards [N], mask [N, T]");
  LVRL_ASSERT(mask.scalar_type() == at::kBool, "reinforce_pp_returns: the mask must be bool");
  at::Tensor selected = mask.to(rewards.device());
  at::Tensor zero = at::zeros({}, rewards.options().dtype(at::kDouble));
  const int64_t length = selected.size(1);
  // The last answer token of each row: the largest masked position.
  at::Tensor positions = at::arange(length, selected.options().dtype(at::kLong)).expand(selected.sizes());
  at::Tensor last = at::where(selected, positions, at::full({}, -1, positions.options())).amax(1);  // [N]
  LVRL_ASSERT(selected.size(0) == 0 || last.min().item<int64_t>() >= 0,
              "reinforce_pp_returns: every answer needs at least one token");
  at::Tensor token_reward = at::zeros(selected.sizes(), zero.options());  // [N, T]
  if (kl.defined() && kl_coef != 0) {
    LVRL_ASSERT(kl.sizes() == selected.sizes(), "reinforce_pp_returns: kl [N, T] like the mask");
    token_reward = at::where(selected, -kl_coef * kl.detach().to(zero.device(), at::kDouble), zero);
  }
  token_reward = token_reward.scatter_add(1, last.clamp_min(0).unsqueeze(1),
                                          rewards.detach().to(at::kDouble).unsqueeze(1));
  // R_t = Σ_{s ≥ t} c_s: a reversed cumulative sum along the tokens.
  at::Tensor returns = token_reward.flip({1}).cumsum(1).flip({1});
  return at::where(selected, returns, zero);
}

at::Tensor reinforce_pp_advantages(const at::Tensor& rewards, const at::Tensor& kl, const at::Tensor& mask,
                                   double kl_coef) {
  at::Tensor returns = reinforce_pp_returns(rewards, kl, mask, kl_coef);
  return whiten(returns, masked_moments(returns, mask), mask);
}

}  // namespace lvrl::trainer
