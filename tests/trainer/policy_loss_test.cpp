// The policy loss against hand-computed tables (docs/trainer.md#policy-loss): per token a ratio ρ and
// an advantage Â, the loss written from PPO-clip's definition and its gradient w.r.t. log π_θ worked
// out by hand (−Â·ρ where unclipped, 0 where clipped or dual-clipped). ε_low 0.2, ε_high 0.28, c 3.
// float64 throughout, tolerance 1e-9.
#include "trainer/policy_loss.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "core/config.h"
#include "tests/support/expect_error.h"

namespace lvrl::trainer {
namespace {

constexpr double kTolerance = 1e-9;

struct TokenCase {
  double ratio;
  double advantage;
  double loss;      // expected pg_t
  double gradient;  // expected ∂pg_t / ∂log π_θ,t
  const char* region;
};

// The four inputs every case needs; the optional ones stay undefined.
PolicyLossInputs inputs_of(at::Tensor logprobs, at::Tensor old_logprobs, at::Tensor advantages,
                           at::Tensor mask) {
  PolicyLossInputs inputs;
  inputs.logprobs = std::move(logprobs);
  inputs.old_logprobs = std::move(old_logprobs);
  inputs.advantages = std::move(advantages);
  inputs.mask = std::move(mask);
  return inputs;
}

PolicyLossOptions dapo_options(double dual_clip) {
  PolicyLossOptions options;
  options.clip_low = 0.2;
  options.clip_high = 0.28;
  options.dual_clip = dual_clip;
  options.kl.coef = 0;
  return options;
}

// One row of tokens with log π_old = −1 and log π_θ = −1 + log ρ, plus a final masked token whose
// log π_θ is −inf (padding) and whose advantage is large: it must add nothing, not even NaN.
struct Batch {
  at::Tensor logprobs, old_logprobs, advantages, mask;
};

Batch make_batch(const std::vector<TokenCase>& table) {
  std::vector<double> logprobs, old, advantages;
  std::vector<uint8_t> mask;
  for (const TokenCase& c : table) {
    logprobs.push_back(-1.0 + std::log(c.ratio));
    old.push_back(-1.0);
    advantages.push_back(c.advantage);
    mask.push_back(1);
  }
  logprobs.push_back(-std::numeric_limits<double>::infinity());
  old.push_back(-1.0);
  advantages.push_back(5.0);
  mask.push_back(0);
  const int64_t n = static_cast<int64_t>(mask.size());
  return {at::tensor(logprobs, at::kDouble).view({1, n}).requires_grad_(),
          at::tensor(old, at::kDouble).view({1, n}), at::tensor(advantages, at::kDouble).view({1, n}),
          at::tensor(mask).to(at::kBool).view({1, n})};
}

void expect_table(const PolicyLossOptions& options, const std::vector<TokenCase>& table) {
  Batch batch = make_batch(table);
  PolicyLossInputs inputs;
  inputs.logprobs = batch.logprobs;
  inputs.old_logprobs = batch.old_logprobs;
  inputs.advantages = batch.advantages;
  inputs.mask = batch.mask;
  PolicyLossTerms terms = policy_loss(options, inputs);
  terms.per_token.sum().backward();
  const int64_t n = static_cast<int64_t>(table.size());
  for (int64_t t = 0; t < n; ++t) {
    const TokenCase& c = table[t];
    EXPECT_NEAR(terms.per_token[0][t].item<double>(), c.loss, kTolerance) << c.region << " ρ=" << c.ratio;
    EXPECT_NEAR(batch.logprobs.grad()[0][t].item<double>(), c.gradient, kTolerance)
        << c.region << " ρ=" << c.ratio;
  }
  EXPECT_EQ(terms.per_token[0][n].item<double>(), 0.0);
  EXPECT_EQ(batch.logprobs.grad()[0][n].item<double>(), 0.0);
}

TEST(PolicyLoss, PpoClipHigherAndDualClipTable) {
  expect_table(dapo_options(3.0), {
                                      {1.1, 1, -1.1, -1.1, "Â>0 unclipped"},
                                      {1.5, 1, -1.28, 0, "Â>0 clipped at 1+ε_high"},
                                      {0.5, 1, -0.5, -0.5, "Â>0 below 1−ε_low: not clipped"},
                                      {0.5, -1, 0.8, 0, "Â<0 clipped at 1−ε_low"},
                                      {1.5, -1, 1.5, 1.5, "Â<0 above 1+ε_high: not clipped, under c"},
                                      {0.9, -2, 1.8, 1.8, "Â<0 inside the clip range"},
                                      {4.0, -1, 3.0, 0, "Â<0 dual-clipped: c·|Â|"},
                                      {4.0, -0.5, 1.5, 0, "Â<0 dual-clipped: c·|Â|"},
                                      {2.0, 0, 0, 0, "Â=0"},
                                  });
}

TEST(PolicyLoss, WithoutDualClipLargeRatiosKeepTheirGradient) {
  expect_table(dapo_options(0.0), {
                                      {4.0, -1, 4.0, 4.0, "Â<0, ρ=4, no dual clip"},
                                      {0.5, -1, 0.8, 0, "Â<0 clipped at 1−ε_low"},
                                  });
}

TEST(PolicyLoss, ClipStatisticsCountAnswerTokens) {
  Batch batch = make_batch({{1.1, 1, 0, 0, ""},
                            {1.5, 1, 0, 0, ""},
                            {0.5, -1, 0, 0, ""},
                            {4.0, -1, 0, 0, ""},
                            {4.0, -0.5, 0, 0, ""}});
  PolicyLossInputs inputs = inputs_of(batch.logprobs, batch.old_logprobs, batch.advantages, batch.mask);
  PolicyLossStats stats = policy_loss(dapo_options(3.0), inputs).stats;
  EXPECT_DOUBLE_EQ(stats.tokens, 5);
  EXPECT_DOUBLE_EQ(stats.clipped_high, 1);  // ρ 1.5, Â > 0
  EXPECT_DOUBLE_EQ(stats.clipped_low, 1);   // ρ 0.5, Â < 0
  EXPECT_DOUBLE_EQ(stats.dual_clipped, 2);  // ρ 4, Â < 0 (twice)
  EXPECT_NEAR(stats.ratio_sum, 1.1 + 1.5 + 0.5 + 4 + 4, kTolerance);
  // pg: −1.1, −1.28, 0.8, 3, 1.5
  EXPECT_NEAR(stats.pg_loss_sum, -1.1 - 1.28 + 0.8 + 3 + 1.5, kTolerance);
  EXPECT_NEAR(stats.ppo_kl_sum, -(std::log(1.1) + std::log(1.5) + std::log(0.5) + 2 * std::log(4.0)),
              kTolerance);
  PolicyLossStats twice = stats;
  twice += stats;
  EXPECT_DOUBLE_EQ(twice.tokens, 10);
  EXPECT_DOUBLE_EQ(twice.mean(twice.clipped_high), 0.2);
}

TEST(PolicyLoss, AdvantagesPerAnswerBroadcastOverTokens) {
  // [B] advantages: row 0 Â = 1 (ρ 1.1 and 1.5), row 1 Â = −1 (ρ 0.5, then a masked token).
  at::Tensor logprobs =
      at::log(at::tensor(std::vector<double>{1.1, 1.5, 0.5, 1.0})).view({2, 2}).requires_grad_();
  at::Tensor mask = at::tensor(std::vector<uint8_t>{1, 1, 1, 0}).to(at::kBool).view({2, 2});
  PolicyLossInputs inputs =
      inputs_of(logprobs, at::zeros({2, 2}, at::kDouble), at::tensor(std::vector<double>{1, -1}), mask);
  PolicyLossTerms terms = policy_loss(dapo_options(3.0), inputs);
  const std::vector<double> expected = {-1.1, -1.28, 0.8, 0};
  for (int64_t i = 0; i < 4; ++i)
    EXPECT_NEAR(terms.per_token.view({-1})[i].item<double>(), expected[i], kTolerance);
}

TEST(PolicyLoss, TruncatedImportanceSamplingWeightsByTheCappedBehaviourRatio) {
  // ρ = 1.1, Â = 1 on both tokens (pg −1.1, gradient −1.1 before weighting);
  // token 0: log π_old − log μ = 0.5 → w = e^0.5; token 1: 1.0 → e > cap 2 → w = 2.
  const double w0 = std::exp(0.5);
  Batch batch = make_batch({{1.1, 1, 0, 0, ""}, {1.1, 1, 0, 0, ""}});
  PolicyLossOptions options = dapo_options(3.0);
  options.tis_cap = 2.0;
  PolicyLossInputs inputs = inputs_of(batch.logprobs, batch.old_logprobs, batch.advantages, batch.mask);
  inputs.behaviour_logprobs = at::tensor(std::vector<double>{-1.5, -2.0, 0.0}).view({1, 3});
  PolicyLossTerms terms = policy_loss(options, inputs);
  terms.per_token.sum().backward();
  EXPECT_NEAR(terms.per_token[0][0].item<double>(), -1.1 * w0, kTolerance);
  EXPECT_NEAR(terms.per_token[0][1].item<double>(), -1.1 * 2, kTolerance);
  EXPECT_NEAR(batch.logprobs.grad()[0][0].item<double>(), -1.1 * w0, kTolerance);
  EXPECT_NEAR(batch.logprobs.grad()[0][1].item<double>(), -1.1 * 2, kTolerance);
  EXPECT_DOUBLE_EQ(terms.stats.tis_capped, 1);
}

TEST(PolicyLoss, KlLossTermAndEntropyBonus) {
  // ρ = 1.1, Â = 1: pg −1.1, ∂pg = −1.1. log π_θ = −1 + log 1.1; ref chosen so δ = −0.5 and 1.0.
  // k3 = e^δ − δ − 1, ∂k3/∂log π_θ = 1 − e^δ; β = 0.1. Entropy H = {2, 3}, coefficient 0.01.
  Batch batch = make_batch({{1.1, 1, 0, 0, ""}, {1.1, 1, 0, 0, ""}});
  const double logp = -1.0 + std::log(1.1);
  PolicyLossOptions options = dapo_options(3.0);
  options.kl.coef = 0.1;
  options.kl.estimator = KlEstimator::K3;
  options.entropy_coef = 0.01;
  at::Tensor entropy = at::tensor(std::vector<double>{2.0, 3.0, 1e9}).view({1, 3}).requires_grad_();
  PolicyLossInputs inputs = inputs_of(batch.logprobs, batch.old_logprobs, batch.advantages, batch.mask);
  inputs.ref_logprobs = at::tensor(std::vector<double>{logp - 0.5, logp + 1.0, 0.0}).view({1, 3});
  inputs.entropy = entropy;
  PolicyLossTerms terms = policy_loss(options, inputs);
  terms.per_token.sum().backward();
  const double deltas[2] = {-0.5, 1.0};
  const double entropies[2] = {2.0, 3.0};
  for (int64_t t = 0; t < 2; ++t) {
    const double k3 = std::exp(deltas[t]) - deltas[t] - 1;
    EXPECT_NEAR(terms.per_token[0][t].item<double>(), -1.1 + 0.1 * k3 - 0.01 * entropies[t], kTolerance);
    EXPECT_NEAR(batch.logprobs.grad()[0][t].item<double>(), -1.1 + 0.1 * (1 - std::exp(deltas[t])),
                kTolerance);
    EXPECT_NEAR(entropy.grad()[0][t].item<double>(), -0.01, kTolerance);
  }
  EXPECT_EQ(entropy.grad()[0][2].item<double>(), 0.0);
  EXPECT_NEAR(terms.stats.entropy_sum, 5.0, kTolerance);
  EXPECT_NEAR(terms.stats.kl_sum, (std::exp(-0.5) - 0.5) + (std::exp(1.0) - 2), kTolerance);
}

// GSPO: row 0 has log-ratios {0.2, 0.4} (+ a masked token) → m = 0.3, s = e^0.3 ≈ 1.3499 > 1.28 with
// Â = 1: clipped, −1.28 per token, no gradient. Row 1 has {−0.3, 0, 0.15} → m = −0.05,
// s = e^−0.05 ≈ 0.9512, Â = −1: inside the range, s per token, ∂/∂log π_θ,t = s.
TEST(PolicyLoss, SequenceRatioIsGspo) {
  at::Tensor old = at::full({2, 3}, -1.0, at::kDouble);
  at::Tensor log_ratio = at::tensor(std::vector<double>{0.2, 0.4, 9.0, -0.3, 0.0, 0.15}).view({2, 3});
  at::Tensor logprobs = (old + log_ratio).detach().requires_grad_();
  at::Tensor mask = at::tensor(std::vector<uint8_t>{1, 1, 0, 1, 1, 1}).to(at::kBool).view({2, 3});
  PolicyLossOptions options = dapo_options(3.0);
  options.ratio = RatioLevel::Sequence;
  PolicyLossInputs inputs = inputs_of(logprobs, old, at::tensor(std::vector<double>{1, -1}), mask);
  PolicyLossTerms terms = policy_loss(options, inputs);
  terms.per_token.sum().backward();
  const double s1 = std::exp(-0.05);
  const std::vector<double> loss = {-1.28, -1.28, 0, s1, s1, s1};
  const std::vector<double> gradient = {0, 0, 0, s1, s1, s1};
  for (int64_t i = 0; i < 6; ++i) {
    EXPECT_NEAR(terms.per_token.view({-1})[i].item<double>(), loss[i], kTolerance) << i;
    EXPECT_NEAR(logprobs.grad().view({-1})[i].item<double>(), gradient[i], kTolerance) << i;
  }
  EXPECT_DOUBLE_EQ(terms.stats.clipped_high, 2);
  // A given (all-reduced) sequence log-ratio replaces the local mean.
  inputs.sequence_log_ratio = at::tensor(std::vector<double>{0.0, 0.1});
  PolicyLossTerms given = policy_loss(options, inputs);
  EXPECT_NEAR(given.per_token[0][0].item<double>(), -1.0, kTolerance);
  EXPECT_NEAR(given.per_token[1][2].item<double>(), std::exp(0.1), kTolerance);
}

TEST(PolicyLoss, GspoGradientWithSeqMeanTokenMeanIsTheSequenceObjectives) {
  // The reference: GSPO's objective written directly, J = (1/B) Σ_b max(−Â s_b, −Â clip(s_b)),
  // s_b = exp(mean_t(log π_θ − log π_old)), differentiated by autograd; ours summed as
  // (1/B) Σ_b mean_t loss_t must have the same gradient. Ratios inside the clip range.
  at::Tensor old = at::full({2, 3}, -1.0, at::kDouble);
  at::Tensor log_ratio = at::tensor(std::vector<double>{0.05, -0.1, 0.0, 0.1, 0.02, -0.04}).view({2, 3});
  at::Tensor mask = at::tensor(std::vector<uint8_t>{1, 1, 0, 1, 1, 1}).to(at::kBool).view({2, 3});
  at::Tensor advantages = at::tensor(std::vector<double>{0.7, -1.3});
  at::Tensor ours = (old + log_ratio).detach().requires_grad_();
  at::Tensor reference = (old + log_ratio).detach().requires_grad_();
  PolicyLossOptions options = dapo_options(3.0);
  options.ratio = RatioLevel::Sequence;
  PolicyLossTerms terms = policy_loss(options, inputs_of(ours, old, advantages, mask));
  ((terms.per_token.sum(1) / mask.sum(1)).sum() / 2).backward();
  at::Tensor mask_d = mask.to(at::kDouble);
  at::Tensor s = (((reference - old) * mask_d).sum(1) / mask_d.sum(1)).exp();
  at::Tensor objective = at::max(-advantages * s, -advantages * s.clamp(0.8, 1.28)).sum() / 2;
  objective.backward();
  EXPECT_TRUE(at::allclose(ours.grad(), reference.grad(), 0, kTolerance)) << ours.grad() << reference.grad();
}

TEST(PolicyLoss, Float32Inputs) {
  // The same region table in float32 (tolerance 1e-5): ρ 1.5, Â = 1 clipped; ρ 1.1 unclipped.
  at::Tensor logprobs = at::log(at::tensor(std::vector<float>{1.5f, 1.1f})).view({1, 2}).requires_grad_();
  PolicyLossInputs inputs =
      inputs_of(logprobs, at::zeros({1, 2}), at::ones({1, 2}), at::ones({1, 2}, at::kBool));
  PolicyLossTerms terms = policy_loss(dapo_options(3.0), inputs);
  terms.per_token.sum().backward();
  EXPECT_EQ(terms.per_token.scalar_type(), at::kFloat);
  EXPECT_NEAR(terms.per_token[0][0].item<float>(), -1.28, 1e-5);
  EXPECT_NEAR(terms.per_token[0][1].item<float>(), -1.1, 1e-5);
  EXPECT_NEAR(logprobs.grad()[0][0].item<float>(), 0, 1e-5);
  EXPECT_NEAR(logprobs.grad()[0][1].item<float>(), -1.1, 1e-5);
}

TEST(PolicyLoss, OptionsFromConfig) {
  PolicyLossOptions defaults = PolicyLossOptions::from_config(Config::parse("", "test.yaml"));
  EXPECT_EQ(defaults.ratio, RatioLevel::Token);
  EXPECT_DOUBLE_EQ(defaults.clip_low, 0.2);
  EXPECT_DOUBLE_EQ(defaults.clip_high, 0.3);
  EXPECT_DOUBLE_EQ(defaults.dual_clip, 3.0);
  EXPECT_DOUBLE_EQ(defaults.tis_cap, 0.0);
  EXPECT_TRUE(defaults.kl.as_loss());
  PolicyLossOptions gspo =
      PolicyLossOptions::from_config(Config::parse("", "test.yaml",
                                                   {"trainer.ratio=sequence", "trainer.clip_high=0.28",
                                                    "trainer.tis_cap=2", "trainer.entropy_coef=0.001"}));
  EXPECT_EQ(gspo.ratio, RatioLevel::Sequence);
  EXPECT_DOUBLE_EQ(gspo.clip_high, 0.28);
  EXPECT_DOUBLE_EQ(gspo.tis_cap, 2.0);
  EXPECT_DOUBLE_EQ(gspo.entropy_coef, 0.001);
  test::expect_input_error(
      [] { PolicyLossOptions::from_config(Config::parse("", "test.yaml", {"trainer.dual_clip=0.5"})); },
      "trainer.dual_clip");
}

}  // namespace
}  // namespace lvrl::trainer
