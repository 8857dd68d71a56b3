// Log-probs of every response token of a batch under a model, without gradients: the trainer's
// recompute of π_old before the first update (trainer.old_logprobs: recompute), the reference
// policy's log-probs for the KL term, and the drift between the rollout's log-probs and the
// trainer's (training/rollout_probs_diff_*). The micro-batches, SP sharding and log-prob function
// are those of the gradient pass (trainer/micro_batch.h, model::token_logprobs), so a recompute with
// unchanged weights gives what the first gradient pass sees.
#pragma once

#include <memory>
#include <vector>

#include "model/qwen_vl.h"
#include "sp/layout.h"
#include "sp/mesh.h"
#include "trainer/train_batch.h"

namespace lvrl::trainer {

// local: this DP rank's share. Returns one vector per sequence, [response_tokens()] each, at
// local.temperature, the same on every SP rank of the group. Every SP rank must call it together;
// the model's own attention is restored afterwards.
std::vector<std::vector<float>> response_logprobs(model::QwenVLImpl& model, const TrainBatch& local,
                                                  const std::shared_ptr<sp::Mesh>& mesh, sp::SpMode mode,
                                                  int64_t micro_batch_tokens);

// |exp(a) − exp(b)| over every response token of the batch: the max and the sum, and the token count
// (all-reduce the sums across DP ranks for the mean).
struct ProbabilityDrift {
  double max = 0;
  double sum = 0;
  double tokens = 0;
};
ProbabilityDrift probability_drift(const std::vector<std::vector<float>>& a,
                                   const std::vector<std::vector<float>>& b);

}  // namespace lvrl::trainer
