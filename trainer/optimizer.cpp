#include "trainer/optimizer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cmath>

#include "core/config.h"
#include "core/error.h"
#include "core/tensor_format.h"
#include "sp/comm.h"

namespace lvrl::trainer {

namespace {

void check_option(bool ok, const std::string& key, const std::string& value, const std::string& problem) {
  if (!ok) throw InputError({"", 0, "trainer." + key, value}, problem);
}

at::ScalarType moment_dtype(const at::Tensor& parameter) {
  return parameter.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

std::vector<std::pair<std::string, at::Tensor>> to_pairs(
    const torch::OrderedDict<std::string, at::Tensor>& dict) {
  std::vector<std::pair<std::string, at::Tensor>> pairs;
  for (const auto& item : dict) pairs.emplace_back(item.key(), item.value());
  return pairs;
}

}  // namespace

OptimizerOptions OptimizerOptions::from_config(const Config& config) {
  OptimizerOptions options;
  options.lr = config.get<double>("trainer.lr");
  options.weight_decay = config.get<double>("trainer.weight_decay");
  const auto& betas = config.get<std::vector<double>>("trainer.betas");
  if (betas.size() != 2) {
    throw InputError({config.source_of("trainer.betas"), 0, "trainer.betas", fmt::format("{}", betas.size())},
                     "expected two numbers, [β1, β2]");
  }
  options.beta1 = betas[0];
  options.beta2 = betas[1];
  options.eps = config.get<double>("trainer.eps");
  options.schedule =
      config.get<std::string>("trainer.schedule") == "cosine" ? LrSchedule::Cosine : LrSchedule::Constant;
  options.warmup_steps = config.get<int64_t>("trainer.warmup_steps");
  options.min_lr_ratio = config.get<double>("trainer.min_lr_ratio");
  options.grad_clip = config.get<double>("trainer.grad_clip");
  options.steps = config.get<int64_t>("trainer.steps");
  try {
    options.check();
  } catch (const InputError& e) {
    throw InputError({config.source_of(e.key()), 0, e.key(), e.value()}, e.problem());
  }
  return options;
}

void OptimizerOptions::check() const {
  check_option(std::isfinite(lr) && lr >= 0, "lr", fmt::format("{}", lr), "expected a finite lr ≥ 0");
  check_option(std::isfinite(weight_decay) && weight_decay >= 0, "weight_decay",
               fmt::format("{}", weight_decay), "expected a finite weight decay ≥ 0");
  check_option(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "betas",
               fmt::format("[{}, {}]", beta1, beta2), "expected 0 ≤ β < 1 for both betas");
  check_option(eps > 0, "eps", fmt::format("{}", eps), "expected ε > 0");
  check_option(warmup_steps >= 0, "warmup_steps", std::to_string(warmup_steps), "expected warmup_steps ≥ 0");
  check_option(min_lr_ratio >= 0 && min_lr_ratio <= 1, "min_lr_ratio", fmt::format("{}", min_lr_ratio),
               "expected 0 ≤ min_lr_ratio ≤ 1");
  check_option(std::isfinite(grad_clip) && grad_clip >= 0, "grad_clip", fmt::format("{}", grad_clip),
               "expected a finite grad_clip ≥ 0 (0 = off)");
  check_option(steps >= 0, "steps", std::to_string(steps), "expected steps ≥ 0");
}

double lr_at(const OptimizerOptions& options, int64_t step) {
  LVRL_ASSERT(step >= 0, fmt::format("lr_at step {}", step));
  if (step < options.warmup_steps) {
    return options.lr * static_cast<double>(step + 1) / static_cast<double>(options.warmup_steps);
  }
  if (options.schedule == LrSchedule::Constant) return options.lr;
  LVRL_ASSERT(options.steps > 0, "a cosine schedule needs the run's step count");
  const double span = static_cast<double>(std::max<int64_t>(1, options.steps - options.warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - options.warmup_steps) / span);
  const double m = options.min_lr_ratio;
  return options.lr * (m + (1 - m) * 0.5 * (1 + std::cos(M_PI * progress)));
}

AdamW::AdamW(const torch::OrderedDict<std::string, at::Tensor>& named_parameters, OptimizerOptions options)
    : AdamW(to_pairs(named_parameters), options) {}

AdamW::AdamW(const std::vector<std::pair<std::string, at::Tensor>>& named_parameters,
             OptimizerOptions options)
    : options_(options) {
  options_.check();
  at::NoGradGuard no_grad;
  for (const auto& [name, parameter] : named_parameters) {
    if (!parameter.requires_grad()) continue;
    for (const Slot& slot : slots_) {
      LVRL_ASSERT(slot.name != name, fmt::format("parameter {} listed twice", name));
    }
    parameters_.emplace_back(name, parameter);
    const auto moment = at::TensorOptions().dtype(moment_dtype(parameter)).device(parameter.device());
    slots_.push_back({name, parameter, at::zeros(parameter.sizes(), moment),
                      at::zeros(parameter.sizes(), moment), parameter.dim() >= 2});
  }
}

double AdamW::step() {
  const double lr = lr_at(options_, steps_taken_);
  const double t = static_cast<double>(steps_taken_ + 1);
  const double bias_correction1 = 1 - std::pow(options_.beta1, t);
  const double bias_correction2 = 1 - std::pow(options_.beta2, t);
  const double step_size = lr / bias_correction1;
  at::NoGradGuard no_grad;
  for (Slot& slot : slots_) {
    const at::Tensor& grad_in = slot.parameter.grad();
    if (!grad_in.defined()) continue;
    const at::ScalarType dtype = slot.exp_avg.scalar_type();
    const bool same_dtype = slot.parameter.scalar_type() == dtype;
    at::Tensor parameter = same_dtype ? slot.parameter : slot.parameter.to(dtype);
    at::Tensor grad = grad_in.to(dtype);
    if (slot.decay && options_.weight_decay != 0) parameter.mul_(1 - lr * options_.weight_decay);
    slot.exp_avg.mul_(options_.beta1).add_(grad, 1 - options_.beta1);
    slot.exp_avg_sq.mul_(options_.beta2).addcmul_(grad, grad, 1 - options_.beta2);
    at::Tensor denom = (slot.exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(options_.eps);
    parameter.addcdiv_(slot.exp_avg, denom, -step_size);
    if (!same_dtype) slot.parameter.copy_(parameter);
  }
  ++steps_taken_;
  return lr;
}

void AdamW::zero_grad() {
  for (Slot& slot : slots_) slot.parameter.mutable_grad() = at::Tensor();
}

std::map<std::string, at::Tensor> AdamW::export_state() const {
  std::map<std::string, at::Tensor> state;
  for (const Slot& slot : slots_) {
    state["exp_avg/" + slot.name] = slot.exp_avg.to(at::kCPU, /*non_blocking=*/false, /*copy=*/true);
    state["exp_avg_sq/" + slot.name] = slot.exp_avg_sq.to(at::kCPU, /*non_blocking=*/false, /*copy=*/true);
  }
  state["step"] = at::full({1}, steps_taken_, at::kLong);
  return state;
}

void AdamW::import_state(const std::map<std::string, at::Tensor>& state, const std::string& source) {
  auto entry = [&](const std::string& key) -> const at::Tensor& {
    auto it = state.find(key);
    if (it == state.end()) throw InputError({source, 0, key, ""}, "the optimizer state has no such entry");
    return it->second;
  };
  const at::Tensor& step = entry("step");
  if (step.numel() != 1 || at::isFloatingType(step.scalar_type()) || step.item<int64_t>() < 0) {
    throw InputError({source, 0, "step", fmt::format("{}", step.sizes())},
                     "expected one integer ≥ 0: the optimizer steps taken");
  }
  std::map<std::string, const at::Tensor*> moments;  // checked before anything changes
  for (const Slot& slot : slots_) {
    for (const std::string& key : {"exp_avg/" + slot.name, "exp_avg_sq/" + slot.name}) {
      const at::Tensor& moment = entry(key);
      if (!moment.sizes().equals(slot.parameter.sizes()) || !at::isFloatingType(moment.scalar_type())) {
        throw InputError({source, 0, key, fmt::format("{} {}", moment.scalar_type(), moment.sizes())},
                         fmt::format("expected a floating-point tensor of the parameter's shape {}",
                                     slot.parameter.sizes()));
      }
      moments[key] = &moment;
    }
  }
  for (const auto& [key, tensor] : state) {
    if (key != "step" && moments.count(key) == 0) {
      throw InputError({source, 0, key, fmt::format("{}", tensor.sizes())},
                       "an optimizer entry for a parameter this model does not train");
    }
  }
  at::NoGradGuard no_grad;
  for (Slot& slot : slots_) {
    slot.exp_avg.copy_(*moments.at("exp_avg/" + slot.name));
    slot.exp_avg_sq.copy_(*moments.at("exp_avg_sq/" + slot.name));
  }
  steps_taken_ = step.item<int64_t>();
}

double clip_grad_norm(const std::vector<at::Tensor>& parameters, double max_norm, c10d::ProcessGroup* group) {
  LVRL_ASSERT(max_norm >= 0, fmt::format("clip_grad_norm to {}", max_norm));
  std::vector<at::Tensor> grads;
  for (const at::Tensor& parameter : parameters) {
    if (parameter.grad().defined()) grads.push_back(parameter.grad());
  }
  at::NoGradGuard no_grad;
  at::Tensor squared;  // [1] float64 on the gradients' device
  if (grads.empty()) {
    squared = at::zeros({1}, at::kDouble);
  } else {
    std::vector<at::Tensor> norms;  // each gradient's norm, float64
    for (const at::Tensor& grad : grads)
      norms.push_back(at::linalg_vector_norm(grad, 2, {}, false, at::kDouble));
    squared = at::stack(norms).square().sum().reshape({1});
  }
  if (group != nullptr) sp::all_reduce_sum(*group, squared);
  const double norm = std::sqrt(squared.item<double>());
  if (max_norm > 0 && std::isfinite(norm)) {
    const double coefficient = max_norm / (norm + 1e-6);
    if (coefficient < 1) {
      for (at::Tensor& grad : grads) grad.mul_(coefficient);
    }
  }
  return norm;
}

}  // namespace lvrl::trainer
