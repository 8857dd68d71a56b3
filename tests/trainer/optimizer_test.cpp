// The optimizer (trainer/optimizer.h) against independent references: LibTorch's own
// torch::optim::AdamW on the same float64 parameters and gradients (≤ 1e-12 of the largest entry),
// a hand-computed schedule table, and gradient-norm clipping against a float64 sum of squares, on
// one process and over two real Gloo ranks.
#include "trainer/optimizer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/tensor_compare.h"
#include "sp/mesh.h"
#include "tests/support/expect_error.h"
#include "tests/support/multi_rank.h"

namespace lvrl::trainer {
namespace {

using NamedParameters = std::vector<std::pair<std::string, at::Tensor>>;

// Two matrices (decayed), a bias and a norm weight (not decayed), float64.
NamedParameters make_parameters(uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  NamedParameters parameters;
  for (const auto& [name, shape] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
           {"layer.weight", {4, 3}}, {"layer.bias", {4}}, {"norm.weight", {3}}, {"conv.weight", {2, 3, 2}}}) {
    parameters.emplace_back(name, at::randn(shape, generator, at::kDouble).requires_grad_(true));
  }
  return parameters;
}

NamedParameters clone_parameters(const NamedParameters& parameters) {
  NamedParameters copy;
  for (const auto& [name, parameter] : parameters) {
    copy.emplace_back(name, parameter.detach().clone().requires_grad_(true));
  }
  return copy;
}

// The gradients of step `step`, the same for every copy of the parameters.
void set_gradients(const NamedParameters& parameters, int64_t step) {
  at::Generator generator = at::detail::createCPUGenerator(1000 + step);
  for (const auto& [name, parameter] : parameters) {
    parameter.mutable_grad() = at::randn(parameter.sizes(), generator, at::kDouble);
  }
}

OptimizerOptions test_options() {
  OptimizerOptions options;
  options.lr = 3e-2;
  options.weight_decay = 0.1;
  options.beta1 = 0.8;
  options.beta2 = 0.95;
  options.eps = 1e-8;
  options.schedule = LrSchedule::Cosine;
  options.warmup_steps = 2;
  options.min_lr_ratio = 0.2;
  options.steps = 6;
  return options;
}

TEST(AdamW, MatchesLibTorchAdamW) {
  const OptimizerOptions options = test_options();
  NamedParameters ours = make_parameters(1);
  NamedParameters theirs = clone_parameters(ours);
  AdamW optimizer(ours, options);

  // LibTorch's AdamW: decay on the matrices only, lr set from the schedule before each step.
  std::vector<at::Tensor> decayed, not_decayed;
  for (const auto& [name, parameter] : theirs)
    (parameter.dim() >= 2 ? decayed : not_decayed).push_back(parameter);
  auto group_options = [&](double weight_decay) {
    return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(options.lr)
                                                            .betas({options.beta1, options.beta2})
                                                            .eps(options.eps)
                                                            .weight_decay(weight_decay));
  };
  torch::optim::AdamW reference(
      {torch::optim::OptimizerParamGroup(decayed, group_options(options.weight_decay)),
       torch::optim::OptimizerParamGroup(not_decayed, group_options(0))},
      torch::optim::AdamWOptions(options.lr));

