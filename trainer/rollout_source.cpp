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

void RolloutSource::acknowledge(const std::vector<std::string>& /*group_ids*/) {}
void RolloutSource::already_trained(const std::vector<std::string>& /*group_ids*/) {}

void attach_video_rows(RolloutBatch& batch, cache::EmbeddingCache& cache, const std::string& source) {
  std::map<std::string, at::Tensor> rows_by_key;
  batch.video_rows.clear();
  for (const cache::RolloutGroup& group : batch.groups) {
    at::Tensor rows;
    if (!group.embedding_key.empty()) {
      auto found = rows_by_key.find(group.embedding_key);
      if (found == rows_by_key.end()) {
        ++batch.cache_lookups;
        std::optional<cache::CachedEmbedding> entry = cache.get(group.embedding_key);
        if (!entry) {
          throw InputError({source, 0, "embedding_key", group.embedding_key},
                           fmt::format("group {}: the embedding cache holds no rows under this key (evicted, "
                                       "or never stored: run lvrl preprocess on the dataset)",
                                       group.group_id));
        }
        ++batch.cache_hits;
        found = rows_by_key.emplace(group.embedding_key, entry->tensor).first;
      }
      rows = found->second;
    }
    batch.video_rows.push_back(rows);
  }
}

RolloutBatch RolloutFileSource::next(int64_t wanted, DataCursor& cursor, const SourceContext& /*context*/) {
  cursor = cursor_to_read_from(cursor, size(), path_);
  RolloutBatch batch;
  for (int64_t index : take_items(cursor, size(), wanted)) batch.groups.push_back(groups_[index]);
  attach_video_rows(batch, cache_, path_);
  return batch;
}

}  // namespace lvrl::trainer
