// Where the trainer's rollout groups come from (docs/trainer.md#rollout-sources). The trainer loop
// asks for groups and gets them with their video rows; it does not know whether they came from a
// file, an engine in the same process or the rollout stream of separate workers.
//
// Every rank of the trainer calls next() together and gets the same groups (a source that reads
// from one place — a queue — hands them out from rank 0; this file's source reads the same file on
// every rank). Rows come from the embedding cache by the group's key.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cache/embedding_cache.h"
#include "cache/rollout_record.h"
#include "trainer/trainer_state.h"

namespace lvrl::trainer {

struct RolloutBatch {
  std::vector<cache::RolloutGroup> groups;
  std::vector<at::Tensor> video_rows;  // [groups] the group's video rows; undefined without a video
  int64_t cache_hits = 0;              // video rows found in the cache ...
  int64_t cache_lookups = 0;           // ... of those looked up
  int64_t stale_dropped = 0;           // groups older than the staleness bound, dropped unused
};

// What the trainer tells a source when it asks for groups.
struct SourceContext {
  int64_t policy_version = 0;            // the trainer's current policy version (its step)
  std::function<bool()> stop_requested;  // collective (every rank together); a waiting source polls it
};

class RolloutSource {
 public:
  virtual ~RolloutSource();
  // Up to `wanted` groups from `cursor` on, advancing it; fewer at the end of an epoch (the cursor
  // then stands at the end: the next call starts the next epoch) or when a stop was requested while
  // waiting.
  virtual RolloutBatch next(int64_t wanted, DataCursor& cursor, const SourceContext& context) = 0;
  // Groups per epoch; -1 for an endless stream.
  virtual int64_t size() const = 0;
  // The checkpoint holding these groups' training is durable: the producer may forget them.
  virtual void acknowledge(const std::vector<std::string>& group_ids);
  // After a resume: these groups were trained before the checkpoint (but maybe never acknowledged);
  // acknowledge them when they come back instead of training on them again.
  virtual void already_trained(const std::vector<std::string>& group_ids);
};

// Fills batch.video_rows (one per group) from `cache` by each group's embedding key, each key read
// once; a key the cache lacks (evicted, or never stored) is an InputError naming it, the group and
// `source`.
void attach_video_rows(RolloutBatch& batch, cache::EmbeddingCache& cache, const std::string& source);

// The groups of a rollout file (cache/rollout_file.h), read in each epoch's order (data_order.h).
// Video rows are read from `cache` by each group's embedding key; a key the cache lacks (evicted, or
// never stored) is an InputError naming it and the group.
class RolloutFileSource : public RolloutSource {
 public:
  RolloutFileSource(const std::string& path, cache::EmbeddingCache& cache);
  RolloutBatch next(int64_t wanted, DataCursor& cursor, const SourceContext& context) override;
  int64_t size() const override { return static_cast<int64_t>(groups_.size()); }

 private:
  std::string path_;
  std::vector<cache::RolloutGroup> groups_;
  cache::EmbeddingCache& cache_;
};

}  // namespace lvrl::trainer
