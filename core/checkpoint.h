// Model weights as a Hugging Face checkpoint directory, the layout `transformers` loads:
//   dir/model.safetensors                                  when the weights fit one shard, else
//   dir/model-00001-of-0000N.safetensors ... + dir/model.safetensors.index.json
//       {"metadata": {"total_size": bytes}, "weight_map": {tensor name: shard file name}}
// Every shard's __metadata__ carries "format": "pt" (transformers refuses safetensors without it).
#pragma once

#include <cstdint>
#include <string>

#include "core/safetensors.h"

namespace lvrl::checkpoint {

inline constexpr const char* kSingleFileName = "model.safetensors";
inline constexpr const char* kIndexFileName = "model.safetensors.index.json";

// Writes the weights into `dir` (created if missing). Tensors go into shards in name order; a shard
// holds at most `max_shard_bytes` of tensor data (header excluded, as in transformers), unless one
// tensor alone is larger. Each file is written crash-safely and the index last, so a crash leaves
// either the old layout or the new one readable. Files of an earlier save that the new layout does
// not use (a stale index, single file or shards) are removed afterwards.
//
// Overwriting a *sharded* checkpoint in place replaces shard files one by one before the index:
// a crash in between can leave new shards under the old index. Save into a fresh directory and
// rename it when the whole checkpoint must switch at once.
void save(const std::string& dir, const safetensors::TensorMap& tensors,
          uint64_t max_shard_bytes = 5ull << 30, const safetensors::Metadata& metadata = {});

// Reads either layout, the index when present. The index is checked: JSON shape, shard names
// plain files inside `dir` (no '/' or '..'), every listed shard present and holding the tensors it
// is listed for, no tensor in a shard that the weight_map does not list there, and total_size (when
// present) equal to the tensors' bytes. Errors are InputErrors naming the file and tensor.
safetensors::TensorMap load(const std::string& dir);

}  // namespace lvrl::checkpoint
