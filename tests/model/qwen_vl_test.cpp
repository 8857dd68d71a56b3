// The whole Qwen2.5-VL module: gradients against finite differences (float64), KV-cached decoding
// against full recomputation, chunked log-probs against a dense reference, parameter counts against
// an instantiated model, and the video-embedding scatter's checks.
#include "model/qwen_vl.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <random>

#include "core/error.h"
#include "core/tensor_compare.h"
#include "model/model_info.h"
#include "tests/model/micro_model.h"

namespace lvrl::model {
namespace {

using testing_model::micro_config;
using testing_model::random_model;
using testing_model::video_prompt;

// init_weights' std 0.02 leaves a micro model's signals tiny; scale matrices up so every part of the
// network contributes measurably to the loss.
TEST(QwenVL, GradientsMatchFiniteDifferencesFloat64) {
  const QwenConfig config = micro_config();
  at::manual_seed(3);
  QwenVL model = random_model(config, 11, at::kDouble);
  const GridTHW grid{2, 12, 8};  // windows: 6×4 units → a 2×2 window grid with an empty padding column
  ModelInput input;
  input.input_ids = video_prompt(config, grid, 3, 6, 5).unsqueeze(0);
  input.pixel_values_videos =
      at::randn({grid[0] * grid[1] * grid[2], config.vision.patch_dim()}, at::kDouble);
  input.video_grids = {grid};
  input.second_per_grid_ts = {1.0};
  const int64_t seq = input.input_ids.size(1), scored = 6;
  at::Tensor targets = input.input_ids[0].narrow(0, seq - scored, scored);
  at::Tensor weights = at::randn({scored}, at::kDouble);
  auto loss = [&] {
    at::Tensor hidden = model->hidden_states(input)[0].narrow(0, seq - scored - 1, scored);
    return (token_logprobs(hidden, model->lm_head_weight(), targets) * weights).sum();
  };
  model->zero_grad();
  loss().backward();

  std::mt19937_64 rng(17);
  const double eps = 1e-6;
  int checked = 0;
  for (auto& item : model->named_parameters()) {
    at::Tensor param = item.value();
    at::Tensor grad = item.value().grad();
    ASSERT_TRUE(grad.defined()) << item.key() << " got no gradient";
    at::Tensor flat_grad = grad.reshape(-1);
    // The entry with the largest gradient (never a trivially zero one) and a random one.
    std::vector<int64_t> entries = {flat_grad.abs().argmax().item<int64_t>(),
                                    static_cast<int64_t>(rng() % static_cast<uint64_t>(param.numel()))};
    for (int64_t entry : entries) {
      at::Tensor slot = param.detach().view(-1)[entry];
      const double original = slot.item<double>();
      double plus, minus;
      {
        at::NoGradGuard no_grad;
        slot.fill_(original + eps);
        plus = loss().item<double>();
        slot.fill_(original - eps);
        minus = loss().item<double>();
        slot.fill_(original);
      }
      const double numeric = (plus - minus) / (2 * eps);
      const double analytic = flat_grad[entry].item<double>();
      EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric)))
          << item.key() << "[" << entry << "]";
      ++checked;
    }
    EXPECT_GT(flat_grad.abs().max().item<double>(), 0) << item.key() << " has an all-zero gradient";
  }
  EXPECT_GE(checked, 100);
}

