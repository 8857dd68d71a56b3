// One optimizer step's gradient on real Gloo ranks against one process computing it directly:
// SP = 2 (zigzag), SP = 2 (Ulysses), U × R = 2 × 2 (hybrid) and DP = 2 must give the single-device
// loss and every decoder parameter's gradient within 1e-10 relative to the global gradient norm
// (float64). The reference runs every answer alone through model->hidden_states and
// token_logprobs, weights its tokens by hand (token-mean or seq-mean-token-mean over the whole step)
// and backpropagates — none of the sharding, micro-batching or shared video rows under test. After
// an AdamW update at lr 1e-2 from each gradient, the parameters agree within 1e-10 relative.
#include "trainer/policy_gradient.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "model/token_logprobs.h"
#include "sp/mesh.h"
#include "tests/model/micro_model.h"
#include "tests/support/multi_rank.h"
#include "trainer/optimizer.h"

namespace lvrl::trainer {
namespace {

using test::ranks_succeeded;
using test::run_ranks;

// Two prompts of G = 3 answers (one with a video, one text-only), answers of different lengths.
TrainBatch make_batch(const model::QwenConfig& config) {
  at::manual_seed(77);
  TrainBatch batch;
  batch.temperature = 0.8;
  const model::GridTHW grid{2, 4, 4};
  batch.videos.push_back({at::randn({8, config.text.hidden_size}, at::kDouble), grid, 0.5});
  const at::Tensor video_prompt = testing_model::video_prompt(config, grid, 3, 4, 5);  // 17 tokens
  const at::Tensor text_prompt = at::randint(1, 150, {6}, at::kLong);
  int64_t group = 0;
  for (const at::Tensor& prompt : {video_prompt, text_prompt}) {
    for (int64_t i = 0; i < 3; ++i) {
      TrainSequence sequence;
      const int64_t answer = 3 + 4 * i + group;
      sequence.ids.assign(prompt.data_ptr<int64_t>(), prompt.data_ptr<int64_t>() + prompt.numel());
      const at::Tensor response = at::randint(1, 150, {answer}, at::kLong);
      sequence.ids.insert(sequence.ids.end(), response.data_ptr<int64_t>(),
                          response.data_ptr<int64_t>() + answer);
      sequence.response_start = prompt.numel();
      sequence.video = group == 0 ? 0 : -1;
      const at::Tensor old = -at::rand({answer}, at::kDouble) * 3 - 1;
      for (int64_t t = 0; t < answer; ++t)
        sequence.old_logprobs.push_back(static_cast<float>(old[t].item<double>()));
      sequence.sampled_logprobs = sequence.old_logprobs;
      sequence.advantage = (i - 1.0) * (group == 0 ? 1.0 : -0.5);
      sequence.group = group;
      batch.sequences.push_back(sequence);
    }
    ++group;
  }
  return batch;
}

// ℓ = −min(ρ·A, clip(ρ, 0.8, 1.3)·A), ρ = exp(log π − log π_old).
at::Tensor ppo_terms(const at::Tensor& logprobs, const at::Tensor& old, const at::Tensor& advantages) {
  const at::Tensor ratio = (logprobs - old).exp();
  return -at::minimum(ratio * advantages, ratio.clamp(0.8, 1.3) * advantages);
}

const TokenLoss kLoss = [](const TokenBatch& tokens) {
  return ppo_terms(tokens.logprobs, tokens.old_logprobs, tokens.advantages);
};

// The single-device step, written directly.
double reference_step(model::QwenVLImpl& model, const TrainBatch& batch, bool token_mean) {
  int64_t tokens = 0;
  for (const auto& sequence : batch.sequences) tokens += sequence.response_tokens();
  const auto sequences = static_cast<double>(batch.sequences.size());
  at::Tensor total = at::zeros({}, at::kDouble);
  for (const TrainSequence& sequence : batch.sequences) {
    model::ModelInput input;
    input.input_ids = at::tensor(sequence.ids, at::kLong).unsqueeze(0);
    if (sequence.video >= 0) {
      input.video_embeds = batch.videos[sequence.video].rows;
      input.video_grids = {batch.videos[sequence.video].grid};
      input.second_per_grid_ts = {batch.videos[sequence.video].second_per_grid_t};
    }
    const int64_t first = sequence.response_start, count = sequence.response_tokens();
    at::Tensor hidden = model.hidden_states(input)[0].narrow(0, first - 1, count);
    model::LogprobOptions options;
    options.temperature = batch.temperature;
    at::Tensor logprobs = model::token_logprobs(hidden, model.lm_head_weight(),
                                                input.input_ids[0].narrow(0, first, count), options);
    at::Tensor old = at::tensor(sequence.old_logprobs).to(at::kDouble);
    at::Tensor terms = ppo_terms(logprobs, old, at::full({count}, sequence.advantage, at::kDouble));
    const double weight =
        token_mean ? 1.0 / static_cast<double>(tokens) : 1.0 / (sequences * static_cast<double>(count));
    total = total + terms.sum() * weight;
  }
  total.backward();
  return total.item<double>();
}

TEST(PolicyGradientWorker, MatchesOneDevice) {
  LVRL_RANK_WORKER_ONLY();
  const int sp_size = test::worker_env_int("SP_SIZE"), ulysses = test::worker_env_int("SP_U");
  const sp::SpMode mode = sp::parse_sp_mode(test::worker_env("SP_MODE"));
  const bool token_mean = test::worker_env("AGGREGATION") == "token_mean";
  auto mesh = sp::Mesh::create(sp::DistributedEnv::from_environment(), {sp_size, ulysses, sp_size / ulysses},
                               c10::kCPU);
  model::QwenVL model = testing_model::random_model(testing_model::micro_config(), 19, at::kDouble);
  const TrainBatch batch = make_batch(model->config());

  const double reference_loss = reference_step(*model, batch, token_mean);
  std::map<std::string, at::Tensor> reference;
  double norm = 0;
  for (auto& item : model->named_parameters()) {
    if (item.key().rfind("visual.", 0) == 0 || !item.value().grad().defined()) continue;
    reference[item.key()] = item.value().grad().clone();
    norm += item.value().grad().pow(2).sum().item<double>();
  }
  norm = std::sqrt(norm);
  model->zero_grad();

  GradientOptions options;
  options.micro_batch_tokens = 40;  // several micro-batches
  options.sp_mode = mode;
  options.aggregation.mode = token_mean ? LossAggregation::TokenMean : LossAggregation::SeqMeanTokenMean;
  const GradientResult result =
      accumulate_gradients(*model, dp_share(batch, mesh->dp_rank(), mesh->dp_size()), mesh, options, kLoss);
  EXPECT_NEAR(result.loss, reference_loss, 1e-10 * std::abs(reference_loss));
  EXPECT_EQ(result.sequences, 6);
  EXPECT_GE(result.micro_batches, 2);
  double worst = 0;
  for (const auto& [name, expected] : reference) {
    const double error =
        (model->named_parameters()[name].grad() - expected).abs().max().item<double>() / norm;
    EXPECT_LE(error, 1e-10) << name;
    worst = std::max(worst, error);
  }
  // The same parameters after an AdamW update at lr 1e-2: this model from the layout's gradients, a
  // twin (the same weights) from the single-device ones.
  model::QwenVL twin = testing_model::random_model(testing_model::micro_config(), 19, at::kDouble);
  for (auto& item : twin->named_parameters()) {
    const auto found = reference.find(item.key());
    if (found != reference.end()) item.value().mutable_grad() = found->second.clone();
  }
  OptimizerOptions update;
  update.lr = 1e-2;
  AdamW(model->named_parameters(), update).step();
  AdamW(twin->named_parameters(), update).step();
  double worst_parameter = 0;
  for (const auto& [name, expected] : reference) {
    const at::Tensor got = model->named_parameters()[name], want = twin->named_parameters()[name];
    worst_parameter = std::max(worst_parameter, (got - want).abs().max().item<double>() /
                                                    std::max(1e-300, want.abs().max().item<double>()));
  }
  EXPECT_LE(worst_parameter, 1e-10);
  test::write_result(
      fmt::format("loss {:.6g} (reference {:.6g}), max grad error / norm {:.3g}, "
                  "max parameter error after an update {:.3g}",
                  result.loss, reference_loss, worst, worst_parameter));
}

struct LayoutCase {
  const char* name;
  int world, sp, ulysses;
  const char* mode;
  const char* aggregation;
};

class PolicyGradient : public ::testing::TestWithParam<LayoutCase> {};

TEST_P(PolicyGradient, MatchesOneDevice) {
  const LayoutCase c = GetParam();
  auto run = run_ranks(c.world, "PolicyGradientWorker.MatchesOneDevice",
                       {{"SP_SIZE", std::to_string(c.sp)},
                        {"SP_U", std::to_string(c.ulysses)},
                        {"SP_MODE", c.mode},
                        {"AGGREGATION", c.aggregation}});
  ASSERT_TRUE(ranks_succeeded(run));
  std::cout << c.name << ": " << run.results[0] << "\n";
}

INSTANTIATE_TEST_SUITE_P(Layouts, PolicyGradient,
                         ::testing::Values(LayoutCase{"one_rank", 1, 1, 1, "ulysses", "token_mean"},
                                           LayoutCase{"sp2_zigzag", 2, 2, 1, "zigzag", "token_mean"},
                                           LayoutCase{"sp2_ulysses", 2, 2, 2, "ulysses",
                                                      "seq_mean_token_mean"},
                                           LayoutCase{"sp4_hybrid_2x2", 4, 4, 2, "hybrid", "token_mean"},
                                           LayoutCase{"dp2", 2, 1, 1, "ulysses", "seq_mean_token_mean"}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace lvrl::trainer
