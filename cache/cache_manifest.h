// The manifest of one cached tensor: the commit marker of a put, and everything a reader needs to
// check what it reads.
//
// A put writes its chunks under a namespace of its own (`writer`), then the manifest, with SET NX:
// the first complete put of a key wins, and a reader only ever follows a manifest to chunks that
// were all stored before it. The manifest is JSON (small: a few hundred bytes plus one number per
// frame timestamp), so an operator can read it with redis-cli.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace lvrl::cache {

// What the encoder produced the tensor from; stored beside it and returned on a hit.
struct EmbeddingMetadata {
  std::vector<int64_t> grid_thw;         // [3 × videos]: (T, H, W) patch grid per video (Qwen2.5-VL)
  std::vector<double> frame_timestamps;  // [frames] seconds of each sampled frame
  std::string encoder_fingerprint;       // the vision weights' fingerprint (content_key.h)
  std::map<std::string, std::string> extra;
};

struct CacheManifest {
  static constexpr int kFormat = 1;
  int format = kFormat;
  std::string writer;  // the put's chunk namespace: 16 hex digits
  at::ScalarType dtype = at::kFloat;
  std::vector<int64_t> shape;  // [] for a 0-dim tensor
  uint64_t bytes = 0;          // numel × element size
  uint64_t chunk_bytes = 0;    // every chunk but the last has exactly this many bytes
  uint64_t chunks = 0;         // ceil(bytes / chunk_bytes)
  std::string checksum;        // XXH3-128 of the payload, core/hash.h hex
  int64_t created_unix_ms = 0;
  EmbeddingMetadata metadata;

  std::string to_json() const;
  // Text that is not a manifest (not JSON, a field missing or of the wrong type, an unknown dtype or
  // format) is an InputError: its key() names the field ("" when the text is not a JSON object), its
  // file() is `source` (the manifest's Redis key, for messages).
  static CacheManifest from_json(std::string_view text, const std::string& source = "");
  // "" when shape, dtype, bytes and chunk layout agree; otherwise what disagrees.
  std::string inconsistency() const;
  uint64_t chunk_size(uint64_t index) const;  // bytes in chunk `index`
};

// Safetensors names ("F32", "BF16", ...): the dtypes a manifest may hold. nullptr / false for others.
const char* manifest_dtype_name(at::ScalarType dtype);
bool manifest_dtype_from_name(std::string_view name, at::ScalarType& dtype);

}  // namespace lvrl::cache
