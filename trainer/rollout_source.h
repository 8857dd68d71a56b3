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
};

class RolloutSource {
 public:
  virtual ~RolloutSource();
  // Up to `wanted` groups from `cursor` on, advancing it; fewer at the end of an epoch (the cursor
  // then stands at the end: the next call starts the next epoch).
  virtual RolloutBatch next(int64_t wanted, DataCursor& cursor) = 0;
  // Groups per epoch.
  virtual int64_t size() const = 0;
};

// The groups of a rollout file (cache/rollout_file.h), read in each epoch's order (data_order.h).
// Video rows are read from `cache` by each group's embedding key; a key the cache lacks (evicted, or
// never stored) is an InputError naming it and the group.
class RolloutFileSource : public RolloutSource {
 public:
  RolloutFileSource(const std::string& path, cache::EmbeddingCache& cache);
  RolloutBatch next(int64_t wanted, DataCursor& cursor) override;
  int64_t size() const override { return static_cast<int64_t>(groups_.size()); }

 private:
  std::string path_;
  std::vector<cache::RolloutGroup> groups_;
  cache::EmbeddingCache& cache_;
};

}  // namespace lvrl::trainer
