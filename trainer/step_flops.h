// The model FLOPs of a training step's forward and backward (docs/trainer.md#metrics-and-plots): what
// perf/achieved_flops divides by the step's time and what bench_train_step sets against at::mm.
//
//   6 · tokens · (weights of the decoder's linear layers)            linear layers, forward + backward
// + Σ_answers 6 · layers · heads · head_dim · S²                      causal attention (QKᵀ and PV are
//                                                                     2·H·Dh·S²/2 each forward, ×3)
// + 6 · scored tokens · vocabulary · hidden                           the LM head on scored rows only
//
// Recompute's second forward is not counted: these are model FLOPs, not executed ones.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/qwen_config.h"
#include "trainer/train_batch.h"

namespace lvrl::trainer {

struct LinearShape {
  std::string name;
  int64_t in = 0, out = 0;
};
// The seven linear layers of one decoder layer.
std::vector<LinearShape> layer_linears(const model::TextConfig& text);

struct StepFlops {
  double linear = 0, attention = 0, head = 0;
  double total() const { return linear + attention + head; }
};
StepFlops step_flops(const model::TextConfig& text, const TrainBatch& batch);

}  // namespace lvrl::trainer
