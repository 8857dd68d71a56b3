// One rollout group as it travels from a rollout process to the trainer: the fields of a Redis
// stream entry (stream format 2). A group is one prompt and its G sampled answers, and it is
// self-sufficient: the trainer rebuilds the exact prompt ids, M-RoPE positions and sampling policy
// from the record and never re-renders a prompt. Bulk tensors (video embeddings) stay in the
// embedding cache and travel by key.
//
// The prompt is stored with each <|video_pad|> run collapsed to one marker (kVideoMarker, -1): a
// run is t·h·w / merge² tokens (thousands for a long video) and follows from the video's grid, so
// storing it would only repeat the grid. A negative marker is never a token id, so a prompt that was
// not expanded fails at the embedding lookup instead of passing as a one-token video.
//
// Encoding: token ids and log-probs as little-endian binary (int32 / float32: 4 bytes per token,
// exact), everything else as text, numbers in shortest round-trip decimal, so an entry is compact
// and readable in redis-cli for everything but the token arrays. Field names:
//   format (= 2), group, prompt, version, prompt_ids, video_pad, merge, grids ("4x36x64,8x20x30"),
//   second_per_grid_ts ("1,0.5"), embedding, sampling.{temperature,top_p,min_p,top_k,max_new_tokens},
//   samples (G), s<i>.{response,logprobs,sampled_logprobs,finish,reward,seed}, s<i>.reward.<name>,
//   x.<name> (extras).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace lvrl::cache {

constexpr int kRolloutFormat = 2;     // the "format" field; entries without it are format 1
constexpr int32_t kVideoMarker = -1;  // stands for one video's whole <|video_pad|> run in prompt_ids

struct RolloutSample {
  std::vector<int32_t> response_ids;      // [T] sampled tokens
  std::vector<float> logprobs;            // [T] under softmax(logits / temperature), full vocabulary:
                                          //     what the trainer recomputes
  std::vector<float> sampled_logprobs;    // [T] under the truncated distribution actually sampled from
  std::string finish_reason;              // "stop" | "length"
  std::map<std::string, double> rewards;  // named components: "accuracy", "format", ...
  double reward = 0;                      // the total the trainer uses
  uint64_t seed = 0;                      // the sampler's seed for this answer

  bool operator==(const RolloutSample& other) const;
};

// The truncation policy the answers were sampled under (rollout.* config keys).
struct SamplingRecord {
  double temperature = 1;
  double top_p = 1;
  double min_p = 0;
  int64_t top_k = 0;  // 0 = all
  int64_t max_new_tokens = 0;

  bool operator==(const SamplingRecord& other) const;
};

struct RolloutGroup {
  std::string group_id;             // unique per group: the trainer de-duplicates by it
  std::string prompt_id;            // the dataset record
  int64_t policy_version = 0;       // the weights that generated the answers
  std::vector<int32_t> prompt_ids;  // [S'] the prompt, each <|video_pad|> run collapsed to kVideoMarker
  int32_t video_pad_id = 0;         // the token each marker expands to
  int64_t spatial_merge_size = 2;   // run length = t·h·w / merge²
  std::vector<std::array<int64_t, 3>> video_grids;  // (t, h, w) patch grid per video, prompt order
  std::vector<double> second_per_grid_ts;           // per video, for M-RoPE temporal positions
  std::string embedding_key;  // EmbeddingCache key of the video embeddings ("" when there is no video)
  SamplingRecord sampling;
  std::vector<RolloutSample> samples;  // G answers; index = position in the group
  std::map<std::string, std::string> extra;

  // The prompt as the model saw it: [S] token ids with every marker expanded to its run.
  std::vector<int32_t> expand_prompt() const;
  bool operator==(const RolloutGroup& other) const;
};

// --- The video-pad runs ---

struct CollapsedPrompt {
  std::vector<int32_t> ids;          // each maximal run of video_pad_id replaced by one kVideoMarker
  std::vector<int64_t> run_lengths;  // one per marker, in order
};
// Token ids must be non-negative (InputError naming prompt_ids otherwise).
CollapsedPrompt collapse_video_pads(const std::vector<int32_t>& ids, int32_t video_pad_id);
// The inverse: marker k becomes run_lengths[k] copies of video_pad_id. One run length per marker
// (InputError naming prompt_ids otherwise).
std::vector<int32_t> expand_video_pads(const std::vector<int32_t>& collapsed, int32_t video_pad_id,
                                       const std::vector<int64_t>& run_lengths);
// t·h·w / merge² per grid; h and w must be positive multiples of merge (InputError naming grids).
std::vector<int64_t> video_pad_run_lengths(const std::vector<std::array<int64_t, 3>>& grids,
                                           int64_t spatial_merge_size);
// The producer's way in: stores the rendered prompt `ids` ([S], runs expanded) collapsed, with the
// pad id, grids and merge size. Each run must be as long as its grid says (InputError naming
// prompt_ids otherwise): a prompt and grid that disagree would misplace every M-RoPE position.
void store_prompt(RolloutGroup& group, const std::vector<int32_t>& ids, int32_t video_pad_id,
                  std::vector<std::array<int64_t, 3>> video_grids, int64_t spatial_merge_size);

// --- The stream entry ---

using StreamFields = std::vector<std::pair<std::string, std::string>>;

// A group that is not self-consistent is an InputError naming the (wire) field at fault: markers
// vs grids vs second_per_grid_ts, per-sample lengths, finish reasons, a missing id.
void check_rollout_group(const RolloutGroup& group);
// Checks the group first, so a bad group fails at the producer rather than in the dead-letter stream.
StreamFields encode_rollout(const RolloutGroup& group);
// An entry that is not a format-2 rollout group is an InputError whose key() names the field that
// is missing, malformed, repeated or unknown ("format" for a format-1 entry), and whose value()
// holds it (cut to 80 bytes).
RolloutGroup decode_rollout(const StreamFields& fields);

}  // namespace lvrl::cache
