// Loss aggregation against hand-computed sums (docs/trainer.md#aggregation-over-tokens), and the
// distributed contract of loss_aggregation.h: the per-micro-batch / per-rank losses, each divided by
// the whole step's normaliser, sum to the single-device loss. float64, tolerance 1e-12.
#include "trainer/loss_aggregation.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

#include "core/config.h"

namespace lvrl::trainer {
namespace {

constexpr double kTolerance = 1e-12;

// Row 0: answer tokens {1, 2, 3} (+ a masked 100); row 1: {4} (+ three masked 100s).
at::Tensor losses() {
  return at::tensor(std::vector<double>{1, 2, 3, 100, 4, 100, 100, 100}, at::kDouble).view({2, 4});
}
at::Tensor answer_mask() {
  return at::tensor(std::vector<uint8_t>{1, 1, 1, 0, 1, 0, 0, 0}).to(at::kBool).view({2, 4});
}

LossAggregationOptions mode(LossAggregation aggregation) {
  LossAggregationOptions options;
  options.mode = aggregation;
  options.constant = 8;
  return options;
}

struct ModeCase {
  LossAggregation mode;
  double expected;
  const char* name;
};

const std::vector<ModeCase> kModes = {
    {LossAggregation::TokenMean, (1 + 2 + 3 + 4) / 4.0, "token_mean"},                    // 2.5
    {LossAggregation::SeqMeanTokenMean, (6 / 3.0 + 4 / 1.0) / 2, "seq_mean_token_mean"},  // 3
    {LossAggregation::SeqMeanTokenSum, 10 / 2.0, "seq_mean_token_sum"},                   // 5
    {LossAggregation::Constant, 10 / (8.0 * 2), "constant"},                              // 0.625
};

TEST(LossAggregation, EachModeOnOneDevice) {
  const StepNormaliser step = count_step_normaliser(answer_mask());
  EXPECT_DOUBLE_EQ(step.tokens, 4);
  EXPECT_DOUBLE_EQ(step.answers, 2);
  for (const ModeCase& c : kModes) {
    EXPECT_NEAR(aggregate_loss(mode(c.mode), losses(), answer_mask(), step).item<double>(), c.expected,
                kTolerance)
        << c.name;
  }
}

TEST(LossAggregation, MicroBatchesAndSpShardsSumToTheSingleDeviceLoss) {
  // Three pieces: rank A holds row 0's first two tokens, rank B its third (an SP split: n_0 = 3 on
  // both, the answer counted on A only), a second micro-batch holds row 1.
  const at::Tensor l = losses();
  const at::Tensor m = answer_mask();
  struct Piece {
    at::Tensor loss, mask, sequence_tokens;
    bool counts_answers;
  };
  const std::vector<Piece> pieces = {
      {l.narrow(0, 0, 1).narrow(1, 0, 2), m.narrow(0, 0, 1).narrow(1, 0, 2),
       at::tensor(std::vector<double>{3}), true},
      {l.narrow(0, 0, 1).narrow(1, 2, 2), m.narrow(0, 0, 1).narrow(1, 2, 2),
       at::tensor(std::vector<double>{3}), false},
      {l.narrow(0, 1, 1), m.narrow(0, 1, 1), at::tensor(std::vector<double>{1}), true},
  };
  StepNormaliser step;
  for (const Piece& p : pieces) {
    StepNormaliser local = count_step_normaliser(p.mask);
    if (!p.counts_answers) local.answers = 0;
    step += local;
  }
  EXPECT_DOUBLE_EQ(step.tokens, 4);
  EXPECT_DOUBLE_EQ(step.answers, 2);
  for (const ModeCase& c : kModes) {
    double total = 0;
    for (const Piece& p : pieces) {
      total += aggregate_loss(mode(c.mode), p.loss, p.mask, step, p.sequence_tokens).item<double>();
    }
    EXPECT_NEAR(total, c.expected, kTolerance) << c.name;
  }
}

TEST(LossAggregation, GradientsAreTheModesWeights) {
  // seq_mean_token_mean: ∂/∂l_t = 1 / (n_b · N_answers): row 0 tokens 1/6, row 1 1/2, masked 0.
  at::Tensor l = losses().requires_grad_();
  aggregate_loss(mode(LossAggregation::SeqMeanTokenMean), l, answer_mask(),
                 count_step_normaliser(answer_mask()))
      .backward();
  const std::vector<double> expected = {1 / 6.0, 1 / 6.0, 1 / 6.0, 0, 0.5, 0, 0, 0};
  for (int64_t i = 0; i < 8; ++i)
    EXPECT_NEAR(l.grad().view({-1})[i].item<double>(), expected[i], kTolerance) << i;
}

TEST(LossAggregation, AStepWithoutTokensIsZero) {
  at::Tensor l = losses().requires_grad_();
  at::Tensor none = at::zeros({2, 4}, at::kBool);
  at::Tensor loss = aggregate_loss(mode(LossAggregation::TokenMean), l, none, count_step_normaliser(none));
  EXPECT_EQ(loss.item<double>(), 0.0);
  loss.backward();
  EXPECT_EQ(l.grad().abs().sum().item<double>(), 0.0);
}

TEST(LossAggregation, OptionsFromConfig) {
  LossAggregationOptions defaults = LossAggregationOptions::from_config(Config::parse("", "test.yaml"));
  EXPECT_EQ(defaults.mode, LossAggregation::TokenMean);
  EXPECT_DOUBLE_EQ(defaults.constant, 1024);
  LossAggregationOptions constant = LossAggregationOptions::from_config(
      Config::parse("", "test.yaml", {"trainer.loss_agg=constant", "trainer.loss_agg_constant=2048"}));
  EXPECT_EQ(constant.mode, LossAggregation::Constant);
  EXPECT_DOUBLE_EQ(constant.constant, 2048);
  EXPECT_EQ(
      LossAggregationOptions::from_config(Config::parse("", "t", {"trainer.loss_agg=seq_mean_token_mean"}))
          .mode,
      LossAggregation::SeqMeanTokenMean);
  EXPECT_EQ(
      LossAggregationOptions::from_config(Config::parse("", "t", {"trainer.loss_agg=seq_mean_token_sum"}))
          .mode,
      LossAggregation::SeqMeanTokenSum);
}

}  // namespace
}  // namespace lvrl::trainer
