// What every training job does around its steps (docs/trainer.md#run-directory-and-checkpoints),
// shared by `lvrl sft` and the RL trainer so both resume, save, log and stop alike:
//  - resume (trainer.resume: auto | never | PATH) on whatever DP/SP layout this run has: the weights,
//    the optimizer's moments by name, the step, the schedule, the data cursor; the metrics log is cut
//    back to the checkpoint's step (steps trained after it were lost);
//  - after each optimizer step: the step's scalars to RUN/metrics.jsonl and TensorBoard, the
//    progress line, a checkpoint every trainer.save_every steps (rank 0 writes; the newest
//    trainer.keep_checkpoints stay);
//  - a non-finite loss or gradient norm stops the run before the update, naming the step: the last
//    checkpoint stays the newest, nothing after it is saved;
//  - SIGTERM / SIGINT: the step in flight finishes, a checkpoint is written, the job exits 0. Every
//    rank learns of a signal any rank received at the same step (one all-reduce per step), so ranks
//    never part ways inside a collective.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/config.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/stop_signal.h"
#include "model/qwen_vl.h"
#include "sp/mesh.h"
#include "trainer/metrics.h"
#include "trainer/optimizer.h"
#include "trainer/trainer_state.h"

namespace lvrl::trainer {

struct RunOptions {
  std::string run_dir;           // run.dir
  std::string model_source_dir;  // model.path: tokenizer and preprocessor files for checkpoints
  std::string resume = "auto";   // trainer.resume
  int64_t save_every = 50;       // trainer.save_every (0: only on stop and at the end)
  int64_t keep_checkpoints = 3;  // trainer.keep_checkpoints
  uint64_t seed = 0;             // run.seed: the data order's shuffle seed of a fresh run
  static RunOptions from_config(const Config& config);
};

// A run that stopped on a non-finite loss or gradient norm; training commands exit with
// kNonFiniteLossExit then.
class NonFiniteLoss : public Error {
 public:
  using Error::Error;
};
inline constexpr int kNonFiniteLossExit = 3;

class TrainingRun {
 public:
  // Every rank constructs it together with the model and optimizer it trains (the model loaded from
  // model.path; a resume overwrites its weights). Rank 0 of the world writes metrics and checkpoints.
  TrainingRun(const Config& config, model::QwenVLImpl& model, AdamW& optimizer,
              std::shared_ptr<sp::Mesh> mesh, std::string label);
  ~TrainingRun();

  TrainerState& state() { return state_; }
  // The checkpoint resumed from, if any.
  const std::optional<std::string>& resumed_from() const { return resumed_from_; }
  bool writer() const { return mesh_->rank() == 0; }

  // Sets the progress line's total (the run's optimizer steps).
  void set_total_steps(int64_t steps);
  // Before the update: a NonFiniteLoss naming the step about to be taken when loss or norm is not
  // finite.
  void check_finite(double loss, double grad_norm) const;
  // After an optimizer step: advances state().step and the schedule, logs the scalars, updates the
  // progress line, saves when trainer.save_every says so.
  void complete_step(const std::map<std::string, double>& scalars);
  // Collective: whether any rank has received SIGTERM/SIGINT. Call once per step on every rank.
  bool stop_requested();
  // Writes a checkpoint of the current step now (rank 0; the others wait for it to be durable), then
  // calls the after-save hook on every rank.
  void save();
  // Called after each durable checkpoint (e.g. to acknowledge the rollouts it holds).
  void set_after_save(std::function<void()> hook) { after_save_ = std::move(hook); }
  // The end of the run: the final checkpoint unless the last step was just saved, and the progress line.
  void finish();

 private:
  RunOptions options_;
  model::QwenVLImpl& model_;
  AdamW& optimizer_;
  std::shared_ptr<sp::Mesh> mesh_;
  std::string label_;
  TrainerState state_;
  std::optional<std::string> resumed_from_;
  std::unique_ptr<MetricsLog> metrics_;
  std::unique_ptr<Progress> progress_;
  StopSignal signals_;
  int64_t saved_step_ = -1;
  std::function<void()> after_save_;
};

}  // namespace lvrl::trainer
