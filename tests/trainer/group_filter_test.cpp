// DAPO's dynamic sampling and overlong shaping (docs/trainer.md#dapo-extras): rounds of groups with
// the kept / dropped / surplus indices written by hand, and the shaping table from DAPO's formula
// with L = 20, B = 5 (the ramp starts after 15 tokens). Tolerance 1e-12.
#include "trainer/group_filter.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

#include "core/config.h"
#include "tests/support/expect_error.h"

namespace lvrl::trainer {
namespace {

using Indices = std::vector<size_t>;

DynamicSamplingOptions enabled(int64_t max_rounds) {
  return {true, max_rounds};
}

TEST(DynamicSampling, AllEqualGroupsAreDroppedAndTheStepWaitsUpToMaxRounds) {
  DynamicSamplingFilter filter(enabled(3), 3);
  EXPECT_TRUE(filter.wait_for_more());
  auto round = filter.offer({{1, 0, 1}, {1, 1, 1}, {0, 0, 0}, {0.9, 0.1}});
  EXPECT_EQ(round.kept, (Indices{0, 3}));
  EXPECT_EQ(round.dropped, (Indices{1, 2}));
  EXPECT_TRUE(round.surplus.empty());
  EXPECT_TRUE(filter.wait_for_more());
  round = filter.offer({{0, 0}, {0.5}});  // a group of one answer carries no signal either
  EXPECT_TRUE(round.kept.empty());
  EXPECT_EQ(round.dropped, (Indices{0, 1}));
  EXPECT_TRUE(filter.wait_for_more());
  filter.offer({{1, 1}});
  EXPECT_FALSE(filter.wait_for_more());  // three rounds: train on what there is
  EXPECT_TRUE(filter.trained_short());
  EXPECT_EQ(filter.rounds(), 3);
  EXPECT_EQ(filter.kept(), 2);
  EXPECT_EQ(filter.dropped(), 5);
  EXPECT_EQ(filter.shortfall(), 1);
}

TEST(DynamicSampling, AFullStepStopsWaitingAndReportsTheSurplus) {
  DynamicSamplingFilter filter(enabled(3), 2);
  auto round = filter.offer({{1, 0}, {0, 0}, {0, 1}, {1, 0, 0}});
  EXPECT_EQ(round.kept, (Indices{0, 2}));
  EXPECT_EQ(round.dropped, (Indices{1}));
  EXPECT_EQ(round.surplus, (Indices{3}));
  EXPECT_FALSE(filter.wait_for_more());
  EXPECT_FALSE(filter.trained_short());
  EXPECT_EQ(filter.shortfall(), 0);
  EXPECT_EQ(filter.surplus(), 1);
}

TEST(DynamicSampling, DisabledKeepsEveryGroupAfterOneRound) {
  DynamicSamplingFilter filter(DynamicSamplingOptions{false, 3}, 3);
  auto round = filter.offer({{1, 1}, {0, 1}});
  EXPECT_EQ(round.kept, (Indices{0, 1}));
  EXPECT_TRUE(round.dropped.empty());
  EXPECT_FALSE(filter.wait_for_more());
  EXPECT_EQ(filter.dropped(), 0);
}

TEST(DynamicSampling, OneRoundMeansNoWaiting) {
  DynamicSamplingFilter filter(enabled(1), 4);
  filter.offer({{1, 1}, {0, 1}});
  EXPECT_FALSE(filter.wait_for_more());
  EXPECT_TRUE(filter.trained_short());
  EXPECT_EQ(filter.shortfall(), 3);
}

TEST(DynamicSampling, RewardsAllEqualIsExact) {
  EXPECT_TRUE(rewards_all_equal({0.3}));
  EXPECT_TRUE(rewards_all_equal({0.1, 0.1, 0.1}));
  EXPECT_FALSE(rewards_all_equal({0.1, 0.1, 0.1 + 1e-15}));
}

TEST(OverlongShaping, DapoLinearRampThenFullPenalty) {
  OverlongOptions options{20, 5, 1.0};
  struct Row {
    int64_t length;
    bool truncated;
    double expected;
  };
  // ((L − B) − |y|) / B = (15 − |y|) / 5 in (15, 20]; −1 past L or when truncated.
  const std::vector<Row> table = {{1, false, 0},     {10, false, 0},    {15, false, 0},  {16, false, -0.2},
                                  {18, false, -0.6}, {20, false, -1.0}, {21, false, -1}, {17, true, -1}};
  for (const Row& r : table)
    EXPECT_NEAR(options.shaping(r.length, r.truncated), r.expected, 1e-12) << r.length;
  OverlongOptions half{20, 5, 0.5};
  EXPECT_NEAR(half.shaping(18, false), -0.3, 1e-12);
  EXPECT_NEAR(half.shaping(20, true), -0.5, 1e-12);
  OverlongOptions off{20, 0, 1.0};
  EXPECT_EQ(off.shaping(25, true), 0.0);
}

TEST(OverlongShaping, AppliedToRewards) {
  OverlongOptions options{20, 5, 1.0};
  at::Tensor shaped = apply_overlong_shaping(options, at::tensor(std::vector<float>{1.0f, 0.5f, 0.9f}),
                                             at::tensor(std::vector<int64_t>{18, 10, 20}),
                                             at::tensor(std::vector<uint8_t>{0, 0, 1}).to(at::kBool));
  const std::vector<double> expected = {1.0 - 0.6, 0.5, 0.9 - 1.0};
  for (int64_t i = 0; i < 3; ++i)
    EXPECT_NEAR(shaped[i].item<double>(), expected[i], 1e-7) << i;  // float32 input
}

TEST(GroupFilter, OptionsFromConfig) {
  Config config = Config::parse(
      "", "test.yaml",
      {"trainer.dynamic_sampling.enabled=true", "trainer.dynamic_sampling.max_rounds=5",
       "trainer.overlong.buffer=64", "trainer.overlong.penalty=0.5", "rollout.max_new_tokens=512"});
  DynamicSamplingOptions sampling = DynamicSamplingOptions::from_config(config);
  EXPECT_TRUE(sampling.enabled);
  EXPECT_EQ(sampling.max_rounds, 5);
  OverlongOptions overlong = OverlongOptions::from_config(config);
  EXPECT_EQ(overlong.max_length, 512);
  EXPECT_EQ(overlong.buffer, 64);
  EXPECT_DOUBLE_EQ(overlong.penalty, 0.5);
  EXPECT_FALSE(OverlongOptions::from_config(Config::parse("", "test.yaml")).enabled());
  test::expect_input_error(
      [] {
        OverlongOptions::from_config(
            Config::parse("", "test.yaml", {"trainer.overlong.buffer=600", "rollout.max_new_tokens=512"}));
      },
      "trainer.overlong.buffer");
}

}  // namespace
}  // namespace lvrl::trainer
