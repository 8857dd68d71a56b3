#include "rollout/reward_format.h"

#include <memory>
#include <string>

#include "core/config.h"
#include "rollout/reward.h"
#include "rollout/reward_text.h"

namespace lvrl::rollout {

bool strict_format(std::string_view s) {
  constexpr std::string_view kOpen = "<think>", kThinkClose = "</think>", kAnswer = "<answer>",
                             kClose = "</answer>";
  if (s.substr(0, kOpen.size()) != kOpen || s.size() < kClose.size() ||
      s.substr(s.size() - kClose.size()) != kClose) {
    return false;
  }
  const size_t final_close = s.size() - kClose.size();
  for (size_t p = s.find(kThinkClose, kOpen.size()); p != std::string_view::npos;
       p = s.find(kThinkClose, p + 1)) {
    size_t q = p + kThinkClose.size();
    while (q < s.size() && text::is_space(s[q])) ++q;
    if (s.substr(q, kAnswer.size()) == kAnswer && q + kAnswer.size() <= final_close) return true;
  }
  return false;
}

bool lenient_format(std::string_view s) {
  const std::string lower = text::ascii_lower(s);
  size_t at = 0;
  for (std::string_view tag : {"<think>", "</think>", "<answer>", "</answer>"}) {
    at = lower.find(tag, at);
    if (at == std::string::npos) return false;
    at += tag.size();
  }
  return true;
}

namespace {
class FormatReward : public RewardFunction {
 public:
  FormatReward(std::string name, bool strict) : name_(std::move(name)), strict_(strict) {}
  std::string name() const override { return name_; }
  double score(const RewardInput& input) override {
    return (strict_ ? strict_format(input.response) : lenient_format(input.response)) ? 1.0 : 0.0;
  }

 private:
  std::string name_;
  bool strict_;
};

const RegisterReward format_reward("format", [](const Config& config) {
  return std::make_unique<FormatReward>("format", config.get<std::string>("reward.format") == "strict");
});
const RegisterReward strict_reward("format_strict", [](const Config&) {
  return std::make_unique<FormatReward>("format_strict", true);
});
const RegisterReward lenient_reward("format_lenient", [](const Config&) {
  return std::make_unique<FormatReward>("format_lenient", false);
});
}  // namespace

}  // namespace lvrl::rollout
