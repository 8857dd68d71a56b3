// The generation engine against recomputation without any cache: the trainer's log-prob function
// (model::token_logprobs over the whole prompt + answer, one sequence at a time — another batch
// composition than the engine's) must agree with the log-probs the engine recorded within 1e-5
// (`tiny`) / 1e-4 (`small`), and greedy answers must be the argmax of the recomputed logits
// wherever the top-2 margin exceeds 1e-4. Batching, seeds, the token mask and weight swaps are
// checked against the engine run one request at a time.
#include "rollout/engine.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/token_logprobs.h"
#include "tests/rollout/engine_support.h"

namespace lvrl::rollout {
namespace {

using testing_rollout::preset_model;
using testing_rollout::tokenizer;
using testing_rollout::video_question;

constexpr double kMargin = 1e-4;

GenerationRequest request_of(const std::string& id, model::ModelInput prompt, double temperature,
                             int64_t max_new_tokens, uint64_t seed, int64_t n = 1) {
  GenerationRequest request;
  request.id = id;
  request.prompt = std::move(prompt);
  request.sampling.temperature = temperature;
  request.sampling.max_new_tokens = max_new_tokens;
  request.sampling.seed = seed;
  request.n = n;
  return request;
}

struct Recomputed {
  at::Tensor logprobs;  // [T] the trainer's function at the sampling temperature
  at::Tensor logits;    // [T, V] next-token logits before each answer token
};

// Prompt + answer in one forward pass, no cache.
Recomputed recompute(model::QwenVLImpl& model, const model::ModelInput& prompt, const GeneratedAnswer& answer,
                     double temperature) {
  model::ModelInput full = prompt;
  const at::Tensor answer_ids = at::tensor(answer.token_ids, at::kLong);
  full.input_ids = at::cat({prompt.input_ids[0], answer_ids}).unsqueeze(0);
  const int64_t seq = prompt.input_ids.size(1), length = answer_ids.size(0);
  at::Tensor hidden = model.hidden_states(full)[0].narrow(0, seq - 1, length);
  model::LogprobOptions options;
  options.temperature = temperature > 0 ? temperature : 1.0;
  return {model::token_logprobs(hidden, model.lm_head_weight(), answer_ids, options), model.logits(hidden)};
}

// Logits [V] with the ids no answer may contain (vision placeholders, rows past the tokenizer's
// vocabulary) at −inf, for the reference argmax.
at::Tensor text_only(at::Tensor logits) {
  const int64_t vocab = static_cast<int64_t>(tokenizer().vocab_size());
  logits = logits.clone();
  logits.narrow(0, vocab, logits.size(0) - vocab).fill_(-INFINITY);
  for (const char* name :
       {"<|video_pad|>", "<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>"}) {
    logits[tokenizer().id_of(name)] = -INFINITY;
  }
  return logits;
}

double max_logprob_difference(const GeneratedAnswer& answer, const at::Tensor& recomputed) {
  return (at::tensor(answer.logprobs, at::kFloat).to(at::kDouble) - recomputed.to(at::kDouble))
      .abs()
      .max()
      .item<double>();
}

// Greedy with the cache, three video prompts of different lengths in one batch (prefilled in chunks
// of 24 tokens), against the argmax and log-probs of recomputing each sequence alone.
TEST(Engine, GreedyWithTheCacheEqualsRecomputation) {
  model::QwenVL model = preset_model("tiny", 3);
  at::NoGradGuard no_grad;
  EngineOptions options;
  options.prefill_chunk = 24;
  Engine engine(model, tokenizer(), options);
  std::vector<GenerationRequest> requests;
  const int64_t frames[] = {1, 3, 6};
  for (int i = 0; i < 3; ++i) {
    requests.push_back(
        request_of(fmt::format("q{}", i),
                   video_question(*model, std::string(1 + 20 * i, 'x') + " happens?", frames[i], i),
                   /*temperature=*/0, /*max_new_tokens=*/12, 0));
  }
  const std::vector<GenerationRequest> prompts = requests;
  const std::vector<GenerationResult> results = engine.generate(requests);
  ASSERT_EQ(results.size(), 3u);
  int64_t compared = 0;
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(results[i].id);
    ASSERT_EQ(results[i].answers.size(), 1u);
    const GeneratedAnswer& answer = results[i].answers[0];
    ASSERT_FALSE(answer.token_ids.empty());
    EXPECT_EQ(answer.logprobs.size(), answer.token_ids.size());
    const Recomputed reference = recompute(*model, prompts[i].prompt, answer, 1.0);
    EXPECT_LE(max_logprob_difference(answer, reference.logprobs), 1e-5);
    for (size_t t = 0; t < answer.token_ids.size(); ++t) {
      const auto top = text_only(reference.logits[t]).topk(2);
      if ((std::get<0>(top)[0] - std::get<0>(top)[1]).item<double>() <= kMargin) break;
      EXPECT_EQ(answer.token_ids[t], std::get<1>(top)[0].item<int64_t>()) << "token " << t;
      ++compared;
    }
  }
  EXPECT_GE(compared, 12);
}

class EngineLogprobs : public ::testing::TestWithParam<std::pair<const char*, double>> {};

// Sampled answers (temperature 0.7, top-p 0.9, G = 3): the recorded full-softmax log-probs against the
// trainer's recomputation at the same temperature.
TEST_P(EngineLogprobs, AgreeWithTheTrainersRecomputation) {
  const auto [preset, tolerance] = GetParam();
  model::QwenVL model = preset_model(preset, 5);
  at::NoGradGuard no_grad;
  Engine engine(model, tokenizer(), EngineOptions{});
  GenerationRequest request = request_of("q", video_question(*model, "What is shown?", 2, 1), 0.7, 10, 17, 3);
  request.sampling.top_p = 0.9;
  const model::ModelInput prompt = request.prompt;
  const GenerationResult result = engine.generate({request})[0];
  ASSERT_EQ(result.answers.size(), 3u);
  double worst = 0;
  for (const GeneratedAnswer& answer : result.answers) {
    worst = std::max(worst, max_logprob_difference(answer, recompute(*model, prompt, answer, 0.7).logprobs));
    for (size_t t = 0; t < answer.token_ids.size(); ++t) {
      EXPECT_GE(answer.sampled_logprobs[t], answer.logprobs[t] - 1e-5);  // truncation only raises it
    }
  }
  EXPECT_LE(worst, tolerance);
  std::cout << preset << ": max |Δ logprob| " << worst << "\n";
}

INSTANTIATE_TEST_SUITE_P(Presets, EngineLogprobs,
                         ::testing::Values(std::make_pair("tiny", 1e-5), std::make_pair("small", 1e-4)),
                         [](const auto& info) { return std::string(info.param.first); });

// One request's answers are the same alone or among five others with other prompts and parameters.
TEST(Engine, ASeedReproducesARowAloneOrAmongOthers) {
  model::QwenVL model = preset_model("tiny", 7);
  at::NoGradGuard no_grad;
  const GenerationRequest lone = request_of("lone", video_question(*model, "Which?", 2, 3), 1.0, 10, 99, 2);
  Engine alone(model, tokenizer(), EngineOptions{});
  const GenerationResult expected = alone.generate({lone})[0];

  std::vector<GenerationRequest> crowd;
  for (int i = 0; i < 5; ++i) {
    crowd.push_back(request_of(fmt::format("other{}", i),
                               video_question(*model, std::string(i + 1, 'y'), 1 + i, 10 + i), 0.5 + 0.2 * i,
                               4 + 3 * i, 1000 + i, 1 + i % 2));
    crowd.back().sampling.top_k = i * 7;
  }
  crowd.insert(crowd.begin() + 2, lone);
  Engine together(model, tokenizer(), EngineOptions{});
  const std::vector<GenerationResult> results = together.generate(crowd);
  const GenerationResult& got = results[2];
  ASSERT_EQ(got.id, "lone");
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(got.answers[i].token_ids, expected.answers[i].token_ids) << "answer " << i;
    EXPECT_EQ(got.answers[i].seed, 99u + i);
    for (size_t t = 0; t < got.answers[i].logprobs.size(); ++t) {
      EXPECT_NEAR(got.answers[i].logprobs[t], expected.answers[i].logprobs[t], 1e-5);
    }
  }
  EXPECT_NE(got.answers[0].token_ids, got.answers[1].token_ids);  // two seeds, two answers
}

