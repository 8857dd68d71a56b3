// DAPO's dynamic sampling and overlong shaping (group_filter.h).
#include "trainer/group_filter.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>

#include "core/config.h"
#include "core/error.h"

namespace lvrl::trainer {

DynamicSamplingOptions DynamicSamplingOptions::from_config(const Config& config) {
  DynamicSamplingOptions options;
  options.enabled = config.get<bool>("trainer.dynamic_sampling.enabled");
  options.max_rounds = config.get<int64_t>("trainer.dynamic_sampling.max_rounds");
  return options;
}

bool rewards_all_equal(const std::vector<double>& rewards) {
  LVRL_ASSERT(!rewards.empty(), "rewards_all_equal: a group has at least one answer");
  const auto [min, max] = std::minmax_element(rewards.begin(), rewards.end());
  return *min == *max;
}

DynamicSamplingFilter::DynamicSamplingFilter(DynamicSamplingOptions options, int64_t wanted_groups)
    : options_(options), wanted_(wanted_groups) {
  LVRL_ASSERT(wanted_groups >= 1 && options.max_rounds >= 1,
              "DynamicSamplingFilter: wanted ≥ 1, max_rounds ≥ 1");
}

DynamicSamplingFilter::Round DynamicSamplingFilter::offer(
    const std::vector<std::vector<double>>& group_rewards) {
  LVRL_ASSERT(wait_for_more(), "DynamicSamplingFilter::offer: the step already has what it waits for");
  ++rounds_;
  Round round;
  for (size_t g = 0; g < group_rewards.size(); ++g) {
    if (options_.enabled && rewards_all_equal(group_rewards[g])) {
      round.dropped.push_back(g);
    } else if (kept_ < wanted_) {
      round.kept.push_back(g);
      ++kept_;
    } else {
      round.surplus.push_back(g);
    }
  }
  dropped_ += static_cast<int64_t>(round.dropped.size());
  surplus_ += static_cast<int64_t>(round.surplus.size());
  return round;
}

bool DynamicSamplingFilter::wait_for_more() const {
  if (kept_ >= wanted_) return false;
  if (!options_.enabled) return rounds_ == 0;
  return rounds_ < options_.max_rounds;
}

OverlongOptions OverlongOptions::from_config(const Config& config) {
  OverlongOptions options;
  options.max_length = config.get<int64_t>("rollout.max_new_tokens");
  options.buffer = config.get<int64_t>("trainer.overlong.buffer");
  options.penalty = config.get<double>("trainer.overlong.penalty");
  if (options.buffer > options.max_length) {
    throw InputError({config.source_of("trainer.overlong.buffer"), 0, "trainer.overlong.buffer",
                      std::to_string(options.buffer)},
                     fmt::format("expected a buffer ≤ rollout.max_new_tokens ({})", options.max_length));
  }
  return options;
}

double OverlongOptions::shaping(int64_t length, bool truncated) const {
  if (!enabled()) return 0.0;
  if (truncated || length > max_length) return -penalty;
  const int64_t start = max_length - buffer;
  if (length <= start) return 0.0;
  return penalty * static_cast<double>(start - length) / static_cast<double>(buffer);
}

at::Tensor apply_overlong_shaping(const OverlongOptions& options, const at::Tensor& rewards,
                                  const at::Tensor& lengths, const at::Tensor& truncated) {
  LVRL_ASSERT(rewards.dim() == 1 && lengths.sizes() == rewards.sizes(),
              "apply_overlong_shaping: rewards, lengths [N]");
  LVRL_ASSERT(!truncated.defined() || truncated.sizes() == rewards.sizes(),
              "apply_overlong_shaping: truncated [N]");
  at::Tensor length = lengths.to(at::kCPU, at::kLong).contiguous();
  at::Tensor cut = truncated.defined() ? truncated.to(at::kCPU, at::kBool).contiguous()
                                       : at::zeros_like(length, at::kBool);
  at::Tensor shaping = at::empty({rewards.size(0)}, at::kDouble);
  const int64_t* length_data = length.data_ptr<int64_t>();
  const bool* cut_data = cut.data_ptr<bool>();
  double* shaping_data = shaping.data_ptr<double>();
  for (int64_t i = 0; i < rewards.size(0); ++i)
    shaping_data[i] = options.shaping(length_data[i], cut_data[i]);
  return rewards.detach().to(at::kDouble) + shaping.to(rewards.device());
}

}  // namespace lvrl::trainer
