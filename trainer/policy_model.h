// The models a training job holds: the policy it trains and, for KL, a frozen reference. Both are
// model.path's checkpoint in model.dtype on model.device. The vision tower is frozen in both: the
// trainer's video rows come from the embedding cache, so its gradient would be zero anyway, and its
// AdamW moments would be memory for nothing.
#pragma once

#include <ATen/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "model/qwen_vl.h"

namespace lvrl::trainer {

struct PolicyModel {
  model::QwenVL model{nullptr};                             // in train mode
  std::vector<std::pair<std::string, at::Tensor>> trained;  // the parameters AdamW updates, by name
  std::vector<at::Tensor> trained_tensors() const;
};

PolicyModel load_policy(const Config& config);
// Every parameter frozen, eval mode.
model::QwenVL load_reference(const Config& config);

// The process's peak resident memory so far, GiB.
double peak_host_memory_gb();

// The run's optimizer steps: trainer.steps, or trainer.epochs passes of ⌈items / batch⌉ steps of
// `steps_per_batch` optimizer steps each (InputError naming trainer.epochs when both are 0).
int64_t total_steps(const Config& config, int64_t items, int64_t batch, int64_t steps_per_batch = 1);

}  // namespace lvrl::trainer
