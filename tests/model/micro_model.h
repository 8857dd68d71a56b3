// Model test support: a micro configuration of the Qwen2.5-VL architecture (small enough for float64
// finite differences, every feature on: GQA, M-RoPE sections, window + full attention blocks, untied
// or tied head) and a prompt holding one video block.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "model/qwen_config.h"
#include "model/qwen_vl.h"
#include "model/rope.h"

namespace lvrl::testing_model {

inline model::QwenConfig micro_config(bool tied = false) {
  model::QwenConfig config;
  config.vision.depth = 2;
  config.vision.hidden_size = 8;
  config.vision.intermediate_size = 12;
  config.vision.num_heads = 2;
  config.vision.fullatt_block_indexes = {1};
  config.vision.out_hidden_size = 16;
  config.text.vocab_size = 200;
  config.text.hidden_size = 16;
  config.text.intermediate_size = 24;
  config.text.num_hidden_layers = 2;
  config.text.num_attention_heads = 2;
  config.text.num_key_value_heads = 1;
  config.text.mrope_section = {2, 1, 1};
  config.text.tie_word_embeddings = tied;
  config.image_token_id = 190;
  config.video_token_id = 191;
  config.vision_start_token_id = 192;
  config.vision_end_token_id = 193;
  config.bos_token_id = 194;
  config.eos_token_id = 195;
  config.torch_dtype = "float32";
  return config;
}

// text ids (1..150) ⊕ <vs> ⊕ grid.t·h·w/4 × <video_pad> ⊕ <ve> ⊕ more text; ids [S] int64.
inline at::Tensor video_prompt(const model::QwenConfig& config, const model::GridTHW& grid, int64_t before,
                               int64_t after, uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  at::Tensor head = at::randint(1, 150, {before}, generator, at::kLong);
  at::Tensor tail = at::randint(1, 150, {after}, generator, at::kLong);
  const int64_t tokens = grid[0] * grid[1] * grid[2] / config.vision.merge_units();
  return at::cat({head, at::full({1}, config.vision_start_token_id, at::kLong),
                  at::full({tokens}, config.video_token_id, at::kLong),
                  at::full({1}, config.vision_end_token_id, at::kLong), tail});
}

// A micro model with weights large enough that its logits differ clearly between tokens; a function
// of the seed alone.
inline model::QwenVL random_model(const model::QwenConfig& config, uint64_t seed, at::ScalarType dtype) {
  model::QwenVL model(config);
  model::init_weights(*model, seed);
  at::NoGradGuard no_grad;
  at::manual_seed(seed);  // the same model in every process of a multi-rank test
  for (auto& param : model->parameters()) {
    if (param.dim() >= 2) param.mul_(10);
    if (param.dim() == 1)
      param.add_(at::rand(param.sizes(), at::kFloat).sub_(0.5).mul_(0.2));  // norms and biases
  }
  model->to(dtype);
  return model;
}

}  // namespace lvrl::testing_model
