// Rollout groups for the record and stream tests: two videos (12- and 1-token runs), G = 3 answers
// of different lengths, a reward that needs all 17 digits and a non-ASCII extra.
#pragma once

#include <string>

#include "cache/rollout_record.h"

namespace lvrl::cache::testing {

constexpr int32_t kVideoPad = 151656;  // Qwen2.5-VL's <|video_pad|>
constexpr int32_t kVisionStart = 151652;
constexpr int32_t kVisionEnd = 151653;

// Group i: id "g<i>", prompt "p<i/4>"; the sample lengths are 4, 1 and 7.
inline RolloutGroup example_group(int i) {
  RolloutGroup g;
  g.group_id = "g" + std::to_string(i);
  g.prompt_id = "p" + std::to_string(i / 4);
  g.policy_version = 7;
  // Grids 2×4×6 and 1×2×2 with merge 2: runs of 2·4·6/4 = 12 and 1·2·2/4 = 1 tokens.
  g.prompt_ids = {151644, 872, kVisionStart, kVideoMarker, kVisionEnd, kVisionStart, kVideoMarker, kVisionEnd,
                  3838,   i,   151645};
  g.video_pad_id = kVideoPad;
  g.spatial_merge_size = 2;
  g.video_grids = {{2, 4, 6}, {1, 2, 2}};
  g.second_per_grid_ts = {2.0, 0.5};
  g.embedding_key = "emb1-00ff";
  g.sampling = {1.0, 0.99, 0.05, 40, 7};  // sample c stops at max_new_tokens
  RolloutSample a;
  a.response_ids = {151644, 0, 65, i};
  a.logprobs = {-0.25f, -1e-8f, -30.5f, -0.0f};
  a.sampled_logprobs = {-0.125f, -0.0f, -29.75f, -0.0f};
  a.finish_reason = "stop";
  a.rewards = {{"accuracy", 1}, {"format", 0.5}};
  a.reward = 0.9 * 1 + 0.1 * 0.5 + i;
  a.seed = 18446744073709551615ull;  // the largest uint64 survives
  RolloutSample b;
  b.response_ids = {151645};
  b.logprobs = {-3.5f};
  b.sampled_logprobs = {-3.25f};
  b.finish_reason = "stop";
  b.rewards = {{"accuracy", 0}, {"format", 1}};
  b.reward = 0.1 + 0.2;  // needs all 17 digits
  b.seed = 1;
  RolloutSample c;
  c.response_ids = {1, 2, 3, 4, 5, 6, 7};
  c.logprobs = {-1, -2, -3, -4, -5, -6, -7};
  c.sampled_logprobs = {-0.5f, -1.5f, -2.5f, -3.5f, -4.5f, -5.5f, -6.5f};
  c.finish_reason = "length";
  c.reward = -1;
  c.seed = 2;
  g.samples = {a, b, c};
  g.extra = {{"answer", "<answer>B</answer>"}, {"question", "视频里的人在做什么？ ¿Qué hace? 🎬"}};
  return g;
}

}  // namespace lvrl::cache::testing
