// Content addresses for cached embeddings: the key is a hash of everything the embeddings depend
// on, so changing any of it is a miss, never a stale hit.
//
//   key = "emb1-" + xxh3-128( "lvrl-embedding-key-v1"
//                             ⊕ video bytes hash
//                             ⊕ sampling plan      (which frames: SamplingPlan::describe(), sizes)
//                             ⊕ preprocessing      (resize/normalize/patchify parameters)
//                             ⊕ encoder fingerprint (the vision tower's weights) )
//
// Each part is fed as (tag, length, bytes), so no two different part lists hash the same input.
// Bump the "v1" (and the prefix) when the embedding format itself changes: old entries become
// unreachable and age out of the LRU cache.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>
#include <string_view>

#include "core/hash.h"

namespace lvrl::cache {

struct EmbeddingKeyParts {
  Hash128 video;              // hash_file(video path): the bytes, not the path or mtime
  std::string sampling;       // e.g. "uniform 64 frames; 448x252"
  std::string preprocessing;  // e.g. "qwen2.5-vl patch=14 merge=2 temporal=2 min_pixels=.. max_pixels=.."
  std::string encoder;        // encoder_fingerprint() of the vision weights
};

// "emb1-<32 hex digits>". Every text part must be non-empty (an empty one is a bug in the caller:
// two different configurations could then share keys).
std::string embedding_key(const EmbeddingKeyParts& parts);

// A fingerprint of weights: names, dtypes, shapes and bytes, in name order (so the order tensors
// were loaded in does not matter). 32 hex digits.
std::string encoder_fingerprint(const std::map<std::string, at::Tensor>& weights);

}  // namespace lvrl::cache
