// Generation over P sequence-parallel ranks (real Gloo processes) against one rank: the prompt (a
// video block and text) prefilled with SP attention, its K/V left sharded, 16 decode steps with the
// ranks' partial attention merged by log-sum-exp, two prompts of G = 2 rows each in one batch.
// Teacher-forced (every rank feeds the same fixed tokens): log-probs within 1e-5 of a single-process
// recomputation without any cache. Greedy: the tokens equal one rank's greedy tokens wherever the
// top-2 margin exceeds 1e-4 (the first step below it ends the comparison of that row). fp32.
#include "sp/decode_cache.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "model/prefix_kv_cache.h"
#include "model/qwen_vl.h"
#include "model/token_logprobs.h"
#include "tests/model/micro_model.h"
#include "tests/support/multi_rank.h"

namespace lvrl::sp {
namespace {

using test::ranks_succeeded;
using test::run_ranks;

constexpr int64_t kSteps = 16;
constexpr double kLogprobTolerance = 1e-5;
constexpr double kMargin = 1e-4;

struct Prompts {
  std::vector<model::ModelInput> inputs;  // two prompts, video rows as embeddings
};

Prompts make_prompts(model::QwenVLImpl& model) {
  const model::QwenConfig& config = model.config();
  Prompts prompts;
  const model::GridTHW grid{2, 4, 4};
  for (int p = 0; p < 2; ++p) {
    model::ModelInput input;
    input.input_ids = testing_model::video_prompt(config, grid, 3 + 4 * p, 5 - 2 * p, 9 + p).unsqueeze(0);
    at::manual_seed(20 + p);
    input.video_embeds =
        at::randn({grid[0] * grid[1] * grid[2] / config.vision.merge_units(), config.text.hidden_size});
    input.video_grids = {grid};
    prompts.inputs.push_back(input);
  }
  return prompts;
}

// Row r of prompt p is fed token_of(p, r, step) at each step.
int64_t token_of(int64_t prompt, int64_t row, int64_t step) {
  return 1 + (prompt * 53 + row * 29 + step * 13) % 140;
}

// log p(next) at each step for each of the 4 rows, [4, kSteps]: the prefill's logits predict the
// first fed token, each decode's the next one.
at::Tensor teacher_forced(model::QwenVLImpl& model, const Prompts& prompts, model::KVCache& cache,
                          const std::vector<at::Tensor>& prefill_logits) {
  at::Tensor out = at::zeros({4, kSteps}, at::kDouble);
  at::Tensor logits = at::stack({prefill_logits[0], prefill_logits[0], prefill_logits[1], prefill_logits[1]});
  for (int64_t step = 0; step < kSteps; ++step) {
    std::vector<int64_t> tokens;
    for (int64_t b = 0; b < 4; ++b) tokens.push_back(token_of(b / 2, b % 2, step));
    const at::Tensor ids = at::tensor(tokens, at::kLong);
    out.select(1, step).copy_(at::log_softmax(logits, -1).gather(1, ids.unsqueeze(1)).squeeze(1));
    if (step + 1 < kSteps) logits = model.decode(ids, cache);
  }
  (void)prompts;
  return out;
}

// Greedy tokens (among the text ids 0..149) and the top-2 margin at each step, [4, kSteps] each.
std::pair<at::Tensor, at::Tensor> greedy(model::QwenVLImpl& model, model::KVCache& cache,
                                         const std::vector<at::Tensor>& prefill_logits) {
  at::Tensor tokens = at::zeros({4, kSteps}, at::kLong), margins = at::zeros({4, kSteps}, at::kDouble);
  at::Tensor logits = at::stack({prefill_logits[0], prefill_logits[0], prefill_logits[1], prefill_logits[1]});
  for (int64_t step = 0; step < kSteps; ++step) {
    logits.narrow(1, 150, logits.size(1) - 150).fill_(-INFINITY);  // text ids only (as the engine's mask)
    const auto top = logits.topk(2, -1);
    const at::Tensor next = std::get<1>(top).select(1, 0);
    tokens.select(1, step).copy_(next);
    margins.select(1, step).copy_(std::get<0>(top).select(1, 0) - std::get<0>(top).select(1, 1));
    if (step + 1 < kSteps) logits = model.decode(next, cache);
  }
  return {tokens, margins};
}

TEST(SpDecodeWorker, MatchesOneRank) {
  LVRL_RANK_WORKER_ONLY();
  const int ranks = test::worker_env_int("SP_P");
  const SpMode mode = parse_sp_mode(test::worker_env("SP_MODE"));
  const int ulysses = mode == SpMode::Ulysses ? ranks : 1, ring = mode == SpMode::Ulysses ? 1 : ranks;
  auto mesh = Mesh::create(DistributedEnv::from_environment(), {ranks, ulysses, ring}, c10::kCPU);
  model::QwenVL model = testing_model::random_model(testing_model::micro_config(), 31, at::kFloat);
  at::NoGradGuard no_grad;
  const Prompts prompts = make_prompts(*model);
  const model::TextConfig& text = model->config().text;

  // The reference: one rank, no cache, every row's whole sequence recomputed.
  at::Tensor reference = at::zeros({4, kSteps}, at::kDouble);
  for (int64_t b = 0; b < 4; ++b) {
    const model::ModelInput& prompt = prompts.inputs[b / 2];
    std::vector<int64_t> fed;
    for (int64_t step = 0; step < kSteps; ++step) fed.push_back(token_of(b / 2, b % 2, step));
    model::ModelInput full = prompt;
    full.input_ids = at::cat({prompt.input_ids[0], at::tensor(fed, at::kLong)}).unsqueeze(0);
    const int64_t seq = prompt.input_ids.size(1);
    at::Tensor hidden = model->hidden_states(full)[0].narrow(0, seq - 1, kSteps);
    reference[b].copy_(model::token_logprobs(hidden, model->lm_head_weight(), at::tensor(fed, at::kLong)));
  }
  // One rank, shared-prefix cache: the greedy reference.
  std::vector<at::Tensor> local_logits;
  model::SharedPrefixKVCache local(text, kSteps, at::kFloat, at::kCPU);
  for (const auto& input : prompts.inputs) {
    model::PrefilledPrompt prefilled = model::prefill_prompt(*model, input);
    local.add_rows(prefilled.prefix, 2);
    local_logits.push_back(prefilled.logits);
  }
  const auto [local_tokens, local_margins] = greedy(*model, local, local_logits);

  // P ranks, twice: teacher-forced, then greedy.
  auto sharded_run = [&](auto&& decode) {
    auto cache = make_sharded_decode_cache(text, kSteps, at::kFloat, at::kCPU, mesh);
    std::vector<at::Tensor> logits;
    for (const auto& input : prompts.inputs) {
      model::PrefilledPrompt prefilled = prefill_prompt_sharded(*model, input, mesh, mode);
      cache->add_rows(prefilled.prefix, 2);
      logits.push_back(prefilled.logits);
    }
    return decode(*cache, logits);
  };
  const at::Tensor forced = sharded_run([&](model::KVCache& cache, const std::vector<at::Tensor>& logits) {
    return teacher_forced(*model, prompts, cache, logits);
  });
  const auto [tokens, margins] =
      sharded_run([&](model::KVCache& cache, const std::vector<at::Tensor>& logits) {
        return greedy(*model, cache, logits);
      });

  const double logprob_error = (forced - reference).abs().max().item<double>();
  EXPECT_LE(logprob_error, kLogprobTolerance);
  int64_t compared = 0;
  for (int64_t b = 0; b < 4; ++b) {
    for (int64_t step = 0; step < kSteps; ++step) {
      if (local_margins[b][step].item<double>() <= kMargin) break;
      EXPECT_EQ(tokens[b][step].item<int64_t>(), local_tokens[b][step].item<int64_t>())
          << "row " << b << " step " << step;
      ++compared;
    }
  }
  EXPECT_GE(compared, 4 * kSteps / 2);  // a comparison that checks next to nothing would pass vacuously
  test::write_result(
      fmt::format("max |Δ logprob| {:.3g}, {} greedy tokens compared", logprob_error, compared));
}

struct DecodeCase {
  const char* mode;
  int ranks;
};

class SpDecode : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(SpDecode, MatchesOneRank) {
  const DecodeCase c = GetParam();
  auto run = run_ranks(c.ranks, "SpDecodeWorker.MatchesOneRank",
                       {{"SP_MODE", c.mode}, {"SP_P", std::to_string(c.ranks)}});
  ASSERT_TRUE(ranks_succeeded(run));
  std::cout << c.mode << " P=" << c.ranks << ": " << run.results[0] << "\n";
}

INSTANTIATE_TEST_SUITE_P(Modes, SpDecode,
                         ::testing::Values(DecodeCase{"ulysses", 2}, DecodeCase{"ring", 2},
                                           DecodeCase{"ulysses", 3}, DecodeCase{"ring", 3}),
                         [](const auto& info) {
                           return fmt::format("{}_{}", info.param.mode, info.param.ranks);
                         });

}  // namespace
}  // namespace lvrl::sp
