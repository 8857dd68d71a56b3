// The whole model on a CUDA device against the same weights on the CPU in float64 (skipped without a
// device): modules are device-agnostic, so every tensor a forward makes (rotary tables, window
// indices, masks, the KV cache) must follow the parameters' device.
//   float64 on CUDA (blockwise attention): loss, every parameter gradient, prefill/decode logits
//   within 1e-6 of the CPU — not closer, because the rotary tables are float32 by design (as
//   transformers computes them) and CUDA's float32 cos/sin differ from glibc's in the last bits
//   (measured on an H200: 1.1e-7 worst, most entries 1e-8);
//   float32 on CUDA with the default backend (fused), TF32 off: within 1e-4 (measured 1.7e-6).
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <string>

#include "core/tensor_compare.h"
#include "model/qwen_vl.h"
#include "tests/model/micro_model.h"

namespace lvrl::model {
namespace {

using testing_model::micro_config;
using testing_model::video_prompt;

// A micro model with init_weights' matrices scaled up (as in qwen_vl_test) so every part matters.
QwenVL make_model(const QwenConfig& config, at::Device device, at::ScalarType dtype, const QwenVL& like) {
  QwenVL model(config);
  model->to(device, dtype);
  at::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> source;
  for (const auto& item : like->named_parameters()) source[item.key()] = item.value();
  for (auto& item : model->named_parameters()) item.value().copy_(source.at(item.key()));
  model->set_attention(make_default_attention(device));
  return model;
}

struct Outputs {
  at::Tensor loss;
  std::map<std::string, at::Tensor> grads;
  at::Tensor prefill, decoded;  // [2, V] each
};

// One training-style loss (log-probs of the last tokens after a video) with its gradients, then a
// prefill of two right-padded prompts and one decode step.
Outputs run(QwenVL& model, const QwenConfig& config, at::Device device, at::ScalarType dtype) {
  const GridTHW grid{2, 12, 8};
  at::Tensor ids = video_prompt(config, grid, 3, 6, 5);
  at::Tensor pixels = at::randn({grid[0] * grid[1] * grid[2], config.vision.patch_dim()},
                                at::detail::createCPUGenerator(9), at::kDouble)
                          .to(device, dtype);
  Outputs outputs;
  {
    ModelInput input;
    input.input_ids = ids.unsqueeze(0).to(device);
    input.pixel_values_videos = pixels;
    input.video_grids = {grid};
    const int64_t seq = ids.size(0), scored = 6;
    at::Tensor targets = input.input_ids[0].narrow(0, seq - scored, scored);
    at::Tensor hidden = model->hidden_states(input)[0].narrow(0, seq - scored - 1, scored);
    model->zero_grad();
    outputs.loss = token_logprobs(hidden, model->lm_head_weight(), targets).sum();
    outputs.loss.backward();
    for (const auto& item : model->named_parameters()) outputs.grads[item.key()] = item.value().grad();
  }
  at::NoGradGuard no_grad;
  ModelInput prompts;
  const int64_t seq = ids.size(0);
  prompts.input_ids = at::zeros({2, seq}, at::kLong);
  prompts.input_ids[0].copy_(ids);
  prompts.input_ids[1].narrow(0, 0, 9).copy_(ids.narrow(0, 0, 3).repeat({3}));
  prompts.attention_mask = at::zeros({2, seq}, at::kLong);
  prompts.attention_mask[0].fill_(1);
  prompts.attention_mask[1].narrow(0, 0, 9).fill_(1);
  prompts.input_ids = prompts.input_ids.to(device);
  prompts.attention_mask = prompts.attention_mask.to(device);
  prompts.pixel_values_videos = pixels;
  prompts.video_grids = {grid};
  DenseKVCache cache(config.text, 2, seq + 1, dtype, device);
  outputs.prefill = model->prefill(prompts, cache);
  outputs.decoded = model->decode(at::tensor(std::vector<int64_t>{7, 11}, at::kLong).to(device), cache);
  return outputs;
}

void expect_match(const Outputs& actual, const Outputs& expected, double tolerance,
                  const std::string& label) {
  double worst = 0;
  std::string worst_name;
  auto check = [&](const std::string& name, const at::Tensor& a, const at::Tensor& e) {
    ASSERT_TRUE(a.defined()) << name << " undefined";
    const double error = max_relative_difference(a, e);
    EXPECT_LE(error, tolerance) << name;
    if (error >= worst) worst = error, worst_name = name;
  };
  check("loss", actual.loss, expected.loss);
  check("prefill logits", actual.prefill, expected.prefill);
  check("decode logits", actual.decoded, expected.decoded);
  for (const auto& [name, grad] : expected.grads) check("grad " + name, actual.grads.at(name), grad);
  std::cout << fmt::format("[ errors   ] {:<20} worst {:.2e} ({}), {} gradients\n", label, worst, worst_name,
                           expected.grads.size());
}

TEST(ModelCuda, MatchesCpuFloat64) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const QwenConfig config = micro_config();
  QwenVL reference(config);
  init_weights(*reference, 11);
  {
    at::NoGradGuard no_grad;
    for (auto& param : reference->parameters()) {
      if (param.dim() >= 2) param.mul_(10);
    }
  }
  reference->to(at::kDouble);
  const Outputs expected = run(reference, config, at::kCPU, at::kDouble);

  QwenVL cuda64 = make_model(config, at::kCUDA, at::kDouble, reference);
  expect_match(run(cuda64, config, at::kCUDA, at::kDouble), expected, 1e-6, "cuda float64");
  // cuDNN convolutions (the patch embedding) default to TF32, 10 mantissa bits: ~1e-3 off float32.
  at::globalContext().setAllowTF32CuDNN(false);
  at::globalContext().setAllowTF32CuBLAS(false);
  QwenVL cuda32 = make_model(config, at::kCUDA, at::kFloat, reference);
  EXPECT_EQ(make_default_attention(at::kCUDA)->name(), "fused");
  expect_match(run(cuda32, config, at::kCUDA, at::kFloat), expected, 1e-4, "cuda float32 (fused)");
}

}  // namespace
}  // namespace lvrl::model
