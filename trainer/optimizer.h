// The policy's optimizer (docs/trainer.md#optimizer-and-schedule): AdamW with decoupled weight decay and bias
// correction, the learning-rate schedule (linear warmup, then constant or cosine), and global gradient-norm
// clipping that can span ranks.
//
// Our own AdamW rather than torch::optim::AdamW because a checkpoint must be resumable on another
// rank layout: the state is keyed by parameter name ("exp_avg/<name>", "exp_avg_sq/<name>" plus one
// step count), not by a parameter's position in a group, and it exports as plain named tensors.
// The arithmetic is torch::optim::AdamW's, operation for operation (the tests hold it to 1e-12).
//
// Weight decay applies to matrices only: parameters with one dimension or fewer (biases, RMSNorm
// weights) are not decayed, the usual choice for transformers (decaying a norm's gain towards 0
// shrinks the layer's output rather than regularising it).
//
// Moments are float32 for float32, bfloat16 and float16 parameters and float64 for float64 ones.
// A reduced-precision parameter is updated in float32 and rounded back (no fp32 master copy: small
// updates to bfloat16 weights can round away, so train in float32 where that matters).
#pragma once

#include <ATen/Tensor.h>
#include <torch/ordered_dict.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace c10d {
class ProcessGroup;
}

namespace lvrl {
class Config;
}

namespace lvrl::trainer {

enum class LrSchedule { Constant, Cosine };

struct OptimizerOptions {
  double lr = 1e-6;  // peak
  double weight_decay = 1e-2;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  LrSchedule schedule = LrSchedule::Constant;
  int64_t warmup_steps = 0;
  double min_lr_ratio = 0;  // cosine: the final lr is min_lr_ratio · lr
  double grad_clip = 1.0;   // max global gradient norm; 0 = no clipping
  int64_t steps = 100;      // optimizer steps of the run; the cosine decays over them

  // trainer.lr, weight_decay, betas, eps, schedule, warmup_steps, min_lr_ratio, grad_clip, steps.
  // trainer.steps 0 (steps from epochs) leaves `steps` 0: the trainer sets it from the dataset.
  static OptimizerOptions from_config(const Config& config);
  void check() const;  // InputError naming the trainer.* key
};

// The learning rate of the optimizer step with index `step` (0 for the first):
//   warmup (step < warmup_steps):  lr · (step + 1) / warmup_steps   (the first step is not wasted at 0,
//                                   step warmup_steps − 1 reaches the peak)
//   constant:                      lr
//   cosine:                        lr · (m + (1 − m) · ½ (1 + cos π p)),  m = min_lr_ratio,
//                                   p = min(1, (step − warmup_steps) / max(1, steps − warmup_steps))
double lr_at(const OptimizerOptions& options, int64_t step);

class AdamW {
 public:
  // The parameters to optimise, by name (model->named_parameters(); those not requiring grad are
  // skipped). Moments start at zero.
  AdamW(const std::vector<std::pair<std::string, at::Tensor>>& named_parameters, OptimizerOptions options);
  AdamW(const torch::OrderedDict<std::string, at::Tensor>& named_parameters, OptimizerOptions options);

  // One update of every parameter that has a gradient at lr_at(options, steps_taken()); returns that lr.
  //   p ← p · (1 − lr·wd)                        (wd = 0 for 1-D parameters)
  //   m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g²
  //   p ← p − lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε),  t = steps_taken() + 1
  double step();
  void zero_grad();  // drops every gradient (set to undefined)

  int64_t steps_taken() const { return steps_taken_; }
  const OptimizerOptions& options() const { return options_; }
  const std::vector<std::pair<std::string, at::Tensor>>& parameters() const { return parameters_; }

  // For checkpoints: "exp_avg/<name>" and "exp_avg_sq/<name>" of every parameter (copies, on the
  // CPU), and "step" (int64 [1], the steps taken).
  std::map<std::string, at::Tensor> export_state() const;
  // The inverse, matched by name whatever the layout that wrote it. A missing or extra entry, or a
  // moment of the wrong shape, is an InputError naming the entry (`source`: the file, for the error).
  void import_state(const std::map<std::string, at::Tensor>& state, const std::string& source);

 private:
  struct Slot {
    std::string name;
    at::Tensor parameter;            // the model's own tensor, updated in place
    at::Tensor exp_avg, exp_avg_sq;  // shape of the parameter, float32 or float64
    bool decay;
  };
  OptimizerOptions options_;
  std::vector<std::pair<std::string, at::Tensor>> parameters_;
  std::vector<Slot> slots_;
  int64_t steps_taken_ = 0;
};

// Scales the gradients of `parameters` so that their global L2 norm is at most max_norm (coefficient
// max_norm / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_) and returns the norm before clipping.
// max_norm 0: only measures. A non-finite norm is returned and leaves the gradients as they are (the
// caller skips the step). Parameters without a gradient are ignored. The norm is accumulated in
// float64.
//
// `group`: where the gradients live.
//  - nullptr: every rank holds the whole gradient — in particular after DP/SP gradient all-reduce,
//    when the gradients are already summed and identical on every rank. Summing squared norms across
//    ranks there would count each gradient world-size times.
//  - a process group: each rank holds a different part of the gradient (a parameter shard, or
//    partial gradients of different parameters); the squared norms are all-reduced (sum) over the
//    group first, so every rank computes the same global norm and the same coefficient. Every rank of
//    the group must call it.
double clip_grad_norm(const std::vector<at::Tensor>& parameters, double max_norm, c10d::ProcessGroup* group);

}  // namespace lvrl::trainer