// A model whose LM head favours the vision placeholders and the padded vocabulary rows never
// samples them, greedy or at temperature 1.
TEST(Engine, NeverSamplesVisionPlaceholdersOrPaddedRows) {
  model::QwenVL model = preset_model("tiny", 9);
  at::NoGradGuard no_grad;
  const at::Tensor weight = model->lm_head_weight();
  std::vector<int64_t> banned;
  for (const char* name :
       {"<|video_pad|>", "<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>"}) {
    banned.push_back(tokenizer().id_of(name));
  }
  const int64_t vocab = static_cast<int64_t>(tokenizer().vocab_size());
  for (int64_t id = vocab; id < weight.size(0); ++id) banned.push_back(id);
  // Every row's logit becomes a small multiple of the hidden state's projection on one direction;
  // the banned rows get a far larger one.
  const at::Tensor direction = at::randn({weight.size(1)});
  weight.copy_(direction.unsqueeze(0).expand_as(weight) * 0.01);
  for (int64_t id : banned) weight[id].copy_(direction * 50);
  Engine engine(model, tokenizer(), EngineOptions{});
  std::vector<GenerationRequest> requests = {
      request_of("greedy", video_question(*model, "?", 1, 1), 0, 16, 0),
      request_of("sampled", video_question(*model, "?", 1, 1), 1.0, 16, 5, 4)};
  const std::set<int64_t> banned_set(banned.begin(), banned.end());
  for (const GenerationResult& result : engine.generate(requests)) {
    for (const GeneratedAnswer& answer : result.answers) {
      ASSERT_FALSE(answer.token_ids.empty()) << result.id;
      for (int64_t id : answer.token_ids)
        EXPECT_EQ(banned_set.count(id), 0u) << result.id << " sampled " << id;
    }
  }
}

