// Rollout test support: a `tiny` or `small` preset Qwen2.5-VL with the real Qwen tokenizer (fetched
// once by tests/model/tokenizer_reference.mjs), weights scaled so greedy choices are clear, and
// video prompts rendered by the one prompt renderer with random video rows in place of a video.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "model/chat_template.h"
#include "model/qwen_vl.h"
#include "model/tokenizer.h"
#include "tests/model/qwen_reference.h"

namespace lvrl::testing_rollout {

inline model::QwenVL preset_model(const std::string& preset, uint64_t seed) {
  model::QwenVL model(model::QwenConfig::preset(preset));
  model::init_weights(*model, seed);
  at::NoGradGuard no_grad;
  at::manual_seed(seed);
  for (auto& param : model->parameters()) {
    if (param.dim() >= 2) param.mul_(8);
    if (param.dim() == 1) param.add_(at::rand(param.sizes(), at::kFloat).sub_(0.5).mul_(0.2));
  }
  return model;
}

inline const model::Tokenizer& tokenizer() {
  return testing_model::qwen_tokenizer();
}

// A question about a video of `frames` temporal patches (grid {frames, 4, 4}: 4 tokens each), its
// video rows random (seeded).
inline model::ModelInput video_question(const model::QwenVLImpl& model, const std::string& question,
                                        int64_t frames, uint64_t seed) {
  model::PromptRequest request;
  request.question = question;
  request.options = {"A. yes", "B. no"};
  request.grid_thw = {frames, 4, 4};
  const model::VideoPrompt prompt = model::render_prompt(tokenizer(), request, model::PromptOptions{});
  model::ModelInput input;
  input.input_ids =
      at::tensor(std::vector<int64_t>(prompt.ids.begin(), prompt.ids.end()), at::kLong).unsqueeze(0);
  at::Generator generator = at::detail::createCPUGenerator(seed);
  input.video_embeds = at::randn({prompt.video_tokens, model.config().text.hidden_size}, generator,
                                 at::TensorOptions().dtype(at::kFloat));
  input.video_grids = {request.grid_thw};
  return input;
}

}  // namespace lvrl::testing_rollout
