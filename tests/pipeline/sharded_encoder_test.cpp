// The multi-rank encode protocol of `lvrl preprocess` (pipeline/sharded_encoder.h) on two real Gloo
// ranks, without videos or a cache: an encode that throws on one rank fails that video on both and
// the next video still encodes in step (rows equal to one rank's encode); set-up failures and
// differing encoders stop every rank. The end-to-end run is in preprocess_test.cpp.
#include "pipeline/sharded_encoder.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <iostream>
#include <memory>
#include <stdexcept>

#include "core/error.h"
#include "core/tensor_compare.h"
#include "model/attention.h"
#include "model/qwen_vl.h"
#include "sp/mesh.h"
#include "tests/support/multi_rank.h"

namespace lvrl::pipeline {
namespace {

using test::ranks_succeeded;
using test::run_ranks;

// Throws on its first call as LibTorch's out-of-memory does (c10::Error), then computes like the
// default backend.
class FailOnceAttention : public model::AttentionBackend {
 public:
  std::string name() const override { return "fail-once"; }
  model::AttentionResult forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const model::AttentionSpec& spec) override {
    if (!failed_) {
      failed_ = true;
      TORCH_CHECK(false, "injected attention failure");
    }
    return inner_->forward(q, k, v, spec);
  }

 private:
  bool failed_ = false;
  std::shared_ptr<model::AttentionBackend> inner_ = model::make_default_attention(at::kCPU);
};

TEST(ShardedEncoderWorker, FailuresKeepTheRanksInStep) {
  LVRL_RANK_WORKER_ONLY();
  const int failing = test::worker_env_int("FAILING_RANK");
  const sp::DistributedEnv env = sp::DistributedEnv::from_environment();
  auto mesh = sp::Mesh::create(env, {env.world_size, 0, 0}, c10::kCPU);
  model::QwenVL model(model::QwenConfig::preset("tiny"));
  model::init_weights(*model, 7);
  VisionEncoder encoder(model->visual, at::kFloat, at::kCPU);
  agree_on_setup(*mesh, encoder.fingerprint(), nullptr);
  if (mesh->rank() == failing) encoder.tower().set_attention(std::make_shared<FailOnceAttention>());

  if (mesh->rank() == 0) {
    at::manual_seed(5);
    video::PixelPatches patches;
    patches.grid_thw = {3, 4, 6};  // 3 temporal slices over 2 ranks: 1 + 2
    patches.pixel_values = at::randn({3 * 4 * 6, encoder.config().patch_dim()}, at::kFloat);
    ShardedEncoder sharded(encoder, *mesh);
    try {
      sharded.encode(patches);
      ADD_FAILURE() << "the injected failure on rank " << failing << " did not fail the video";
    } catch (const Error& e) {
      const std::string expected = failing == 0 ? "injected attention failure" : "on rank 1";
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
    at::Tensor rows = sharded.encode(patches);  // every rank is ready for the next video
    sharded.stop();
    at::Tensor reference = encoder.encode(patches);
    ASSERT_EQ(rows.sizes(), reference.sizes());
    const double relative = max_relative_difference(rows, reference);
    EXPECT_LE(relative, 1e-5);
    test::write_result(fmt::format("relative {:.2g}", relative));
  } else {
    EXPECT_EQ(serve_sharded_encoder(encoder, *mesh), 2);
  }

  // A rank that failed to set up stops all: its own error there, one naming it elsewhere.
  std::exception_ptr failure = mesh->rank() == failing
                                   ? std::make_exception_ptr(InputError({"", 0, "model.path", "x"}, "bad"))
                                   : nullptr;
  try {
    agree_on_setup(*mesh, encoder.fingerprint(), failure);
    ADD_FAILURE() << "a failed set-up went unnoticed";
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), mesh->rank() == failing ? "model.path" : "rank");
  }
  // Ranks with different weights: an InputError on every rank.
  const std::string fingerprint = mesh->rank() == failing ? std::string(32, '0') : encoder.fingerprint();
  EXPECT_THROW(agree_on_setup(*mesh, fingerprint, nullptr), InputError);
}

TEST(ShardedEncoder, AnEncodeFailureOnRankOneFailsTheVideoOnBoth) {
  test::RankRun run =
      run_ranks(2, "ShardedEncoderWorker.FailuresKeepTheRanksInStep", {{"FAILING_RANK", "1"}});
  ASSERT_TRUE(ranks_succeeded(run));
  std::cout << "rank 0: " << run.results[0] << "\n";
}

TEST(ShardedEncoder, AnEncodeFailureOnRankZeroFailsTheVideoOnBoth) {
  test::RankRun run =
      run_ranks(2, "ShardedEncoderWorker.FailuresKeepTheRanksInStep", {{"FAILING_RANK", "0"}});
  ASSERT_TRUE(ranks_succeeded(run));
}

}  // namespace
}  // namespace lvrl::pipeline