// Rows finish independently and leave the batch: with room for 4 rows, three requests of 2 answers
// each run as 2 + 1 requests and the third joins when the first finishes. Every answer equals the
// request generated alone, and the decode steps computed exactly the running rows' tokens.
TEST(Engine, RowsLeaveAndRequestsJoinTheRunningBatch) {
  model::QwenVL model = preset_model("tiny", 11);
  at::NoGradGuard no_grad;
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 3; ++i) {
    requests.push_back(request_of(fmt::format("r{}", i),
                                  video_question(*model, std::string(i + 2, 'z'), 1 + i, i), 0.9, 5 + 6 * i,
                                  40 + i, 2));
  }
  EngineOptions options;
  options.max_batch_rows = 4;
  Engine batched(model, tokenizer(), options);
  const std::vector<GenerationResult> results = batched.generate(requests);
  int64_t tokens_after_first = 0;
  for (int i = 0; i < 3; ++i) {
    Engine alone(model, tokenizer(), EngineOptions{});
    const GenerationResult expected = alone.generate({requests[i]})[0];
    for (int a = 0; a < 2; ++a) {
      EXPECT_EQ(results[i].answers[a].token_ids, expected.answers[a].token_ids) << requests[i].id << " " << a;
      tokens_after_first += static_cast<int64_t>(results[i].answers[a].token_ids.size()) - 1;
    }
  }
  EXPECT_EQ(batched.stats().decoded_tokens, tokens_after_first);  // finished rows cost nothing
}

// A weight swap waits for the running answers: the first request's answer is entirely the old
// policy's, the one submitted after the swap entirely the new one's.
TEST(Engine, AWeightSwapDrainsTheBatchFirst) {
  model::QwenVL old_model = preset_model("tiny", 13), new_model = preset_model("tiny", 14);
  at::NoGradGuard no_grad;
  const GenerationRequest first = request_of("first", video_question(*old_model, "a", 2, 1), 0, 10, 0);
  const GenerationRequest second = request_of("second", video_question(*old_model, "b", 2, 2), 0, 10, 0);
  auto alone = [&](model::QwenVL& model, const GenerationRequest& request) {
    Engine engine(model, tokenizer(), EngineOptions{});
    return engine.generate({request})[0].answers[0].token_ids;
  };
  model::QwenVL working = preset_model("tiny", 13);
  Engine engine(working, tokenizer(), EngineOptions{});
  engine.submit(first);
  engine.step();
  engine.step();
  engine.swap_weights([&](model::QwenVLImpl& model) {
    auto target = model.parameters();
    auto source = new_model->parameters();
    for (size_t i = 0; i < target.size(); ++i) target[i].copy_(source[i]);
  });
  engine.submit(second);
  std::vector<GenerationResult> results;
  while (!engine.idle()) {
    for (GenerationResult& result : engine.step()) results.push_back(std::move(result));
  }
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].id, "first");
  EXPECT_EQ(results[0].answers[0].token_ids, alone(old_model, first));
  EXPECT_EQ(results[1].answers[0].token_ids, alone(new_model, second));
}

TEST(Engine, RefusesARequestLargerThanTheBatch) {
  model::QwenVL model = preset_model("tiny", 1);
  EngineOptions options;
  options.max_batch_rows = 4;
  Engine engine(model, tokenizer(), options);
  EXPECT_THROW(engine.submit(request_of("big", video_question(*model, "?", 1, 1), 1.0, 4, 0, 5)), InputError);
}

}  // namespace
}  // namespace lvrl::rollout
