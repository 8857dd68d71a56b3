// One rollout as it travels from a rollout process to the trainer: the fields of a Redis stream
// entry. Small things go in the entry; bulk tensors (video embeddings) stay in the embedding cache
// and travel by key.
//
// Encoding: token ids and log-probs as little-endian binary (int32 / float32: 4 bytes per token,
// exact), numbers as shortest round-trip decimal text, so an entry is compact and still readable
// in redis-cli for everything but the two token arrays.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace lvrl::cache {

struct RolloutRecord {
  std::string rollout_id;                 // unique per generated answer: the trainer de-duplicates by it
  std::string prompt_id;                  // the dataset record (GRPO groups answers by it)
  int64_t policy_version = 0;             // the weights that generated it
  std::vector<int32_t> token_ids;         // [T] response tokens
  std::vector<float> behaviour_logprobs;  // [T] log-prob of each token under the generating policy
  std::map<std::string, double> rewards;  // named components: "accuracy", "format", ...
  double reward = 0;                      // the total the trainer uses
  std::string embedding_key;              // EmbeddingCache key of the video embeddings ("" if none)
  std::map<std::string, std::string> extra;

  bool operator==(const RolloutRecord& other) const;
};

using StreamFields = std::vector<std::pair<std::string, std::string>>;

StreamFields encode_rollout(const RolloutRecord& record);
// An entry that is not a rollout is an InputError whose key() names the field that is missing,
// malformed or unknown, and whose value() holds it (cut to 80 bytes).
RolloutRecord decode_rollout(const StreamFields& fields);

}  // namespace lvrl::cache
