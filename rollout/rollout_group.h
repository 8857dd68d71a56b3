// A finished request as the record the trainer reads (cache/rollout_record.h, stream format 2): the
// prompt's ids with the video-pad runs collapsed, the video's grids and key, the sampling policy, and
// per answer its ids, both log-prob vectors, finish reason and seed. Rewards are the caller's: it
// scores the answers' text and fills samples[i].rewards / reward.
#pragma once

#include <map>
#include <string>

#include "cache/rollout_record.h"
#include "model/qwen_config.h"
#include "rollout/engine.h"

namespace lvrl::rollout {

struct GroupContext {
  std::string group_id;   // unique per group (the trainer de-duplicates by it)
  std::string prompt_id;  // the dataset record
  int64_t policy_version = 0;
  std::string embedding_key;  // the video rows' cache key ("" without video)
  std::map<std::string, std::string> extra;
};

// request: what was submitted (its prompt ids, grids and sampling parameters); result: its answers,
// with log-probs (rank 0's result under SP). A prompt whose pad runs disagree with its grids is an
// InputError naming prompt_ids.
cache::RolloutGroup to_rollout_group(const GenerationRequest& request, const GenerationResult& result,
                                     const model::QwenConfig& config, const GroupContext& context);

}  // namespace lvrl::rollout
