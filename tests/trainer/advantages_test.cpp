// The advantage estimators against hand-computed tables (docs/trainer.md#advantages). Each expected
// value is written from the formula with the group's numbers worked out by hand in the comments;
// tolerance 1e-9 (float64 arithmetic throughout).
#include "trainer/advantages.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/config.h"
#include "trainer/kl.h"

namespace lvrl::trainer {
namespace {

constexpr double kTolerance = 1e-9;

at::Tensor doubles(const std::vector<double>& values) {
  return at::tensor(values, at::kDouble);
}
at::Tensor longs(const std::vector<int64_t>& values) {
  return at::tensor(values, at::kLong);
}

void expect_values(const at::Tensor& actual, const std::vector<double>& expected, const char* what) {
  at::Tensor values = actual.to(at::kDouble).contiguous().view({-1});
  ASSERT_EQ(values.numel(), static_cast<int64_t>(expected.size())) << what;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double got = values[static_cast<int64_t>(i)].item<double>();
    EXPECT_TRUE(std::isfinite(got)) << what << " [" << i << "]";
    EXPECT_NEAR(got, expected[i], kTolerance) << what << " [" << i << "]";
  }
}

// Four groups, interleaved on purpose (group_index need not be contiguous):
//   g0 = {1, 0, 0, 1}: mean 0.5, unbiased std sqrt(4·0.25 / 3) = sqrt(1/3)
//   g1 = {0.9, 0.9, 0.9}: all equal
//   g2 = {0.7}: one answer
//   g3 = {1, 0}: mean 0.5, unbiased std sqrt(2·0.25 / 1) = sqrt(1/2)
const std::vector<double> kRewards = {1, 0.9, 0, 0.7, 0.9, 0, 1, 1, 0.9, 0};
const std::vector<int64_t> kGroups = {0, 1, 0, 2, 1, 0, 3, 0, 1, 3};

TEST(Advantages, GrpoDividesByTheGroupStd) {
  const double a0 = 0.5 / (std::sqrt(1.0 / 3.0) + 1e-6);  // ≈ 0.866024
  const double a3 = 0.5 / (std::sqrt(0.5) + 1e-6);        // ≈ 0.707106
  expect_values(grpo_advantages(doubles(kRewards), longs(kGroups), true),
                {a0, 0, -a0, 0, 0, -a0, a3, a0, 0, -a3}, "grpo");
}

TEST(Advantages, DrGrpoOnlyCentres) {
  expect_values(grpo_advantages(doubles(kRewards), longs(kGroups), false),
                {0.5, 0, -0.5, 0, 0, -0.5, 0.5, 0.5, 0, -0.5}, "dr grpo");
}

TEST(Advantages, RlooSubtractsTheMeanOfTheOthers) {
  // g0: 1 − (0 + 0 + 1)/3 = 2/3, 0 − (1 + 0 + 1)/3 = −2/3; g3: 1 − 0 = 1, 0 − 1 = −1.
  expect_values(rloo_advantages(doubles(kRewards), longs(kGroups)),
                {2.0 / 3, 0, -2.0 / 3, 0, 0, -2.0 / 3, 1, 2.0 / 3, 0, -1}, "rloo");
}

TEST(Advantages, ReinforceBaselineCentresPerGroupThenWhitensTheBatch) {
  // Centred: {.5, 0, −.5, 0, 0, −.5, .5, .5, 0, −.5}; n = 10, Σx = 0, Σx² = 1.5, σ² = 1.5 / 9.
  const double s = std::sqrt(1.5 / 9 + 1e-8);
  expect_values(reinforce_baseline_advantages(doubles(kRewards), longs(kGroups)),
                {0.5 / s, 0, -0.5 / s, 0, 0, -0.5 / s, 0.5 / s, 0.5 / s, 0, -0.5 / s}, "reinforce baseline");
}

TEST(Advantages, AllEqualGroupsAndSingleAnswersGiveExactlyZero) {
  // 0.1·3 / 3 is not 0.1 in binary: the zero must not depend on the mean's rounding.
  const at::Tensor rewards = doubles({0.1, 0.1, 0.1, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.7});
  const at::Tensor groups = longs({0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2});
  for (bool divide : {true, false}) {
    at::Tensor a = grpo_advantages(rewards, groups, divide);
    EXPECT_TRUE(at::equal(a, at::zeros_like(a))) << a;
  }
  at::Tensor rloo = rloo_advantages(rewards, groups);
  EXPECT_TRUE(at::equal(rloo, at::zeros_like(rloo))) << rloo;
  at::Tensor baseline = reinforce_baseline_advantages(rewards, groups);
  EXPECT_TRUE(at::equal(baseline, at::zeros_like(baseline))) << baseline;
  // G = 1 for every answer.
  at::Tensor single = grpo_advantages(doubles({1, 0, 0.5}), longs({0, 1, 2}), true);
  EXPECT_TRUE(at::equal(single, at::zeros_like(single))) << single;
}

TEST(Advantages, FloatRewardsAndTheDispatcher) {
  AdvantageOptions options;
  options.estimator = AdvantageEstimator::Rloo;
  expect_values(sequence_advantages(options, at::tensor(std::vector<float>{1, 0}),
                                    at::tensor(std::vector<int32_t>{5, 5})),
                {1, -1}, "rloo, float rewards, sparse ids");
}

// Reinforce++: rewards {1, 0}; β = 0.1; row 0 has 3 answer tokens with KL {0.1, 0.2, 0.3},
// row 1 has 2 with KL {0.5, −0.1}; masked positions hold garbage.
//   row 0 token rewards {−0.01, −0.02, −0.03 + 1} → returns {0.94, 0.95, 0.97}
//   row 1 token rewards {−0.05, 0.01 + 0}          → returns {−0.04, 0.01}
//   5 tokens: μ = 2.83 / 5 = 0.566, σ² = Σ(x − μ)² / 4 = 1.12692 / 4 = 0.28173
TEST(Advantages, ReinforcePlusPlusPutsKlInTheRewardAndWhitensTokens) {
  const at::Tensor rewards = doubles({1, 0});
  const at::Tensor kl = doubles({0.1, 0.2, 0.3, 99, 0.5, -0.1, 7, 7}).view({2, 4});
  const at::Tensor mask = at::tensor(std::vector<uint8_t>{1, 1, 1, 0, 1, 1, 0, 0}).to(at::kBool).view({2, 4});
  expect_values(reinforce_pp_returns(rewards, kl, mask, 0.1), {0.94, 0.95, 0.97, 0, -0.04, 0.01, 0, 0},
                "returns");
  const double s = std::sqrt(0.28173 + 1e-8);
  auto w = [&](double x) { return (x - 0.566) / s; };
  expect_values(reinforce_pp_advantages(rewards, kl, mask, 0.1),
                {w(0.94), w(0.95), w(0.97), 0, w(-0.04), w(0.01), 0, 0}, "advantages");
  // Without KL the return is the final reward on every token.
  expect_values(reinforce_pp_returns(rewards, at::Tensor(), mask, 0.1), {1, 1, 1, 0, 0, 0, 0, 0}, "no kl");
}

TEST(Advantages, WhiteningFromSummedMomentsEqualsTheWholeBatch) {
  // Two "ranks" each hold one row; the all-reduced moments whiten each to the single-device result.
  const at::Tensor rewards = doubles({1, 0});
  const at::Tensor kl = doubles({0.1, 0.2, 0.3, 99, 0.5, -0.1, 7, 7}).view({2, 4});
  const at::Tensor mask = at::tensor(std::vector<uint8_t>{1, 1, 1, 0, 1, 1, 0, 0}).to(at::kBool).view({2, 4});
  const at::Tensor whole = reinforce_pp_advantages(rewards, kl, mask, 0.1);
  MaskedMoments total;
  std::vector<at::Tensor> returns;
  for (int64_t rank = 0; rank < 2; ++rank) {
    returns.push_back(reinforce_pp_returns(rewards.narrow(0, rank, 1), kl.narrow(0, rank, 1),
                                           mask.narrow(0, rank, 1), 0.1));
    total += masked_moments(returns.back(), mask.narrow(0, rank, 1));
  }
  EXPECT_DOUBLE_EQ(total.count, 5);
  for (int64_t rank = 0; rank < 2; ++rank) {
    at::Tensor part = whiten(returns[rank], total, mask.narrow(0, rank, 1));
    EXPECT_TRUE(at::allclose(part, whole.narrow(0, rank, 1), 0, kTolerance)) << part;
  }
}

TEST(Advantages, KlInTheRewardForPerAnswerEstimators) {
  // Σ kl over answer tokens: row 0 0.6, row 1 0.4 (masked entries already 0); β = 0.1.
  const at::Tensor kl = doubles({0.1, 0.2, 0.3, 0, 0.5, -0.1, 0, 0}).view({2, 4});
  expect_values(rewards_with_kl_penalty(doubles({1, 0}), kl, 0.1), {0.94, -0.04}, "penalised");
}

TEST(Advantages, OptionsFromConfig) {
  AdvantageOptions defaults = AdvantageOptions::from_config(Config::parse("", "test.yaml"));
  EXPECT_EQ(defaults.estimator, AdvantageEstimator::Grpo);
  EXPECT_TRUE(defaults.divide_by_std);
  AdvantageOptions dr = AdvantageOptions::from_config(
      Config::parse("", "test.yaml", {"trainer.advantage_std=false", "trainer.advantage=reinforce_pp"}));
  EXPECT_EQ(dr.estimator, AdvantageEstimator::ReinforcePlusPlus);
  EXPECT_FALSE(dr.divide_by_std);
  EXPECT_TRUE(dr.per_token());
  EXPECT_EQ(AdvantageOptions::from_config(Config::parse("", "t", {"trainer.advantage=rloo"})).estimator,
            AdvantageEstimator::Rloo);
  EXPECT_EQ(AdvantageOptions::from_config(Config::parse("", "t", {"trainer.advantage=reinforce_baseline"}))
                .estimator,
            AdvantageEstimator::ReinforceBaseline);
}

}  // namespace
}  // namespace lvrl::trainer
