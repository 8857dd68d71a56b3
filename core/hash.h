// Content hashing: XXH3-128 (Debian's libxxhash). Embedding cache keys are content addresses — a
// hash of the video bytes, the sampling and preprocessing parameters and the encoder weights — so
// the hash must be fast on multi-GB videos, stable across machines and releases, and wide enough
// that two different inputs never share a key in practice (128 bits; 64 would be enough for
// collisions by chance, but the width costs nothing here).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

struct XXH3_state_s;  // xxhash.h's streaming state; the header stays out of ours

namespace lvrl {

struct Hash128 {
  uint64_t high = 0;
  uint64_t low = 0;

  // 32 lowercase hex digits in XXH128's canonical (big-endian, high half first) order: the same text
  // `xxhsum -H2` prints, so keys can be checked against the command-line tool.
  std::string hex() const;

  bool operator==(const Hash128& other) const { return high == other.high && low == other.low; }
  bool operator!=(const Hash128& other) const { return !(*this == other); }
};

Hash128 hash_bytes(const void* data, size_t size);
Hash128 hash_string(std::string_view s);

// Streams the file in 4 MiB reads, so memory stays flat on hour-long videos. A file that cannot be
// opened or read is an InputError naming it with the system's reason.
Hash128 hash_file(const std::string& path);

// Incremental hashing for composing content addresses from several parts. The parts are simply
// concatenated, so when a part's length can vary, feed its length first (update_u64(s.size()))
// or "ab"+"c" and "a"+"bc" give the same key.
class Hasher {
 public:
  Hasher();
  Hasher(const Hasher& other);
  Hasher& operator=(const Hasher& other);
  Hasher(Hasher&&) noexcept = default;
  Hasher& operator=(Hasher&&) noexcept = default;
  ~Hasher();

  Hasher& update(const void* data, size_t size);
  Hasher& update(std::string_view bytes);
  // The 8 bytes of `value`, least significant first on every platform, so keys don't depend on the
  // machine's byte order.
  Hasher& update_u64(uint64_t value);

  // The hash of everything fed so far; the Hasher stays usable (more updates extend the input).
  Hash128 digest() const;

 private:
  struct StateDeleter {
    void operator()(XXH3_state_s* state) const;
  };
  std::unique_ptr<XXH3_state_s, StateDeleter> state_;  // null only in a moved-from Hasher
};

}  // namespace lvrl
