#include "trainer/training_run.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cmath>

#include "core/error.h"
#include "core/log.h"
#include "sp/comm.h"
#include "trainer/checkpoint.h"

namespace lvrl::trainer {

RunOptions RunOptions::from_config(const Config& config) {
  RunOptions options;
  options.run_dir = config.get<std::string>("run.dir");
  options.model_source_dir = config.get<std::string>("model.path");
  options.resume = config.get<std::string>("trainer.resume");
  options.save_every = config.get<int64_t>("trainer.save_every");
  options.keep_checkpoints = config.get<int64_t>("trainer.keep_checkpoints");
  options.seed = static_cast<uint64_t>(config.get<int64_t>("run.seed"));
  if (options.run_dir.empty()) {
    throw InputError({config.source_of("run.dir"), 0, "run.dir", ""}, "a training run needs a run directory");
  }
  return options;
}

TrainingRun::TrainingRun(const Config& config, model::QwenVLImpl& model, AdamW& optimizer,
                         std::shared_ptr<sp::Mesh> mesh, std::string label)
    : options_(RunOptions::from_config(config)),
      model_(model),
      optimizer_(optimizer),
      mesh_(std::move(mesh)),
      label_(std::move(label)) {
  state_.config_yaml = config.to_yaml();
  state_.data.shuffle_seed = options_.seed;
  // Every rank reads the same directory and so picks the same checkpoint (the warnings from rank 0).
  resumed_from_ = find_resume_checkpoint(options_.run_dir, options_.resume);
  if (resumed_from_) {
    const std::string fresh_config = state_.config_yaml;
    load_checkpoint(*resumed_from_, model_, state_);
    optimizer_.import_state(state_.optimizer, *resumed_from_ + "/" + kTrainerStateDirName);
    state_.optimizer.clear();  // the optimizer holds its own copies now
    state_.config_yaml = fresh_config;
    if (writer()) LVRL_INFO("resuming from {} (step {})", *resumed_from_, state_.step);
  }
  saved_step_ = resumed_from_ ? state_.step : -1;
  if (writer()) {
    metrics_ = std::make_unique<MetricsLog>(options_.run_dir);
    const int64_t dropped = metrics_->truncate_after(state_.step);
    if (dropped > 0)
      LVRL_INFO("{}: dropped {} metric lines past step {}", metrics_->jsonl_path(), dropped, state_.step);
  }
}

TrainingRun::~TrainingRun() = default;

void TrainingRun::set_total_steps(int64_t steps) {
  if (!writer()) return;
  progress_ = std::make_unique<Progress>(label_, steps, "step");
  progress_->advance(std::min(state_.step, steps));
}

void TrainingRun::check_finite(double loss, double grad_norm) const {
  if (std::isfinite(loss) && std::isfinite(grad_norm)) return;
  const std::string newest =
      saved_step_ >= 0 ? checkpoint_dir(options_.run_dir, saved_step_) : std::string("none written yet");
  throw NonFiniteLoss(fmt::format(
      "step {}: the loss is {} and the gradient norm {}; stopping before the update (newest checkpoint: {})",
      state_.step + 1, loss, grad_norm, newest));
}

void TrainingRun::complete_step(const std::map<std::string, double>& scalars) {
  state_.step += 1;
  state_.schedule_position = optimizer_.steps_taken();
  nlohmann::json last = nlohmann::json::object();
  for (const auto& [name, value] : scalars) {
    if (std::isfinite(value)) last[name] = value;
  }
  state_.metrics = last;
  if (writer()) {
    metrics_->log(state_.step, scalars);
    if (progress_) {
      progress_->set_detail(format_step_summary(scalars));
      progress_->advance();
    }
  }
  if (options_.save_every > 0 && state_.step % options_.save_every == 0) save();
}

bool TrainingRun::stop_requested() {
  at::Tensor flag = at::full({1}, signals_.requested() ? 1 : 0, at::kLong);
  sp::all_reduce_sum(mesh_->world(), flag);
  return flag.item<int64_t>() > 0;
}

void TrainingRun::save() {
  if (writer()) {
    state_.optimizer = optimizer_.export_state();
    save_checkpoint(options_.run_dir, model_, state_, options_.model_source_dir, options_.keep_checkpoints);
    state_.optimizer.clear();
  }
  // The others wait until it is durable: a rank that went on and crashed must find it on resume.
  at::Tensor done = at::zeros({1}, at::kLong);
  sp::all_reduce_sum(mesh_->world(), done);
  saved_step_ = state_.step;
  if (after_save_) after_save_();
}

void TrainingRun::finish() {
  if (saved_step_ != state_.step) save();
  if (progress_) progress_->finish();
}

}  // namespace lvrl::trainer
