// DAPO's two batch-shaping extras (docs/trainer.md#dapo-extras).
//
// Dynamic sampling: a group (one prompt's answers) whose rewards are all equal — e.g. accuracy all 0
// or all 1, or a group of one answer — has zero advantage under GRPO and teaches nothing, so the step
// drops it and waits for more groups. A DynamicSamplingFilter lives for one step: each round the
// caller offers the groups that arrived; the filter keeps the ones with unequal rewards up to the
// wanted count (the rest are surplus, for the caller to keep for the next step or drop). After a
// round, wait_for_more() says whether to wait for another round: enabled, fewer than `wanted` kept and
// fewer than trainer.dynamic_sampling.max_rounds rounds seen. When it says no with fewer than
// `wanted` kept, the step trains on what it has and trained_short() reports it. Disabled, every
// group is kept (up to `wanted`) and one round ends the wait. Rewards are compared exactly: pass the
// same reward the advantages use, before overlong shaping (DAPO filters on the task reward).
//
// Overlong shaping: with L = rollout.max_new_tokens, buffer B = trainer.overlong.buffer and penalty
// p = trainer.overlong.penalty, an answer of |y| tokens gets added
//   0                            if |y| ≤ L − B
//   p·((L − B) − |y|) / B        if L − B < |y| ≤ L     (linear from 0 down to −p at |y| = L)
//   −p                           if |y| > L, or the answer was truncated (hit L without ending)
// B = 0 turns it off.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <vector>

namespace lvrl {
class Config;
}

namespace lvrl::trainer {

struct DynamicSamplingOptions {
  bool enabled = false;
  int64_t max_rounds = 3;  // ≥ 1

  // trainer.dynamic_sampling.{enabled, max_rounds}.
  static DynamicSamplingOptions from_config(const Config& config);
};

// True when the group has fewer than two distinct rewards (rewards not empty).
bool rewards_all_equal(const std::vector<double>& rewards);

class DynamicSamplingFilter {
 public:
  struct Round {
    std::vector<size_t> kept;     // indices into the offered groups, in order
    std::vector<size_t> dropped;  // all-equal groups (only when enabled)
    std::vector<size_t> surplus;  // informative groups past the wanted count
  };

  DynamicSamplingFilter(DynamicSamplingOptions options, int64_t wanted_groups);

  // group_rewards[g]: the rewards of group g's answers (each group non-empty).
  Round offer(const std::vector<std::vector<double>>& group_rewards);

  bool wait_for_more() const;
  bool trained_short() const { return !wait_for_more() && kept_ < wanted_; }

  int64_t wanted() const { return wanted_; }
  int64_t rounds() const { return rounds_; }
  int64_t kept() const { return kept_; }
  int64_t dropped() const { return dropped_; }
  int64_t surplus() const { return surplus_; }
  int64_t shortfall() const { return wanted_ - kept_; }  // groups missing from a full step

 private:
  DynamicSamplingOptions options_;
  int64_t wanted_;
  int64_t rounds_ = 0;
  int64_t kept_ = 0;
  int64_t dropped_ = 0;
  int64_t surplus_ = 0;
};

struct OverlongOptions {
  int64_t max_length = 1024;  // L: rollout.max_new_tokens
  int64_t buffer = 0;         // B: 0 = off
  double penalty = 1.0;       // p

  // trainer.overlong.{buffer, penalty} and rollout.max_new_tokens; InputError naming
  // trainer.overlong.buffer when B > L.
  static OverlongOptions from_config(const Config& config);
  bool enabled() const { return buffer > 0; }
  // The reward added to an answer of `length` tokens (≤ 0).
  double shaping(int64_t length, bool truncated) const;
};

// rewards [N] float, lengths [N] int (answer tokens), truncated [N] bool (undefined = none) →
// rewards + shaping, [N] float64.
at::Tensor apply_overlong_shaping(const OverlongOptions& options, const at::Tensor& rewards,
                                  const at::Tensor& lengths, const at::Tensor& truncated = {});

}  // namespace lvrl::trainer
