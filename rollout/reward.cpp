// The reward registry, the `reward` config section, and the weighted sum.
#include "rollout/reward.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>

#include "core/error.h"
#include "rollout/reward_accuracy.h"
#include "rollout/reward_external.h"
#include "rollout/reward_text.h"

namespace lvrl::rollout {
namespace {
constexpr const char* kExternalName = "external";

const RegisterConfigSection reward_section(
    {"reward",
     "How a sampled answer is scored: the components, their weights, an external scorer",
     {
         ConfigKey::string_list(
             "weights", {"accuracy=0.9", "format=0.1"},
             "components and weights as name=weight entries, e.g. [accuracy=0.9, format=0.1]; the reward is "
             "the sum of weight x score. Built in: accuracy (the option letter, a number or a string, as the "
             "row says), format (flavour from reward.format), format_strict, format_lenient"),
         ConfigKey::string(
             "format", "strict",
             "the `format` component: strict = the whole reply is <think>...</think> then "
             "<answer>...</answer>, whitespace between (Long-RL); lenient = both blocks present "
             "in order, other text allowed")
             .choices({"strict", "lenient"}),
         ConfigKey::string("string_match", "normalized",
                           "free-text keys: normalized = case, punctuation, articles and spacing ignored; "
                           "exact = equal after trimming")
             .choices({"normalized", "exact"}),
         ConfigKey::string("external", "",
                           "a command run once through /bin/sh -c that reads one JSON object per line "
                           "({response, answer, options, problem_type}) and writes one number per line, "
                           "flushing each; its score is the `external` component. Empty = none"),
         ConfigKey::number("external_weight", 1.0, "weight of the external command's score").range(-1e6, 1e6),
         ConfigKey::number("external_timeout_s", 300, "seconds the external command may stay silent")
             .range(0.001, 1e6),
     }});
}  // namespace

RewardFunction::~RewardFunction() = default;

std::vector<double> RewardFunction::score_batch(const std::vector<RewardInput>& inputs) {
  std::vector<double> scores;
  scores.reserve(inputs.size());
  for (const RewardInput& input : inputs) scores.push_back(score(input));
  return scores;
}

RewardRegistry& RewardRegistry::global() {
  static RewardRegistry registry;
  return registry;
}

void RewardRegistry::add(std::string name, RewardFactory factory) {
  LVRL_ASSERT(!name.empty() && name.find('=') == std::string::npos, "a reward name is a word: " + name);
  LVRL_ASSERT(name != kExternalName, "'external' is reward.external's component");
  LVRL_ASSERT(factories_.count(name) == 0, "reward registered twice: " + name);
  factories_[std::move(name)] = std::move(factory);
}

const RewardFactory* RewardRegistry::find(const std::string& name) const {
  auto it = factories_.find(name);
  return it == factories_.end() ? nullptr : &it->second;
}

std::vector<std::string> RewardRegistry::names() const {
  std::vector<std::string> names;
  for (const auto& [name, factory] : factories_) names.push_back(name);
  return names;
}

RegisterReward::RegisterReward(std::string name, RewardFactory factory) {
  RewardRegistry::global().add(std::move(name), std::move(factory));
}

std::vector<RewardWeight> reward_weights(const Config& config, const RewardRegistry& registry) {
  const std::string source = config.source_of("reward.weights");
  std::vector<RewardWeight> weights;
  for (const std::string& entry : config.get<std::vector<std::string>>("reward.weights")) {
    const InputWhere where{source, 0, "reward.weights", entry};
    const size_t equals = entry.rfind('=');
    const std::string name(text::trim(std::string_view(entry).substr(0, std::min(equals, entry.size()))));
    const std::string number(
        equals == std::string::npos ? "" : text::trim(std::string_view(entry).substr(equals + 1)));
    char* end = nullptr;
    const double weight = number.empty() ? 0 : std::strtod(number.c_str(), &end);
    if (name.empty() || number.empty() || end != number.c_str() + number.size() || !std::isfinite(weight)) {
      throw InputError(where, "expected name=weight with a finite number, e.g. accuracy=0.9");
    }
    if (name == kExternalName) {
      throw InputError(where, "the external command's weight is reward.external_weight");
    }
    if (registry.find(name) == nullptr) {
      std::string known;
      for (const std::string& n : registry.names()) known += (known.empty() ? "" : ", ") + n;
      throw InputError(where, fmt::format("no reward named '{}'; known: {}", name, known));
    }
    for (const RewardWeight& earlier : weights) {
      if (earlier.name == name) throw InputError(where, fmt::format("'{}' is weighted twice", name));
    }
    weights.push_back({name, weight});
  }
  return weights;
}

RewardModel RewardModel::from_config(const Config& config, const RewardRegistry& registry) {
  RewardModel model;
  for (const RewardWeight& weight : reward_weights(config, registry)) {
    std::unique_ptr<RewardFunction> function = (*registry.find(weight.name))(config);
    LVRL_ASSERT(function != nullptr, "reward factory made nothing: " + weight.name);
    model.components_.push_back({weight.name, weight.weight, std::move(function)});
  }
  const std::string& command = config.get<std::string>("reward.external");
  if (!command.empty()) {
    model.components_.push_back(
        {kExternalName, config.get<double>("reward.external_weight"),
         std::make_unique<ExternalReward>(command, config.get<double>("reward.external_timeout_s"),
                                          config.source_of("reward.external"))});
  }
  model.exact_string_match_ = config.get<std::string>("reward.string_match") == "exact";
  return model;
}

RewardResult RewardModel::score(const RewardInput& input) {
  return score_batch({input}).front();
}

std::vector<RewardResult> RewardModel::score_batch(const std::vector<RewardInput>& inputs) {
  std::vector<RewardResult> results(inputs.size());
  for (const Component& component : components_) {
    const std::vector<double> scores = component.function->score_batch(inputs);
    LVRL_ASSERT(scores.size() == inputs.size(), component.name + " returned the wrong number of scores");
    for (size_t i = 0; i < inputs.size(); ++i) {
      results[i].rewards[component.name] = scores[i];
      results[i].reward += component.weight * scores[i];
    }
  }
  const StringMatch match = exact_string_match_ ? StringMatch::Exact : StringMatch::Normalized;
  for (size_t i = 0; i < inputs.size(); ++i) results[i].extracted = extract_answer(inputs[i], match);
  return results;
}

}  // namespace lvrl::rollout
