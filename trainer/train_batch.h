// One optimizer step's answers as the trainer scores them, rebuilt from the rollout records alone
// (cache/rollout_record.h): each answer becomes prompt ⊕ response ids with its π_old log-probs and
// advantage; the G answers of a prompt point at one copy of its video rows. Micro-batches are cut
// by a token budget (rows × longest row), so a step's activation memory does not grow with its
// batch size.
#pragma once

#include <ATen/Tensor.h>

#include <vector>

#include "cache/rollout_record.h"
#include "model/rope.h"

namespace lvrl::trainer {

struct TrainVideo {
  at::Tensor rows;  // [t·h·w / merge², D]: the prompt's video rows (from the cache by key)
  model::GridTHW grid{};
  double second_per_grid_t = 1;
};

struct TrainSequence {
  std::vector<int64_t> ids;              // [S] prompt ⊕ response
  int64_t response_start = 0;            // index in ids of the first response token
  int64_t video = -1;                    // index in TrainBatch::videos; -1 without a video
  std::vector<float> old_logprobs;       // [T] π_old of each response token
  std::vector<float> sampled_logprobs;   // [T] under the truncated distribution the token was drawn from
  std::vector<float> ref_logprobs;       // [T] under the reference policy; empty without KL as a loss
  double advantage = 0;                  // broadcast over the answer's tokens ...
  std::vector<double> token_advantages;  // ... unless given per token, [T] (Reinforce++)
  int64_t group = 0;                     // index of its prompt's group in the step
  int64_t length() const { return static_cast<int64_t>(ids.size()); }
  int64_t response_tokens() const { return length() - response_start; }
};

struct TrainBatch {
  std::vector<TrainSequence> sequences;
  std::vector<TrainVideo> videos;  // one per group that has a video
  double temperature = 1;          // the sampling temperature: log-probs are recomputed at it
};

// groups[g] with its video rows video_rows[g] (undefined without a video) and one advantage per
// answer, advantages[g][i]. Every group must share the sampling temperature (InputError naming the
// group otherwise); a group's rows must match its grid (InputError naming the group).
TrainBatch batch_from_groups(const std::vector<cache::RolloutGroup>& groups,
                             const std::vector<at::Tensor>& video_rows,
                             const std::vector<std::vector<double>>& advantages);

// This data-parallel rank's share: sequences dp_rank, dp_rank + dp_size, … (their videos kept).
TrainBatch dp_share(const TrainBatch& batch, int dp_rank, int dp_size);

// Consecutive sequences whose padded size (rows × longest row) stays within `token_budget`; a
// sequence longer than the budget is a micro-batch alone.
std::vector<std::vector<int64_t>> plan_micro_batches(const TrainBatch& batch, int64_t token_budget);

}  // namespace lvrl::trainer
