// Activation recompute (model/recompute.h) against the plain forward of the same micro model: the
// forward must be bit-identical (the recompute runs the same ops with autograd off) and every
// gradient — parameters, and an input that requires grad — must match within 1e-6 (float32) and
// 1e-12 (float64) of the largest entry (core/tensor_compare.h), the reference being recompute off.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/function.h>

#include <map>
#include <set>
#include <string>

#include "core/tensor_compare.h"
#include "model/qwen_vl.h"
#include "sp/comm.h"
#include "sp/sp_attention.h"
#include "sp/vlm_shard.h"
#include "tests/model/micro_model.h"
#include "tests/support/multi_rank.h"

namespace lvrl::model {
namespace {

double gradient_tolerance(at::ScalarType dtype) {
  return dtype == at::kDouble ? 1e-12 : 1e-6;
}

struct Pass {
  at::Tensor output;                        // what the loss was taken of
  std::map<std::string, at::Tensor> grads;  // every parameter's, plus "input" when one requires grad
};

// The loss: a fixed random projection of the output, so every position and channel gets a gradient.
at::Tensor projected_loss(const at::Tensor& output, uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  at::Tensor weights = at::randn(output.sizes(), generator, at::kDouble).to(output.scalar_type());
  return (output * weights).sum();
}

// Every parameter's gradient but `unused`'s (not on the loss's path: it must get none).
std::map<std::string, at::Tensor> collect_grads(torch::nn::Module& module, const std::string& unused) {
  std::map<std::string, at::Tensor> grads;
  for (auto& item : module.named_parameters()) {
    EXPECT_EQ(item.value().grad().defined(), item.key() != unused) << item.key();
    if (item.value().grad().defined()) grads[item.key()] = item.value().grad().clone();
  }
  return grads;
}

void expect_same_pass(const Pass& on, const Pass& off, at::ScalarType dtype) {
  EXPECT_TRUE(at::equal(on.output, off.output))
      << "forward differs by " << max_relative_difference(on.output, off.output);
  ASSERT_EQ(on.grads.size(), off.grads.size());
  for (const auto& [name, reference] : off.grads) {
    ASSERT_TRUE(on.grads.count(name)) << name;
    EXPECT_LE(max_relative_difference(on.grads.at(name), reference), gradient_tolerance(dtype)) << name;
  }
}

// The language model alone on embeddings that require grad (as video embeddings do), text positions.
Pass text_model_pass(at::ScalarType dtype, bool recompute, bool input_requires_grad = true) {
  QwenVL model = testing_model::random_model(testing_model::micro_config(), 7, dtype);
  model->model->set_recompute(recompute);
  at::Generator generator = at::detail::createCPUGenerator(3);
  const int64_t batch = 2, seq = 9;
  at::Tensor embeds = at::randn({batch, seq, model->config().text.hidden_size}, generator, at::kDouble)
                          .to(dtype)
                          .requires_grad_(input_requires_grad);  // [B, S, D]
  at::Tensor positions = at::arange(seq, at::kLong).view({1, 1, seq}).expand({3, batch, seq}).contiguous();
  at::Tensor hidden = model->model->forward(embeds, positions);
  projected_loss(hidden, 5).backward();
  Pass pass{hidden.detach(), collect_grads(*model->model, "embed_tokens.weight")};
  if (input_requires_grad) pass.grads["input"] = embeds.grad().clone();
  return pass;
}

// The whole model on a prompt with a video: the vision tower's parameters get their gradients
// through the video embeddings the first recomputed layer takes in.
Pass video_pass(at::ScalarType dtype, bool recompute) {
  const QwenConfig config = testing_model::micro_config();
  QwenVL model = testing_model::random_model(config, 11, dtype);
  model->model->set_recompute(recompute);
  const GridTHW grid{2, 4, 4};
  at::Tensor ids = testing_model::video_prompt(config, grid, 3, 5, 9);  // 3 + 1 + 8 + 1 + 5 = 18
  ModelInput input;
  input.input_ids = at::stack({ids, ids});
  input.video_grids = {grid, grid};
  at::Generator generator = at::detail::createCPUGenerator(4);
  input.pixel_values_videos =
      at::randn({2 * grid[0] * grid[1] * grid[2], config.vision.patch_dim()}, generator, at::kDouble)
          .to(dtype);
  at::Tensor hidden = model->hidden_states(input);
  projected_loss(hidden, 6).backward();
  return {hidden.detach(), collect_grads(*model, "lm_head.weight")};
}

class Recompute : public ::testing::TestWithParam<at::ScalarType> {};

TEST_P(Recompute, TextModelMatchesThePlainForward) {
  const Pass off = text_model_pass(GetParam(), false);
  const Pass on = text_model_pass(GetParam(), true);
  expect_same_pass(on, off, GetParam());
}

// The first layer's input needs no gradient: the layers' parameters must still get theirs.
TEST_P(Recompute, TextModelOnFrozenInputsMatchesThePlainForward) {
  const Pass off = text_model_pass(GetParam(), false, false);
  const Pass on = text_model_pass(GetParam(), true, false);
  expect_same_pass(on, off, GetParam());
}

TEST_P(Recompute, VideoPromptMatchesThePlainForward) {
  const Pass off = video_pass(GetParam(), false);
  const Pass on = video_pass(GetParam(), true);
  expect_same_pass(on, off, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Dtypes, Recompute, ::testing::Values(at::kFloat, at::kDouble),
                         [](const auto& info) { return std::string(c10::toString(info.param)); });

// Under sequence parallelism the recompute replays each layer's attention collectives in backward;
// on 2 Gloo ranks the sharded step must give the same log-probs (bit-identical) and gradients
// (≤ 1e-12, float64) with recompute on as off.
TEST(RecomputeSpWorker, MatchesWithoutRecompute) {
  LVRL_RANK_WORKER_ONLY();
  const int ulysses = test::worker_env_int("SP_U"), ring = test::worker_env_int("SP_R");
  const sp::SpMode mode = sp::parse_sp_mode(test::worker_env("SP_MODE"));
  auto mesh =
      sp::Mesh::create(sp::DistributedEnv::from_environment(), {ulysses * ring, ulysses, ring}, c10::kCPU);
  const QwenConfig config = testing_model::micro_config();
  QwenVL model = testing_model::random_model(config, 13, at::kDouble);
  const GridTHW grid{2, 4, 4};
  ModelInput input;
  input.input_ids = testing_model::video_prompt(config, grid, 3, 6, 5).unsqueeze(0);  // [1, 19]
  input.video_grids = {grid};
  at::Generator generator = at::detail::createCPUGenerator(8);
  at::Tensor pixels =
      at::randn({grid[0] * grid[1] * grid[2], config.vision.patch_dim()}, generator, at::kDouble);
  at::Tensor loss_mask = at::zeros(input.input_ids.sizes(), at::kBool);
  loss_mask[0].narrow(0, 12, 7).fill_(true);

  auto sharded_step = [&](bool recompute) {
    model->zero_grad();
    model->model->set_recompute(recompute);
    at::Tensor video_embeds = sp::encode_video_sharded(*model, pixels, {grid}, *mesh);
    sp::ShardedSequence shard = sp::shard_sequence(*model, input, video_embeds, loss_mask, *mesh, mode);
    auto attention = std::make_shared<sp::SequenceParallelAttention>(mesh, mode);
    at::Tensor logprobs = sp::sharded_token_logprobs(*model, shard, attention);
    (-logprobs.sum()).backward();
    sp::all_reduce_gradients(*model, *mesh);
    Pass pass{logprobs.detach(), collect_grads(*model, "")};
    return pass;
  };
  const Pass off = sharded_step(false);
  const Pass on = sharded_step(true);
  expect_same_pass(on, off, at::kDouble);
  test::write_result("ok");
}

class RecomputeSp : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(RecomputeSp, ReplaysTheCollectivesOnTwoRanks) {
  const auto [ulysses, ring] = GetParam();
  const test::RankRun run = test::run_ranks(2, "RecomputeSpWorker.MatchesWithoutRecompute",
                                            {{"SP_MODE", ulysses == 2 ? "ulysses" : "zigzag"},
                                             {"SP_U", std::to_string(ulysses)},
                                             {"SP_R", std::to_string(ring)}});
  ASSERT_TRUE(test::ranks_succeeded(run));
}

INSTANTIATE_TEST_SUITE_P(Modes, RecomputeSp, ::testing::Values(std::pair{2, 1}, std::pair{1, 2}),
                         [](const auto& info) { return info.param.first == 2 ? "ulysses" : "zigzag"; });

// The recompute nodes in the graph behind `output` (one per decoder layer when recompute is used).
int count_recompute_nodes(const at::Tensor& output) {
  std::vector<torch::autograd::Node*> pending{output.grad_fn().get()};
  std::set<torch::autograd::Node*> seen;
  int count = 0;
  while (!pending.empty()) {
    torch::autograd::Node* node = pending.back();
    pending.pop_back();
    if (node == nullptr || !seen.insert(node).second) continue;
    if (node->name().find("RecomputedLayer") != std::string::npos) ++count;
    for (const auto& edge : node->next_edges()) pending.push_back(edge.function.get());
  }
  return count;
}

TEST(Recompute, WrapsEveryLayerOnlyWhenTraining) {
  QwenVL model = testing_model::random_model(testing_model::micro_config(), 7, at::kFloat);
  const int64_t seq = 6;
  at::Tensor embeds = at::randn({1, seq, model->config().text.hidden_size}).requires_grad_(true);
  at::Tensor positions = at::arange(seq, at::kLong).view({1, 1, seq}).expand({3, 1, seq}).contiguous();
  EXPECT_EQ(count_recompute_nodes(model->model->forward(embeds, positions)), 0) << "off by default";
  model->model->set_recompute(true);
  at::Tensor with_grad = model->model->forward(embeds, positions);
  EXPECT_EQ(count_recompute_nodes(with_grad), model->config().text.num_hidden_layers);
  at::NoGradGuard no_grad;
  at::Tensor without_grad = model->model->forward(embeds, positions);
  EXPECT_FALSE(without_grad.requires_grad());
  EXPECT_TRUE(at::equal(without_grad, with_grad.detach()));
}

}  // namespace
}  // namespace lvrl::model
