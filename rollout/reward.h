// Rewards: each sampled answer gets a score per component (accuracy, format, a user's own) and their
// weighted sum, Long-RL's 0.9 × accuracy + 0.1 × format by default (docs/rollout.md, "Rewards").
// Components come from a registry so that a new one is one static registration in its own .cpp:
//
//   static lvrl::rollout::RegisterReward length_reward("length", [](const lvrl::Config&) {
//     return std::make_unique<LengthReward>();
//   });
//
// and a config entry `reward.weights: [accuracy=0.9, format=0.1, length=0.05]`. An external program
// can score too (`reward.external`, rollout/reward_external.h). The `reward` config section is read
// only here.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"

namespace lvrl::rollout {

struct RewardInput {
  std::string response;  // the sampled reply, as decoded
  std::string answer;    // the key: a letter, a number, a string (or any of them in <answer>…</answer>)
  std::vector<std::string> options;  // multiple-choice options ("A. red" or "red"); empty when none
  std::string problem_type;          // "multiple choice", "numerical", …; may be empty
};

struct RewardResult {
  double reward = 0;                      // Σ weight × component
  std::map<std::string, double> rewards;  // each component's own score, unweighted
  std::string extracted;                  // what the accuracy scorer read from the reply ("" = nothing)
};

class RewardFunction {
 public:
  virtual ~RewardFunction();
  virtual std::string name() const = 0;
  virtual double score(const RewardInput& input) = 0;
  // One score per input, in order. Override when batching pays (a child process, a model).
  virtual std::vector<double> score_batch(const std::vector<RewardInput>& inputs);
};

using RewardFactory = std::function<std::unique_ptr<RewardFunction>(const Config&)>;

class RewardRegistry {
 public:
  static RewardRegistry& global();
  void add(std::string name, RewardFactory factory);         // a name registered twice is a bug: asserts
  const RewardFactory* find(const std::string& name) const;  // nullptr when unknown
  std::vector<std::string> names() const;                    // sorted

 private:
  std::map<std::string, RewardFactory> factories_;
};

struct RegisterReward {
  RegisterReward(std::string name, RewardFactory factory);
};

// A parsed `reward.weights` entry ("accuracy=0.9").
struct RewardWeight {
  std::string name;
  double weight = 0;
};
// The entries of `reward.weights`, checked: "name=weight", a finite weight, a registered name, no name
// twice. InputError naming the key and the entry otherwise.
std::vector<RewardWeight> reward_weights(const Config& config,
                                         const RewardRegistry& registry = RewardRegistry::global());

// The configured components and their weighted sum. Starts the external reward's process, if any,
// once; call from a thread that outlives the model (core/process.h). Not thread-safe.
class RewardModel {
 public:
  static RewardModel from_config(const Config& config,
                                 const RewardRegistry& registry = RewardRegistry::global());

  RewardResult score(const RewardInput& input);
  std::vector<RewardResult> score_batch(const std::vector<RewardInput>& inputs);

  struct Component {
    std::string name;
    double weight = 0;
    std::unique_ptr<RewardFunction> function;
  };
  const std::vector<Component>& components() const { return components_; }

 private:
  std::vector<Component> components_;
  bool exact_string_match_ = false;
};

}  // namespace lvrl::rollout
