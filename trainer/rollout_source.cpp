#include "trainer/rollout_source.h"

#include <fmt/format.h>

#include <map>

#include "cache/rollout_file.h"
#include "core/error.h"
#include "trainer/data_order.h"

namespace lvrl::trainer {

RolloutSource::~RolloutSource() = default;

RolloutFileSource::RolloutFileSource(const std::string& path, cache::EmbeddingCache& cache)
    : path_(path), groups_(cache::read_rollout_file(path)), cache_(cache) {
  if (groups_.empty()) throw InputError({path, 0, "", ""}, "the rollout file holds no groups");
}

RolloutBatch RolloutFileSource::next(int64_t wanted, DataCursor& cursor) {
  cursor = cursor_to_read_from(cursor, size(), path_);
  RolloutBatch batch;
  std::map<std::string, at::Tensor> rows_by_key;
  for (int64_t index : take_items(cursor, size(), wanted)) {
    const cache::RolloutGroup& group = groups_[index];
    at::Tensor rows;
    if (!group.embedding_key.empty()) {
      auto found = rows_by_key.find(group.embedding_key);
      if (found == rows_by_key.end()) {
        ++batch.cache_lookups;
        std::optional<cache::CachedEmbedding> entry = cache_.get(group.embedding_key);
        if (!entry) {
          throw InputError({path_, 0, "embedding_key", group.embedding_key},
                           fmt::format("group {}: the embedding cache holds no rows under this key (evicted, "
                                       "or never stored: run lvrl preprocess on the dataset)",
                                       group.group_id));
        }
        ++batch.cache_hits;
        found = rows_by_key.emplace(group.embedding_key, entry->tensor).first;
      }
      rows = found->second;
    }
    batch.groups.push_back(group);
    batch.video_rows.push_back(rows);
  }
  return batch;
}

}  // namespace lvrl::trainer