// Greedy decoding through the KV cache (two prompts of different lengths, one with a video, rows
// right-padded) must produce the tokens and logits of recomputing every sequence from scratch.
TEST(QwenVL, CachedGreedyDecodingMatchesRecomputation) {
  const QwenConfig config = micro_config(/*tied=*/true);
  at::manual_seed(5);
  QwenVL model = random_model(config, 23, at::kFloat);
  at::NoGradGuard no_grad;
  const GridTHW grid{2, 4, 4};
  at::Tensor video_ids = video_prompt(config, grid, 3, 4, 7);  // 17 tokens
  at::Tensor text_ids = at::randint(1, 150, {9}, at::kLong);   // 9 tokens
  at::Tensor pixels = at::randn({grid[0] * grid[1] * grid[2], config.vision.patch_dim()});
  const int64_t seq = video_ids.size(0);
  ModelInput prompts;
  prompts.input_ids = at::zeros({2, seq}, at::kLong);
  prompts.input_ids[0].copy_(video_ids);
  prompts.input_ids[1].narrow(0, 0, 9).copy_(text_ids);
  prompts.attention_mask = at::zeros({2, seq}, at::kLong);
  prompts.attention_mask[0].fill_(1);
  prompts.attention_mask[1].narrow(0, 0, 9).fill_(1);
  prompts.pixel_values_videos = pixels;
  prompts.video_grids = {grid};

  const int steps = 6;
  DenseKVCache cache(config.text, 2, seq + steps, at::kFloat, at::kCPU);
  std::vector<at::Tensor> cached_logits = {model->prefill(prompts, cache)};
  std::vector<std::vector<int64_t>> generated(2);
  for (int step = 0; step < steps; ++step) {
    at::Tensor next = cached_logits.back().argmax(-1);
    for (int row = 0; row < 2; ++row) generated[row].push_back(next[row].item<int64_t>());
    if (step + 1 < steps) cached_logits.push_back(model->decode(next, cache));
  }
  for (int row = 0; row < 2; ++row) {
    at::Tensor prompt = row == 0 ? video_ids : text_ids;
    for (int step = 0; step < steps; ++step) {
      ModelInput full;
      at::Tensor ids = at::cat(
          {prompt, at::tensor(std::vector<int64_t>(generated[row].begin(), generated[row].begin() + step),
                              at::kLong)});
      full.input_ids = ids.unsqueeze(0);
      if (row == 0) {
        full.pixel_values_videos = pixels;
        full.video_grids = {grid};
      }
      at::Tensor hidden = model->hidden_states(full);
      at::Tensor expected = model->logits(hidden[0][ids.size(0) - 1]);
      SCOPED_TRACE(fmt::format("row {} step {}", row, step));
      EXPECT_LE(max_relative_difference(cached_logits[step][row], expected), 1e-5);
      EXPECT_EQ(expected.argmax().item<int64_t>(), generated[row][step]);
    }
  }
  EXPECT_EQ(cache.length(0), seq + steps - 1);
  EXPECT_EQ(cache.length(1), 9 + steps - 1);
}

TEST(QwenVL, KVCacheCapacityIsChecked) {
  const QwenConfig config = micro_config();
  DenseKVCache cache(config.text, 1, 4, at::kFloat, at::kCPU);
  at::Tensor k = at::zeros({1, 5, config.text.num_key_value_heads, config.text.head_dim()});
  at::Tensor q = at::zeros({1, 5, config.text.num_attention_heads, config.text.head_dim()});
  EXPECT_THROW(cache.attend(0, q, k, k, *make_blockwise_attention()), InputError);
}

TEST(QwenVL, VideoEmbeddingCountMustMatchThePadTokens) {
  const QwenConfig config = micro_config();
  QwenVL model(config);
  at::Tensor ids = video_prompt(config, {2, 4, 4}, 2, 2, 1).unsqueeze(0);  // 8 pad tokens
  try {
    model->embed(ids, at::zeros({7, config.text.hidden_size}));
    FAIL() << "7 rows for 8 pad tokens accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("8 <|video_pad|> tokens but 7"), std::string::npos) << e.what();
  }
  at::Tensor embeds = at::randn({8, config.text.hidden_size});
  at::Tensor merged = model->embed(ids, embeds);
  EXPECT_TRUE(at::equal(merged[0].narrow(0, 3, 8), embeds));  // rows 3..10 are the pads, in order
}

