// The rollout record (stream format 2): a whole group survives encoding bit for bit, its fields are
// the ones docs/cache.md lists, and the video-pad runs collapse to markers and expand back to the
// prompt the model saw, with run lengths from the grids (t·h·w / merge², worked out by hand here).
#include "cache/rollout_record.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "rollout_groups.h"
#include "tests/support/expect_error.h"

namespace lvrl::cache {
namespace {
using test::expect_input_error;
using testing::example_group;
using testing::kVideoPad;
using testing::kVisionEnd;
using testing::kVisionStart;

std::string field(const StreamFields& fields, const std::string& name) {
  for (const auto& [key, value] : fields) {
    if (key == name) return value;
  }
  ADD_FAILURE() << "no field " << name;
  return "";
}

TEST(RolloutRecord, AGroupSurvivesEncodingExactly) {
  const RolloutGroup original = example_group(3);
  const StreamFields fields = encode_rollout(original);
  EXPECT_EQ(decode_rollout(fields), original);

  // The wire form, checked by hand.
  EXPECT_EQ(field(fields, "format"), "2");
  EXPECT_EQ(field(fields, "group"), "g3");
  EXPECT_EQ(field(fields, "grids"), "2x4x6,1x2x2");
  EXPECT_EQ(field(fields, "second_per_grid_ts"), "2,0.5");
  EXPECT_EQ(field(fields, "samples"), "3");
  EXPECT_EQ(field(fields, "s1.reward"), "0.30000000000000004");
  EXPECT_EQ(field(fields, "s0.reward.format"), "0.5");
  EXPECT_EQ(field(fields, "s0.seed"), "18446744073709551615");
  EXPECT_EQ(field(fields, "s2.finish"), "length");
  EXPECT_EQ(field(fields, "sampling.top_p"), "0.99");
  EXPECT_EQ(field(fields, "x.question"), "视频里的人在做什么？ ¿Qué hace? 🎬");
  const std::string prompt = field(fields, "prompt_ids");
  ASSERT_EQ(prompt.size(), 11u * 4);  // 11 ids with the two runs collapsed, int32 each
  EXPECT_EQ(prompt.substr(0, 4), std::string("\x5c\x50\x02\x00", 4));  // 151644 = 0x0002505c, little-endian
  EXPECT_EQ(prompt.substr(12, 4), std::string(4, '\xff'));             // the marker -1
  EXPECT_EQ(field(fields, "s2.response").size(), 7u * 4);
  EXPECT_EQ(field(fields, "s1.sampled_logprobs"), std::string("\x00\x00\x50\xc0", 4));  // -3.25f

  const RolloutGroup different_lengths = decode_rollout(fields);
  ASSERT_EQ(different_lengths.samples.size(), 3u);
  EXPECT_EQ(different_lengths.samples[0].response_ids.size(), 4u);
  EXPECT_EQ(different_lengths.samples[1].response_ids.size(), 1u);
  EXPECT_EQ(different_lengths.samples[2].response_ids.size(), 7u);
  EXPECT_TRUE(different_lengths.samples[2].rewards.empty());
}

TEST(RolloutRecord, AGroupWithoutVideoSurvivesEncoding) {
  RolloutGroup text_only = example_group(0);
  text_only.prompt_ids = {151644, 872, 3838, 151645};
  text_only.video_grids.clear();
  text_only.second_per_grid_ts.clear();
  text_only.embedding_key.clear();
  const StreamFields fields = encode_rollout(text_only);
  EXPECT_EQ(field(fields, "grids"), "");
  EXPECT_EQ(decode_rollout(fields), text_only);
  EXPECT_EQ(text_only.expand_prompt(), text_only.prompt_ids);
}

TEST(VideoPadRuns, CollapseAndExpandTwoVideos) {
  // Grids 2×4×6 and 1×2×2, merge 2: runs of 2·4·6/4 = 12 and 1·2·2/4 = 1 tokens.
  const std::vector<std::array<int64_t, 3>> grids = {{2, 4, 6}, {1, 2, 2}};
  EXPECT_EQ(video_pad_run_lengths(grids, 2), (std::vector<int64_t>{12, 1}));
  std::vector<int32_t> full = {151644, 872, kVisionStart};
  full.insert(full.end(), 12, kVideoPad);
  full.insert(full.end(), {kVisionEnd, 3838, kVisionStart, kVideoPad, kVisionEnd, 151645});
  ASSERT_EQ(full.size(), 21u);

  const CollapsedPrompt collapsed = collapse_video_pads(full, kVideoPad);
  const std::vector<int32_t> expected = {151644, 872,          kVisionStart, -1,         kVisionEnd,
                                         3838,   kVisionStart, -1,           kVisionEnd, 151645};
  EXPECT_EQ(collapsed.ids, expected);
  EXPECT_EQ(collapsed.run_lengths, (std::vector<int64_t>{12, 1}));
  EXPECT_EQ(expand_video_pads(collapsed.ids, kVideoPad, collapsed.run_lengths), full);

  RolloutGroup group = example_group(0);
  store_prompt(group, full, kVideoPad, grids, 2);
  EXPECT_EQ(group.prompt_ids, expected);
  EXPECT_EQ(group.expand_prompt(), full);
  EXPECT_EQ(decode_rollout(encode_rollout(group)).expand_prompt(), full);

  // No video: nothing changes.
  const std::vector<int32_t> text = {1, 2, 3};
  EXPECT_EQ(collapse_video_pads(text, kVideoPad).ids, text);
  EXPECT_TRUE(collapse_video_pads(text, kVideoPad).run_lengths.empty());
}

TEST(VideoPadRuns, MismatchesAreInputErrors) {
  std::vector<int32_t> full = {1, kVideoPad, kVideoPad, kVideoPad, 2};  // a 3-token run
  RolloutGroup group = example_group(0);
  expect_input_error([&] { store_prompt(group, full, kVideoPad, {{1, 2, 2}}, 2); }, "prompt_ids");  // 1 token
  expect_input_error([&] { store_prompt(group, full, kVideoPad, {{1, 2, 2}, {1, 2, 2}}, 2); }, "prompt_ids");
  expect_input_error([&] { store_prompt(group, {1, -5}, kVideoPad, {}, 2); }, "prompt_ids");
  store_prompt(group, full, kVideoPad, {{3, 2, 2}}, 2);  // 3·2·2/4 = 3
  EXPECT_EQ(group.prompt_ids, (std::vector<int32_t>{1, -1, 2}));
  expect_input_error([&] { expand_video_pads({1, -1, 2, -1}, kVideoPad, {3}); }, "prompt_ids");
  expect_input_error([&] { expand_video_pads({1, -1}, kVideoPad, {0}); }, "prompt_ids");
  expect_input_error([&] { video_pad_run_lengths({{1, 3, 2}}, 2); }, "grids");  // h not a multiple of 2
  expect_input_error([&] { video_pad_run_lengths({{0, 2, 2}}, 2); }, "grids");
  expect_input_error([&] { video_pad_run_lengths({{1, 2, 2}}, 0); }, "merge");
}

}  // namespace
}  // namespace lvrl::cache
