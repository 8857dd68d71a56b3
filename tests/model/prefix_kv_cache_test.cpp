// The shared-prefix KV cache and chunked prefill against recomputing every sequence from scratch
// (model->hidden_states over prompt + answer so far, no cache) and against G independent prefills.
// fp32 micro model; tolerance 1e-5 relative on logits (the bound the rollout issue sets).
#include "model/prefix_kv_cache.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"
#include "core/tensor_compare.h"
#include "model/qwen_vl.h"
#include "tests/model/micro_model.h"

namespace lvrl::model {
namespace {

using testing_model::micro_config;
using testing_model::random_model;
using testing_model::video_prompt;

constexpr double kTolerance = 1e-5;

struct Prompt {
  at::Tensor ids;     // [S]
  at::Tensor pixels;  // undefined for a text-only prompt
  GridTHW grid{};
};

ModelInput model_input(const Prompt& prompt, const std::vector<int64_t>& answer = {}) {
  ModelInput input;
  input.input_ids = at::cat({prompt.ids, at::tensor(answer, at::kLong)}).unsqueeze(0);
  if (prompt.pixels.defined()) {
    input.pixel_values_videos = prompt.pixels;
    input.video_grids = {prompt.grid};
  }
  return input;
}

// Next-token logits after prompt + answer, without any cache: [V].
at::Tensor recomputed_logits(QwenVLImpl& model, const Prompt& prompt, const std::vector<int64_t>& answer) {
  at::Tensor hidden = model.hidden_states(model_input(prompt, answer));
  return model.logits(hidden[0][hidden.size(1) - 1]);
}

Prompt video_prompt_of(const QwenConfig& config, int64_t before, int64_t after, uint64_t seed) {
  const GridTHW grid{2, 4, 4};
  at::manual_seed(seed);
  return {video_prompt(config, grid, before, after, seed),
          at::randn({grid[0] * grid[1] * grid[2], config.vision.patch_dim()}), grid};
}

// Row r's token at step s: fixed, different per row, never a vision id.
int64_t token_of(int64_t row, int64_t step) {
  return 1 + (row * 37 + step * 11) % 140;
}

TEST(SharedPrefixKVCache, FourRowsSharingAPrefixEqualFourIndependentPrefills) {
  const QwenConfig config = micro_config();
  QwenVL model = random_model(config, 41, at::kFloat);
  at::NoGradGuard no_grad;
  const Prompt prompt = video_prompt_of(config, 3, 5, 7);
  const int64_t group = 4, steps = 6, seq = prompt.ids.size(0);

  PrefilledPrompt prefilled = prefill_prompt(*model, model_input(prompt));
  SharedPrefixKVCache shared(config.text, steps, at::kFloat, at::kCPU);
  EXPECT_EQ(shared.add_rows(prefilled.prefix, group), 0);

  // The reference: the prompt prefilled four times into a dense cache.
  ModelInput four;
  four.input_ids = prompt.ids.unsqueeze(0).repeat({group, 1});
  four.pixel_values_videos = prompt.pixels.repeat({group, 1});
  four.video_grids = std::vector<GridTHW>(group, prompt.grid);
  DenseKVCache dense(config.text, group, seq + steps, at::kFloat, at::kCPU);
  at::Tensor dense_logits = model->prefill(four, dense);
  for (int64_t row = 0; row < group; ++row) {
    EXPECT_LE(max_relative_difference(prefilled.logits, dense_logits[row]), kTolerance);
  }
  for (int64_t step = 0; step < steps; ++step) {
    std::vector<int64_t> tokens(group);
    for (int64_t row = 0; row < group; ++row) tokens[row] = token_of(row, step);
    const at::Tensor ids = at::tensor(tokens, at::kLong);
    at::Tensor got = model->decode(ids, shared);
    at::Tensor expected = model->decode(ids, dense);
    for (int64_t row = 0; row < group; ++row) {
      SCOPED_TRACE(fmt::format("row {} step {}", row, step));
      EXPECT_LE(max_relative_difference(got[row], expected[row]), kTolerance);
    }
  }
  // K/V held: one prompt plus four answers' blocks, against four prompts plus answers.
  const int64_t per_token = dense.bytes() / (group * (seq + steps));
  EXPECT_EQ(shared.bytes(), per_token * (seq + group * steps));
}

// Two prompts with their own G in one batch; rows leave mid-way and a third prompt's rows join.
TEST(SharedPrefixKVCache, RowsLeaveAndJoinARunningBatch) {
  const QwenConfig config = micro_config(/*tied=*/true);
  QwenVL model = random_model(config, 43, at::kFloat);
  at::NoGradGuard no_grad;
  std::vector<Prompt> prompts = {video_prompt_of(config, 2, 4, 1),
                                 {at::randint(1, 150, {7}, at::kLong)},
                                 video_prompt_of(config, 6, 1, 2)};
  SharedPrefixKVCache cache(config.text, 8, at::kFloat, at::kCPU);
  struct Row {
    int prompt;
    std::vector<int64_t> answer;
  };
  std::vector<Row> rows;
  std::vector<at::Tensor> first_logits;
  auto join = [&](int prompt, int64_t count) {
    PrefilledPrompt prefilled = prefill_prompt(*model, model_input(prompts[prompt]), /*chunk=*/5);
    EXPECT_LE(max_relative_difference(prefilled.logits, recomputed_logits(*model, prompts[prompt], {})),
              kTolerance);
    cache.add_rows(prefilled.prefix, count);
    for (int64_t i = 0; i < count; ++i) rows.push_back({prompt, {}});
  };
  join(0, 2);
  join(1, 3);
  for (int64_t step = 0; step < 7; ++step) {
    if (step == 2) {  // rows 1 and 3 finish; the batch is compacted
      cache.keep_rows({0, 2, 4});
      rows = {rows[0], rows[2], rows[4]};
    }
    if (step == 4) join(2, 2);
    std::vector<int64_t> tokens;
    for (size_t row = 0; row < rows.size(); ++row) {
      tokens.push_back(token_of(static_cast<int64_t>(row) + rows[row].prompt, step));
      rows[row].answer.push_back(tokens.back());
    }
    at::Tensor got = model->decode(at::tensor(tokens, at::kLong), cache);
    for (size_t row = 0; row < rows.size(); ++row) {
      SCOPED_TRACE(fmt::format("row {} (prompt {}) step {}", row, rows[row].prompt, step));
      at::Tensor expected = recomputed_logits(*model, prompts[rows[row].prompt], rows[row].answer);
      EXPECT_LE(max_relative_difference(got[static_cast<int64_t>(row)], expected), kTolerance);
    }
  }
}

TEST(Prefill, InChunksEqualsOnePass) {
  const QwenConfig config = micro_config();
  QwenVL model = random_model(config, 47, at::kFloat);
  at::NoGradGuard no_grad;
  const Prompt prompt = video_prompt_of(config, 4, 6, 3);  // 20 tokens, the video block spans chunks
  const int64_t seq = prompt.ids.size(0);
  for (int64_t chunk : {1, 3, 7, 19, 20, 64}) {
    SCOPED_TRACE(fmt::format("chunk {}", chunk));
    DenseKVCache cache(config.text, 1, seq + 1, at::kFloat, at::kCPU);
    at::Tensor logits = model->prefill(model_input(prompt), cache, chunk);
    EXPECT_EQ(cache.length(0), seq);
    EXPECT_LE(max_relative_difference(logits[0], recomputed_logits(*model, prompt, {})), kTolerance);
    at::Tensor next = model->decode(at::full({1}, 42, at::kLong), cache);
    EXPECT_LE(max_relative_difference(next[0], recomputed_logits(*model, prompt, {42})), kTolerance);
  }
}

TEST(SharedPrefixKVCache, CapacityIsChecked) {
  const QwenConfig config = micro_config();
  QwenVL model = random_model(config, 3, at::kFloat);
  at::NoGradGuard no_grad;
  SharedPrefixKVCache cache(config.text, 2, at::kFloat, at::kCPU);
  cache.add_rows(prefill_prompt(*model, model_input({at::randint(1, 150, {4}, at::kLong)})).prefix, 1);
  model->decode(at::full({1}, 5, at::kLong), cache);
  model->decode(at::full({1}, 6, at::kLong), cache);
  EXPECT_THROW(model->decode(at::full({1}, 7, at::kLong), cache), InputError);
}

}  // namespace
}  // namespace lvrl::model
