// The KL estimators against hand-computed values (docs/trainer.md#kl-to-the-reference), their
// gradients w.r.t. log π_θ, the clamps and masking. δ = log π_ref − log π_θ; float64, tolerance 1e-9.
#include "trainer/kl.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/config.h"

namespace lvrl::trainer {
namespace {

constexpr double kTolerance = 1e-9;

struct Row {
  at::Tensor logprobs;  // [1, 4] requires grad
  at::Tensor ref;       // [1, 4]
  at::Tensor mask;      // [1, 4]
};

// δ = {−0.5, 1, 0, masked}; the masked token holds −inf to prove it never reaches the math.
Row make_row() {
  const double inf = std::numeric_limits<double>::infinity();
  Row row;
  row.logprobs = at::tensor(std::vector<double>{-1.0, -2.0, -0.5, -inf}).view({1, 4}).requires_grad_();
  row.ref = at::tensor(std::vector<double>{-1.5, -1.0, -0.5, -3.0}).view({1, 4});
  row.mask = at::tensor(std::vector<uint8_t>{1, 1, 1, 0}).to(at::kBool).view({1, 4});
  return row;
}

void expect_values_and_gradient(KlEstimator estimator, const std::vector<double>& value,
                                const std::vector<double>& gradient) {
  Row row = make_row();
  at::Tensor kl = kl_per_token(estimator, row.logprobs, row.ref, row.mask);
  kl.sum().backward();
  for (int64_t t = 0; t < 4; ++t) {
    EXPECT_NEAR(kl[0][t].item<double>(), value[t], kTolerance) << "value t=" << t;
    EXPECT_NEAR(row.logprobs.grad()[0][t].item<double>(), gradient[t], kTolerance) << "grad t=" << t;
  }
}

TEST(Kl, K1IsTheLogRatio) {  // k1 = −δ; ∂/∂log π_θ = 1
  expect_values_and_gradient(KlEstimator::K1, {0.5, -1.0, 0, 0}, {1, 1, 1, 0});
}

TEST(Kl, K2IsHalfTheSquaredLogRatio) {  // k2 = δ²/2; ∂/∂log π_θ = −δ
  expect_values_and_gradient(KlEstimator::K2, {0.125, 0.5, 0, 0}, {0.5, -1, 0, 0});
}

TEST(Kl, K3IsTheLowVarianceEstimator) {      // k3 = e^δ − δ − 1; ∂/∂log π_θ = 1 − e^δ
  const double e_half = 0.6065306597126334;  // e^−0.5
  const double e = 2.718281828459045;
  expect_values_and_gradient(KlEstimator::K3, {e_half + 0.5 - 1, e - 2, 0, 0}, {1 - e_half, 1 - e, 0, 0});
}

TEST(Kl, K3IsClamped) {
  // δ = 30 → clamped to 20 → e^20 − 21 → clamped to 10; δ = −30 → −20 → e^−20 + 19 → 10; no gradient.
  at::Tensor logprobs = at::tensor(std::vector<double>{-30.0, 0.0}).view({1, 2}).requires_grad_();
  at::Tensor ref = at::tensor(std::vector<double>{0.0, -30.0}).view({1, 2});
  at::Tensor mask = at::ones({1, 2}, at::kBool);
  at::Tensor kl = kl_per_token(KlEstimator::K3, logprobs, ref, mask);
  EXPECT_DOUBLE_EQ(kl[0][0].item<double>(), 10.0);
  EXPECT_DOUBLE_EQ(kl[0][1].item<double>(), 10.0);
  kl.sum().backward();
  EXPECT_DOUBLE_EQ(logprobs.grad().abs().sum().item<double>(), 0.0);
}

TEST(Kl, OptionsFromConfig) {
  KlOptions defaults = KlOptions::from_config(Config::parse("", "test.yaml"));
  EXPECT_DOUBLE_EQ(defaults.coef, 1e-2);
  EXPECT_EQ(defaults.estimator, KlEstimator::K3);
  EXPECT_TRUE(defaults.as_loss());
  KlOptions reward = KlOptions::from_config(Config::parse(
      "", "test.yaml", {"trainer.kl.estimator=k1", "trainer.kl.mode=reward", "trainer.kl.coef=0.05"}));
  EXPECT_EQ(reward.estimator, KlEstimator::K1);
  EXPECT_TRUE(reward.in_reward());
  EXPECT_FALSE(reward.as_loss());
  EXPECT_FALSE(KlOptions::from_config(Config::parse("", "t", {"trainer.kl.coef=0"})).enabled());
}

}  // namespace
}  // namespace lvrl::trainer
