// The RL trainer's loop over a rollout source (docs/trainer.md#the-rl-loop), on every rank of the
// trainer's DP × SP mesh:
//
//   resume (TrainingRun) → until trainer.steps optimizer steps: wait for trainer.rollout_batch groups
//   (DAPO's dynamic sampling drops all-equal groups and asks again, up to
//   trainer.dynamic_sampling.max_rounds rounds) → RlTrainer::train (its optimizer steps, each logged,
//   published and maybe checkpointed) → … → the final checkpoint.
//
// The policy is model.path's checkpoint (visual.* frozen: the rows come from the cache); the reference
// policy, only when trainer.kl.coef > 0, a second frozen copy of the same checkpoint on the same
// layout. Rank 0 publishes each version under RUN/weights/ (announced on `channel` when given).
#pragma once

#include <memory>

#include "cache/weight_channel.h"
#include "core/config.h"
#include "sp/mesh.h"
#include "trainer/rollout_source.h"

namespace lvrl::trainer {

struct RlRunSummary {
  int64_t steps = 0;           // optimizer steps this process ran (after any resume)
  int64_t final_step = 0;      // the run's step at the end
  bool stopped = false;        // by SIGTERM / SIGINT
  int64_t groups_dropped = 0;  // all-equal groups dynamic sampling dropped
};

RlRunSummary run_rl(const Config& config, const std::shared_ptr<sp::Mesh>& mesh, RolloutSource& source,
                    const std::shared_ptr<cache::WeightChannel>& channel = nullptr);

}  // namespace lvrl::trainer
