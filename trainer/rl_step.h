// The RL trainer's update from one rollout batch (docs/trainer.md#the-rl-step):
//
//   rewards (+ overlong shaping) → π_old (the record's behaviour log-probs, or recomputed before any
//   update: trainer.old_logprobs) → reference log-probs (only with trainer.kl.coef > 0) → KL in the
//   reward (trainer.kl.mode: reward) → advantages → trainer.ppo_epochs passes over
//   trainer.ppo_mini_batches mini-batches, one optimizer step (one policy version) each.
//
// Mini-batches are contiguous runs of whole groups, so a group's answers are never split. Each DP
// rank scores and trains its share of every mini-batch (dp_share); what needs the whole batch —
// per-answer KL sums for the reward, Reinforce++'s whitening moments, the loss statistics — is
// all-reduced, so every layout computes the single-device step.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "model/qwen_vl.h"
#include "sp/mesh.h"
#include "trainer/advantages.h"
#include "trainer/group_filter.h"
#include "trainer/ledger.h"
#include "trainer/optimizer.h"
#include "trainer/policy_gradient.h"
#include "trainer/policy_loss.h"
#include "trainer/rollout_source.h"
#include "trainer/training_run.h"
#include "trainer/weight_publisher.h"

namespace lvrl::trainer {

struct RlStepOptions {
  AdvantageOptions advantage;
  PolicyLossOptions loss;
  OverlongOptions overlong;
  GradientOptions gradient;
  int64_t ppo_epochs = 1;
  int64_t ppo_mini_batches = 1;
  bool recompute_old_logprobs = false;
  // trainer.*, sp.mode, rollout.max_new_tokens; the entropy pass only with trainer.entropy_coef > 0.
  static RlStepOptions from_config(const Config& config);
};

class RlTrainer {
 public:
  // `reference`: the frozen reference policy, needed (and only used) when options.loss.kl is enabled.
  // `optimizer` updates `policy`'s trained parameters. `publisher` (rank 0's; null elsewhere, or to
  // publish nothing) writes the policy after each optimizer step as version = the run's step;
  // `ledger` (rank 0's) records each step's answers.
  RlTrainer(model::QwenVLImpl& policy, model::QwenVLImpl* reference, AdamW& optimizer,
            std::shared_ptr<sp::Mesh> mesh, RlStepOptions options, WeightPublisher* publisher = nullptr,
            Ledger* ledger = nullptr);

  // Trains on `batch` (the same on every rank): ppo_epochs × min(ppo_mini_batches, groups) optimizer
  // steps, each checked, logged and maybe saved through `run` with the batch's scalars plus `extra`.
  // The groups' ids join run.state().unacknowledged_ids. Returns the optimizer steps taken.
  int64_t train(const RolloutBatch& batch, TrainingRun& run, const std::map<std::string, double>& extra);

 private:
  model::QwenVLImpl& policy_;
  model::QwenVLImpl* reference_;
  AdamW& optimizer_;
  std::vector<at::Tensor> trained_;
  std::shared_ptr<sp::Mesh> mesh_;
  RlStepOptions options_;
  WeightPublisher* publisher_;
  Ledger* ledger_;
};

}  // namespace lvrl::trainer