  for (int64_t step = 0; step < 8; ++step) {  // past the end of the cosine too
    set_gradients(ours, step);
    set_gradients(theirs, step);
    const double lr = optimizer.step();
    EXPECT_EQ(lr, lr_at(options, step));
    for (auto& group : reference.param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    reference.step();
    for (size_t i = 0; i < ours.size(); ++i) {
      EXPECT_LE(max_relative_difference(ours[i].second, theirs[i].second), 1e-12)
          << ours[i].first << " after step " << step;
    }
  }
  EXPECT_EQ(optimizer.steps_taken(), 8);
}

TEST(AdamW, SkipsParametersWithoutGradientAndFrozenOnes) {
  NamedParameters parameters = make_parameters(2);
  parameters.emplace_back("frozen", at::ones({2}, at::kDouble));  // requires no grad
  AdamW optimizer(parameters, test_options());
  EXPECT_EQ(optimizer.parameters().size(), 4u);
  const at::Tensor before = parameters[0].second.detach().clone();
  set_gradients(parameters, 0);
  parameters[0].second.mutable_grad() = at::Tensor();
  optimizer.step();
  EXPECT_TRUE(at::equal(parameters[0].second, before));
  EXPECT_FALSE(at::equal(parameters[1].second.grad(), at::zeros({4}, at::kDouble)));
  optimizer.zero_grad();
  EXPECT_FALSE(parameters[1].second.grad().defined());
}

TEST(AdamW, ExportedStateResumesIdenticallyInAnotherOrder) {
  const OptimizerOptions options = test_options();
  NamedParameters parameters = make_parameters(3);
  AdamW optimizer(parameters, options);
  for (int64_t step = 0; step < 3; ++step) {
    set_gradients(parameters, step);
    optimizer.step();
  }
  const std::map<std::string, at::Tensor> state = optimizer.export_state();
  EXPECT_EQ(state.size(), 2 * parameters.size() + 1);
  EXPECT_EQ(state.at("step").item<int64_t>(), 3);
  EXPECT_TRUE(state.count("exp_avg/layer.weight") && state.count("exp_avg_sq/norm.weight"));

  // The resumed copy lists its parameters in reverse: the state follows the names.
  NamedParameters resumed = clone_parameters(parameters);
  std::reverse(resumed.begin(), resumed.end());
  AdamW restored(resumed, options);
  restored.import_state(state, "ckpt/optimizer.safetensors");
  EXPECT_EQ(restored.steps_taken(), 3);
  for (int64_t step = 3; step < 7; ++step) {
    set_gradients(parameters, step);
    // The same gradient per name in the reversed list.
    for (size_t i = 0; i < resumed.size(); ++i) {
      resumed[resumed.size() - 1 - i].second.mutable_grad() = parameters[i].second.grad().clone();
    }
    EXPECT_EQ(optimizer.step(), restored.step());
  }
  for (size_t i = 0; i < parameters.size(); ++i) {
    EXPECT_TRUE(at::equal(parameters[i].second, resumed[resumed.size() - 1 - i].second))
        << parameters[i].first;
  }
}

TEST(AdamW, RefusesAStateThatDoesNotFit) {
  NamedParameters parameters = make_parameters(4);
  AdamW optimizer(parameters, test_options());
  const std::map<std::string, at::Tensor> good = optimizer.export_state();

  auto without = good;
  without.erase("exp_avg_sq/layer.bias");
  test::expect_input_error([&] { optimizer.import_state(without, "opt.safetensors"); },
                           "exp_avg_sq/layer.bias");

  auto reshaped = good;
  reshaped["exp_avg/layer.weight"] = at::zeros({3, 4}, at::kDouble);
  const InputError error = test::expect_input_error(
      [&] { optimizer.import_state(reshaped, "opt.safetensors"); }, "exp_avg/layer.weight");
  EXPECT_EQ(error.file(), "opt.safetensors");

  auto extra = good;
  extra["exp_avg/lm_head.weight"] = at::zeros({2}, at::kDouble);
  test::expect_input_error([&] { optimizer.import_state(extra, "opt.safetensors"); },
                           "exp_avg/lm_head.weight");

  auto no_step = good;
  no_step.erase("step");
  test::expect_input_error([&] { optimizer.import_state(no_step, "opt.safetensors"); }, "step");
}

TEST(OptimizerOptions, ReadsTheTrainerKeys) {
  const OptimizerOptions defaults = OptimizerOptions::from_config(Config::parse("", "run.yaml"));
  EXPECT_EQ(defaults.lr, 1e-6);  // docs/trainer.md#defaults-seen-in-long-rl
  EXPECT_EQ(defaults.weight_decay, 1e-2);
  EXPECT_EQ(defaults.beta1, 0.9);
  EXPECT_EQ(defaults.beta2, 0.999);
  EXPECT_EQ(defaults.schedule, LrSchedule::Constant);
  EXPECT_EQ(defaults.grad_clip, 1.0);
  const OptimizerOptions options = OptimizerOptions::from_config(
      Config::parse("trainer:\n  lr: 3e-5\n  betas: [0.8, 0.95]\n  schedule: cosine\n  warmup_steps: 7\n"
                    "  min_lr_ratio: 0.1\n  steps: 40\n  eps: 1e-6\n  grad_clip: 0\n",
                    "run.yaml"));
  EXPECT_EQ(options.lr, 3e-5);
  EXPECT_EQ(options.beta1, 0.8);
  EXPECT_EQ(options.beta2, 0.95);
  EXPECT_EQ(options.schedule, LrSchedule::Cosine);
  EXPECT_EQ(options.warmup_steps, 7);
  EXPECT_EQ(options.min_lr_ratio, 0.1);
  EXPECT_EQ(options.steps, 40);
  EXPECT_EQ(options.eps, 1e-6);
  EXPECT_EQ(options.grad_clip, 0.0);
  const InputError error = test::expect_input_error(
      [] { OptimizerOptions::from_config(Config::parse("trainer:\n  betas: [0.9]\n", "run.yaml")); },
      "trainer.betas");
  EXPECT_NE(error.file().find("run.yaml"), std::string::npos) << error.what();
}

// lr 2e-3, 4 warmup steps, 12 steps, cosine to 0.1 · lr; values worked by hand:
//   warmup: lr·(s+1)/4;  then p = (s − 4)/8, lr·(0.1 + 0.9·½(1 + cos πp)).
TEST(LrSchedule, MatchesTheHandTable) {
  OptimizerOptions options;
  options.lr = 2e-3;
  options.warmup_steps = 4;
  options.steps = 12;
  options.min_lr_ratio = 0.1;
  options.schedule = LrSchedule::Cosine;
  const std::vector<std::pair<int64_t, double>> cosine{
      {0, 5e-4},
      {1, 1e-3},
      {2, 1.5e-3},
      {3, 2e-3},
      {4, 2e-3},               // p = 0
      {6, 1.736396103068e-3},  // p = 1/4: 0.1 + 0.9 · 0.853553390593
      {8, 1.1e-3},             // p = 1/2: 0.1 + 0.9 · 0.5
      {10, 4.63603896932e-4},  // p = 3/4: 0.1 + 0.9 · 0.146446609407
      {12, 2e-4},
      {40, 2e-4}};  // p = 1, and past the end
  for (const auto& [step, expected] : cosine) {
    EXPECT_NEAR(lr_at(options, step), expected, 1e-12 * 2e-3) << "cosine, step " << step;
  }
  options.schedule = LrSchedule::Constant;
  const std::vector<std::pair<int64_t, double>> constant{{0, 5e-4}, {3, 2e-3}, {4, 2e-3}, {1000, 2e-3}};
  for (const auto& [step, expected] : constant) {
    EXPECT_NEAR(lr_at(options, step), expected, 1e-12 * 2e-3) << "constant, step " << step;
  }
  options.warmup_steps = 0;
  EXPECT_EQ(lr_at(options, 0), 2e-3);
  options.schedule = LrSchedule::Cosine;
  EXPECT_EQ(lr_at(options, 0), 2e-3);
  EXPECT_NEAR(lr_at(options, 6), 2e-3 * (0.1 + 0.9 * 0.5), 1e-15);  // p = 6/12
}

// The global norm in float64 by a plain loop over every element.
double hand_norm(const std::vector<at::Tensor>& grads) {
  double sum = 0;
  for (const at::Tensor& grad : grads) {
    at::Tensor flat = grad.to(at::kDouble).contiguous().view(-1);
    const double* data = flat.data_ptr<double>();
    for (int64_t i = 0; i < flat.numel(); ++i) sum += data[i] * data[i];
  }
  return std::sqrt(sum);
}

TEST(ClipGradNorm, ScalesToTheMaximumAndReturnsThePreClipNorm) {
  at::Tensor a = at::zeros({2}, at::kDouble).requires_grad_(true);
  at::Tensor b = at::zeros({1, 1}, at::kDouble).requires_grad_(true);
  at::Tensor no_grad = at::zeros({3}, at::kDouble).requires_grad_(true);
  auto reset = [&] {
    a.mutable_grad() = at::tensor({3.0, 4.0}, at::kDouble);
    b.mutable_grad() = at::full({1, 1}, 12.0, at::kDouble);
  };
  reset();
  EXPECT_NEAR(clip_grad_norm({a, b, no_grad}, 6.5, nullptr), 13.0, 1e-14);  // √(9 + 16 + 144)
  const double coefficient = 6.5 / (13.0 + 1e-6);
  EXPECT_NEAR(a.grad()[0].item<double>(), 3 * coefficient, 1e-14);
  EXPECT_NEAR(a.grad()[1].item<double>(), 4 * coefficient, 1e-14);
  EXPECT_NEAR(b.grad()[0][0].item<double>(), 12 * coefficient, 1e-14);
  EXPECT_FALSE(no_grad.grad().defined());

  reset();
  EXPECT_NEAR(clip_grad_norm({a, b}, 20, nullptr), 13.0, 1e-14);  // below the maximum: untouched
  EXPECT_EQ(a.grad()[1].item<double>(), 4.0);
  EXPECT_NEAR(clip_grad_norm({a, b}, 0, nullptr), 13.0, 1e-14);  // 0: measure only
  EXPECT_EQ(b.grad()[0][0].item<double>(), 12.0);

  b.mutable_grad()[0][0] = std::nan("");
  EXPECT_TRUE(std::isnan(clip_grad_norm({a, b}, 1, nullptr)));
  EXPECT_EQ(a.grad()[1].item<double>(), 4.0) << "a non-finite norm leaves the gradients";
}

TEST(ClipGradNorm, Float32GradientsAgainstAFloat64Sum) {
  at::Generator generator = at::detail::createCPUGenerator(9);
  std::vector<at::Tensor> parameters;
  std::vector<at::Tensor> originals;
  for (int64_t size : {1000, 37, 5}) {
    at::Tensor parameter = at::zeros({size}, at::kFloat).requires_grad_(true);
    parameter.mutable_grad() = at::randn({size}, generator, at::kFloat).mul_(3);
    originals.push_back(parameter.grad().clone());
    parameters.push_back(parameter);
  }
  const double expected = hand_norm(originals);
  const double norm = clip_grad_norm(parameters, 1.0, nullptr);
  EXPECT_LE(std::abs(norm - expected) / expected, 1e-12);
  EXPECT_NEAR(hand_norm({parameters[0].grad(), parameters[1].grad(), parameters[2].grad()}), 1.0, 1e-6);
}

// Rank r holds its own part of the gradient (seed 50 + r); the norm covers both ranks' parts.
std::vector<at::Tensor> rank_gradients(int rank) {
  at::Generator generator = at::detail::createCPUGenerator(50 + rank);
  return {at::randn({6, 5}, generator, at::kDouble), at::randn({7}, generator, at::kDouble)};
}

TEST(ClipGradNormWorker, TwoRanks) {
  LVRL_RANK_WORKER_ONLY();
  auto mesh = sp::Mesh::create(sp::DistributedEnv::from_environment(), {1, 0, 0}, c10::kCPU);
  ASSERT_EQ(mesh->world_size(), 2);
  std::vector<at::Tensor> parameters;
  const std::vector<at::Tensor> grads = rank_gradients(mesh->rank());
  for (const at::Tensor& grad : grads) {
    at::Tensor parameter = at::zeros(grad.sizes(), at::kDouble).requires_grad_(true);
    parameter.mutable_grad() = grad.clone();
    parameters.push_back(parameter);
  }
  std::vector<at::Tensor> all = rank_gradients(0);
  for (const at::Tensor& grad : rank_gradients(1)) all.push_back(grad);
  const double expected = hand_norm(all);
  const double max_norm = expected / 2;
  const double norm = clip_grad_norm(parameters, max_norm, &mesh->world());
  EXPECT_LE(std::abs(norm - expected) / expected, 1e-12);
  const double coefficient = max_norm / (expected + 1e-6);
  for (size_t i = 0; i < grads.size(); ++i) {
    EXPECT_LE(max_relative_difference(parameters[i].grad(), grads[i] * coefficient), 1e-12);
  }
  // Without the group each rank sees only its own part.
  for (size_t i = 0; i < grads.size(); ++i) parameters[i].mutable_grad() = grads[i].clone();
  EXPECT_LE(std::abs(clip_grad_norm(parameters, 0, nullptr) - hand_norm(grads)) / hand_norm(grads), 1e-12);
  test::write_result(fmt::format("{:.12e}", norm));
}

TEST(ClipGradNorm, SumsSquaredNormsOverTwoGlooRanks) {
  const test::RankRun run = test::run_ranks(2, "ClipGradNormWorker.TwoRanks");
  ASSERT_TRUE(test::ranks_succeeded(run));
  EXPECT_EQ(run.results[0], run.results[1]) << "every rank computes the same global norm";
}

}  // namespace
}  // namespace lvrl::trainer