TEST(TokenLogprobs, MatchDenseLogSoftmaxAndItsGradients) {
  for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    at::manual_seed(9);
    at::Tensor hidden = at::randn({37, 16}, dtype).requires_grad_();
    at::Tensor weight = at::randn({50, 16}, dtype).requires_grad_();
    at::Tensor targets = at::randint(0, 50, {37}, at::kLong);
    at::Tensor upstream = at::randn({37}, dtype);
    LogprobOptions options;
    options.temperature = 0.7;
    options.chunk = 8;  // 37 rows: four full chunks and a partial one
    at::Tensor ours = token_logprobs(hidden, weight, targets, options);
    auto ours_grads = torch::autograd::grad({ours}, {hidden, weight}, {upstream});

    at::Tensor h64 = hidden.detach().to(at::kDouble).requires_grad_();
    at::Tensor w64 = weight.detach().to(at::kDouble).requires_grad_();
    at::Tensor reference =
        at::log_softmax(at::matmul(h64, w64.t()) / 0.7, -1).gather(1, targets.unsqueeze(1)).squeeze(1);
    auto reference_grads = torch::autograd::grad({reference}, {h64, w64}, {upstream.to(at::kDouble)});
    const double tolerance = dtype == at::kDouble ? 1e-12 : 1e-5;
    SCOPED_TRACE(c10::toString(dtype));
    EXPECT_LE(max_relative_difference(ours, reference), tolerance);
    EXPECT_LE(max_relative_difference(ours_grads[0], reference_grads[0]), tolerance);
    EXPECT_LE(max_relative_difference(ours_grads[1], reference_grads[1]), tolerance);
  }
}

TEST(TokenEntropy, MatchesTheDenseFormulaAndItsGradients) {
  for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    at::manual_seed(10);
    at::Tensor hidden = at::randn({37, 16}, dtype).requires_grad_();
    at::Tensor weight = at::randn({50, 16}, dtype).requires_grad_();
    at::Tensor upstream = at::randn({37}, dtype);
    LogprobOptions options;
    options.temperature = 0.7;
    options.chunk = 8;
    at::Tensor ours = token_entropy(hidden, weight, options);
    auto ours_grads = torch::autograd::grad({ours}, {hidden, weight}, {upstream});

    // H = −Σ p log p by autograd in float64, on the dense logits.
    at::Tensor h64 = hidden.detach().to(at::kDouble).requires_grad_();
    at::Tensor w64 = weight.detach().to(at::kDouble).requires_grad_();
    at::Tensor p = at::softmax(at::matmul(h64, w64.t()) / 0.7, -1);
    at::Tensor reference = -(p * p.log()).sum(-1);
    auto reference_grads = torch::autograd::grad({reference}, {h64, w64}, {upstream.to(at::kDouble)});
    const double tolerance = dtype == at::kDouble ? 1e-12 : 1e-5;
    SCOPED_TRACE(c10::toString(dtype));
    EXPECT_LE(max_relative_difference(ours, reference), tolerance);
    EXPECT_LE(max_relative_difference(ours_grads[0], reference_grads[0]), tolerance);
    EXPECT_LE(max_relative_difference(ours_grads[1], reference_grads[1]), tolerance);
  }
}

TEST(ModelInfo, ParameterCountsMatchAnInstantiatedModel) {
  for (const QwenConfig& config : {micro_config(false), micro_config(true), QwenConfig::preset("tiny")}) {
    QwenVL model(config);
    int64_t vision = 0, total = 0;
    for (const auto& item : model->named_parameters()) {
      total += item.value().numel();
      if (item.key().rfind("visual.", 0) == 0) vision += item.value().numel();
    }
    const PartCounts counts = parameter_counts(config);
    EXPECT_EQ(counts.total(), total);
    EXPECT_EQ(counts.vision(), vision);
  }
}

TEST(ModelInfo, EstimatesCountTokensLikeTheProcessor) {
  const QwenConfig config = QwenConfig::preset("7b");
  // 64 frames of 448×448: 32 temporal slices × 32×32 patches, 4 patches per token.
  MemoryEstimate e = estimate_memory(config, 64, 448, 448, 1024, 2);
  EXPECT_EQ(e.patches, 32 * 32 * 32);
  EXPECT_EQ(e.video_tokens, 32 * 16 * 16);
  EXPECT_EQ(e.sequence_tokens, 32 * 16 * 16 + 1024);
  EXPECT_EQ(e.kv_cache_bytes, 2 * 28 * e.sequence_tokens * 4 * 128 * 2);
  EXPECT_EQ(e.video_embedding_bytes, e.video_tokens * 3584 * 2);
  EXPECT_THROW(estimate_memory(config, 64, 450, 448, 0, 2), InputError);
}

}  // namespace
}  // namespace lvrl::model
