// The embedding cache: tensors of any size in Redis, content-addressed, verified on every read.
//
// Why it is built this way (docs/cache.md#the-embedding-cache):
//  - Redis strings cap at 512 MB and one GET copies the whole value into a reply buffer, while an
//    hour of video is ~1.8 GB of embeddings. So a tensor is split into chunks (4 MB by default),
//    written pipelined with a bound on bytes in flight, and read the same way straight into the
//    result tensor (read_buffers.h: huge pages, reused across gets).
//  - The manifest (cache_manifest.h) is written last, with SET NX: it is the commit marker, and the
//    first complete put of a key wins. Each put writes its chunks under a namespace of its own, so
//    two writers of one key never overwrite each other's chunks and a reader never mixes them; the
//    loser deletes its chunks. Chunks are written with a TTL and made persistent only once all of
//    them are known to be there (PERSIST answers 0 for a chunk that is gone), so a put that dies
//    half-way leaves nothing behind for long, and one that raced a server restart or an eviction
//    starts over instead of committing a manifest without chunks.
//  - The cache server evicts (allkeys-lru), per key. A reader that finds a missing chunk, a chunk
//    of the wrong size, a checksum mismatch or a manifest that disagrees with itself treats the
//    entry as a miss, logs why and deletes it — the manifest only if it is still the one it read
//    (compare-and-delete in a Lua script), so a good entry written meanwhile survives.
//  - A reconnect in the middle of an operation may have crossed a server restart; the operation
//    then starts over from the manifest (RedisClient::generation()).
//  - Keys are content addresses (content_key.h), so an entry never goes stale: changing the video,
//    sampling, preprocessing or encoder changes the key.
//
// Thread-safe: each call leases its own connection (RedisPool).
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/cache_manifest.h"
#include "cache/redis_pool.h"

namespace lvrl::cache {

struct EmbeddingCacheOptions {
  std::string ns = "default";                     // Redis keys: lvrl:{ns}:emb:...
  size_t chunk_bytes = size_t{4} << 20;           // 4 MiB
  std::chrono::milliseconds staging_ttl{600000};  // an unfinished put's chunks expire after this
  int attempts = 3;  // a put or get that crossed a server restart or eviction starts over this often
  // For tests: called after each chunk is acknowledged ("put") or received ("get"), on the calling
  // thread, so a test can kill the server at a chosen point.
  std::function<void(std::string_view stage, uint64_t chunk)> on_chunk;
};

struct CachedEmbedding {
  at::Tensor tensor;  // CPU, contiguous, the dtype and shape that were put
  CacheManifest manifest;
};

enum class PutResult {
  Stored,          // this put committed the entry
  AlreadyPresent,  // a complete entry existed, or another writer committed first
};

struct CacheStats {
  // This object's calls since it was made.
  uint64_t hits = 0, misses = 0, broken = 0, stored = 0, already_present = 0;
  uint64_t bytes_written = 0, bytes_read = 0;
  // The server's view (INFO): all clients, since the server started.
  int64_t server_keys = 0, used_memory = 0, maxmemory = 0, evicted_keys = 0;
  std::string maxmemory_policy;
};

// Receives an entry's payload in order, a window of chunks at a time (EmbeddingCache::read_into).
class PayloadSink {
 public:
  virtual ~PayloadSink() = default;
  // Before the first byte of each attempt: a read that crossed a reconnect starts over, so what an
  // earlier attempt wrote must be dropped.
  virtual void begin(const CacheManifest& manifest) = 0;
  virtual void write(const char* data, size_t size) = 0;  // the payload's next bytes
};

struct CacheEntry {
  std::string key;
  std::optional<CacheManifest> manifest;  // nullopt when the manifest cannot be read
  std::string problem;                    // what is wrong with the manifest, or ""
};

class EmbeddingCache {
 public:
  // Connects now: a wrong URL or password fails here.
  explicit EmbeddingCache(RedisEndpoint endpoint, EmbeddingCacheOptions options = {},
                          RedisOptions redis_options = {});

  // Stores `tensor` (any device and strides; BOOL U8 I8 I16 I32 I64 F16 BF16 F32 F64) under `key`.
  // A key that already has a complete entry is left alone (content addresses never change meaning).
  PutResult put(const std::string& key, const at::Tensor& tensor, const EmbeddingMetadata& metadata = {});
  // The tensor and its manifest, or nullopt on a miss (absent, or found broken and deleted).
  std::optional<CachedEmbedding> get(const std::string& key);
  // get() for payloads larger than memory: the bytes go to `sink` a window of chunks (16 MiB) at a
  // time, checked as get() checks them. The manifest once every byte arrived and the checksum
  // matched; nullopt on a miss (a broken entry is deleted, as get() does: the sink then holds bytes
  // that must not be used).
  std::optional<CacheManifest> read_into(const std::string& key, PayloadSink& sink);
  // The manifest and every chunk exist (checksums are not read: that is get's and verify's job).
  bool contains(const std::string& key);
  // Deletes the entry and any chunks of the key's unfinished puts. False when there was nothing.
  bool remove(const std::string& key);
  // Entries whose key starts with `prefix`, by key.
  std::vector<CacheEntry> list(const std::string& prefix = "");
  // Reads the entry like get() and checks it; returns "" when it is good, else the problem (a missing
  // entry is "no such entry"). With delete_broken, a broken entry is deleted.
  std::string verify(const std::string& key, bool delete_broken);
  CacheStats stats();

  const EmbeddingCacheOptions& options() const { return options_; }
  const RedisEndpoint& endpoint() const { return pool_.endpoint(); }

  // A key is 1-256 bytes of [A-Za-z0-9._/=+-] (no ':', the separator of Redis key parts); anything
  // else is an InputError naming it.
  static void check_key(const std::string& key);

 private:
  struct Loaded;
  // The payload goes into one tensor (Loaded::tensor), or to `sink` when one is given.
  Loaded load(RedisClient& client, const std::string& key, PayloadSink* sink);
  Loaded load_settled(RedisClient& client, const std::string& key, const char* operation,
                      PayloadSink* sink = nullptr);  // no reconnect inside
  void stream(RedisClient& client, const std::string& key, Loaded& out, PayloadSink& sink);
  bool settle(RedisClient& client, const std::string& key, Loaded& loaded);  // counts; true on a hit
  bool chunks_present(RedisClient& client, const std::string& key, const CacheManifest& manifest);
  void delete_entry(RedisClient& client, const std::string& key, const std::string& manifest_text,
                    const CacheManifest* manifest);
  void delete_chunks(RedisClient& client, const std::string& key, const std::string& writer, uint64_t chunks);
  size_t delete_matching(RedisClient& client, const std::string& pattern);
  std::string manifest_key(const std::string& key) const;
  std::string chunk_key(const std::string& key, const std::string& writer, uint64_t index) const;

  EmbeddingCacheOptions options_;
  RedisPool pool_;
  std::atomic<uint64_t> hits_{0}, misses_{0}, broken_{0}, stored_{0}, already_present_{0};
  std::atomic<uint64_t> bytes_written_{0}, bytes_read_{0};
};

// Escapes Redis glob characters (* ? [ ] \) so `text` matches itself in SCAN MATCH.
std::string glob_escape(std::string_view text);

}  // namespace lvrl::cache
