// The whole micro Qwen2.5-VL under sequence parallelism on real Gloo ranks: video frames encoded
// sharded (MR-SP stage 1), the sequence sharded with positions and label shift decided before the
// split (stage 2), SP attention in every decoder layer, log-probs only where scored. Loss, gathered
// per-token log-probs and every parameter's gradient must equal the single-process run (float64).
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/tensor_compare.h"
#include "model/qwen_vl.h"
#include "sp/comm.h"
#include "sp/vlm_shard.h"
#include "tests/model/micro_model.h"
#include "tests/support/multi_rank.h"

namespace lvrl::sp {
namespace {

using test::ranks_succeeded;
using test::run_ranks;

model::QwenVL scaled_micro_model() {
  model::QwenVL model(testing_model::micro_config());
  model::init_weights(*model, 11);
  at::manual_seed(3);
  at::NoGradGuard no_grad;
  for (auto& param : model->parameters()) {
    if (param.dim() >= 2) param.mul_(10);
    if (param.dim() == 1) param.add_(at::rand(param.sizes(), at::kFloat).sub_(0.5).mul_(0.2));
  }
  model->to(at::kDouble);
  return model;
}

TEST(SpModelWorker, ForwardBackward) {
  LVRL_RANK_WORKER_ONLY();
  const int ulysses = test::worker_env_int("SP_U"), ring = test::worker_env_int("SP_R");
  const SpMode mode = parse_sp_mode(test::worker_env("SP_MODE"));
  auto mesh = Mesh::create(DistributedEnv::from_environment(), {ulysses * ring, ulysses, ring}, c10::kCPU);

  model::QwenVL model = scaled_micro_model();
  const model::QwenConfig& config = model->config();
  const model::GridTHW grid{4, 4, 4};  // 4 temporal slices: one per rank at SP = 4
  at::Tensor video_ids = testing_model::video_prompt(config, grid, 3, 6, 5);  // 3 + 1 + 16 + 1 + 6 = 27
  const int64_t seq = video_ids.size(0);
  model::ModelInput input;
  input.input_ids = at::zeros({2, seq}, at::kLong);
  input.input_ids[0].copy_(video_ids);
  input.input_ids[1].narrow(0, 0, 20).copy_(at::randint(1, 150, {20}, at::kLong));
  input.attention_mask = at::zeros({2, seq}, at::kLong);
  input.attention_mask[0].fill_(1);
  input.attention_mask[1].narrow(0, 0, 20).fill_(1);
  input.video_grids = {grid};
  at::Tensor pixels = at::randn({grid[0] * grid[1] * grid[2], config.vision.patch_dim()}, at::kDouble);
  at::Tensor loss_mask = at::zeros({2, seq}, at::kBool);
  loss_mask[0].narrow(0, seq - 6, 6).fill_(true);  // the answer after the video
  loss_mask[1].narrow(0, 14, 6).fill_(true);       // the last 6 valid tokens of the padded row
  const int64_t scored = 12;

  // Single process: the whole sequence, blockwise attention.
  input.pixel_values_videos = pixels;
  at::Tensor hidden = model->hidden_states(input);  // [2, S, D]
  at::Tensor reference_logprobs = at::zeros({2, seq}, at::kDouble);
  std::vector<at::Tensor> picked;
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t j = 1; j < seq; ++j) {
      if (!loss_mask[b][j].item<bool>()) continue;
      at::Tensor lp = model::token_logprobs(hidden[b][j - 1].unsqueeze(0), model->lm_head_weight(),
                                            input.input_ids[b].narrow(0, j, 1));
      reference_logprobs[b][j - 1] = lp.detach()[0];
      picked.push_back(lp);
    }
  }
  at::Tensor reference_loss = -at::cat(picked).sum() / scored;
  reference_loss.backward();
  std::map<std::string, at::Tensor> reference_grads;
  for (auto& item : model->named_parameters()) reference_grads[item.key()] = item.value().grad().clone();
  model->zero_grad();
  input.pixel_values_videos = at::Tensor();

  // Sequence parallel.
  at::Tensor video_embeds = encode_video_sharded(*model, pixels, {grid}, *mesh);
  ShardedSequence shard = shard_sequence(*model, input, video_embeds, loss_mask, *mesh, mode);
  auto attention = std::make_shared<SequenceParallelAttention>(mesh, mode);
  at::Tensor local_logprobs = sharded_token_logprobs(*model, shard, attention);
  at::Tensor local_loss = -local_logprobs.sum() / scored;
  local_loss.backward();
  all_reduce_gradients(*model, *mesh);
  at::Tensor loss = local_loss.detach().clone();
  all_reduce_sum(mesh->sp(), loss);
  at::Tensor gathered = gather_sequence(local_logprobs, shard.layout, *mesh);

  const double loss_error =
      std::abs((loss - reference_loss).item<double>()) / std::abs(reference_loss.item<double>());
  const double logprob_error = max_relative_difference(gathered, reference_logprobs);
  double grad_error = 0;
  std::string worst;
  for (auto& item : model->named_parameters()) {
    const double error = max_relative_difference(item.value().grad(), reference_grads[item.key()]);
    if (error > grad_error) grad_error = error, worst = item.key();
  }
  EXPECT_LE(loss_error, 1e-10);
  EXPECT_LE(logprob_error, 1e-10);
  EXPECT_LE(grad_error, 1e-10) << "worst: " << worst;
  test::write_result(
      fmt::format("loss {:.3g} logprobs {:.3g} grads {:.3g}", loss_error, logprob_error, grad_error));
}

struct SpModelCase {
  const char* mode;
  int ulysses, ring;
};

class SpModel : public ::testing::TestWithParam<SpModelCase> {};

TEST_P(SpModel, MatchesTheSingleProcessRun) {
  const SpModelCase c = GetParam();
  auto run =
      run_ranks(c.ulysses * c.ring, "SpModelWorker.ForwardBackward",
                {{"SP_MODE", c.mode}, {"SP_U", std::to_string(c.ulysses)}, {"SP_R", std::to_string(c.ring)}});
  ASSERT_TRUE(ranks_succeeded(run));
  std::cout << c.mode << " " << c.ulysses << "x" << c.ring << ": " << run.results[0] << "\n";
}

INSTANTIATE_TEST_SUITE_P(Modes, SpModel,
                         ::testing::Values(SpModelCase{"ulysses", 2, 1}, SpModelCase{"zigzag", 1, 2},
                                           SpModelCase{"ring", 1, 4}, SpModelCase{"hybrid", 2, 2}),
                         [](const auto& info) {
                           return fmt::format("{}_{}x{}", info.param.mode, info.param.ulysses,
                                              info.param.ring);
                         });

}  // namespace
}  // namespace lvrl::sp
