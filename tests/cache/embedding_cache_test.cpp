// The embedding cache against a private server: round trips of every dtype from 0 bytes to past
// Redis' 512 MB string limit, concurrent writers and readers, and entries broken behind the cache's
// back (missing, corrupted, truncated chunks; bad manifests; eviction) → a miss, a log line saying
// why, and nothing left behind.
#include "cache/embedding_cache.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <atomic>
#include <sstream>
#include <thread>

#include "cache/content_key.h"
#include "cache/read_buffers.h"
#include "core/error.h"
#include "core/hash.h"
#include "redis_test_support.h"

namespace lvrl::cache {
namespace {
using testing::quick_options;
using testing::TestServer;

at::Tensor sample(at::ScalarType dtype, at::IntArrayRef shape, int seed) {
  at::manual_seed(seed);
  if (dtype == at::kBool) return at::randint(0, 2, shape, at::TensorOptions().dtype(at::kLong)).to(at::kBool);
  if (at::isFloatingType(dtype)) return at::randn(shape, at::TensorOptions().dtype(at::kFloat)).to(dtype);
  return at::randint(-100, 100, shape, at::TensorOptions().dtype(at::kLong)).to(dtype);
}

bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() && a.nbytes() == b.nbytes() &&
         (a.nbytes() == 0 ||
          std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.nbytes()) == 0);
}

class EmbeddingCacheTest : public ::testing::Test {
 protected:
  EmbeddingCacheOptions options(size_t chunk_bytes = size_t{4} << 20) const {
    EmbeddingCacheOptions out;
    out.chunk_bytes = chunk_bytes;
    return out;
  }
  std::vector<std::string> keys(const std::string& pattern) {
    std::vector<std::string> out;
    RedisReply reply = raw_.run(RedisCommand{"KEYS", pattern}, Retry::Idempotent);
    for (size_t i = 0; i < reply.size(); ++i) out.push_back(reply[i].str());
    std::sort(out.begin(), out.end());
    return out;
  }
  int64_t key_count() { return raw_.run(RedisCommand{"DBSIZE"}, Retry::Idempotent).integer(); }

  TestServer server_{RedisRole::Cache, "2gb"};
  RedisClient raw_{server_.endpoint(), quick_options()};
};

// Captures the cache's warnings, to check that a miss on a broken entry says why.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(text_)) {
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  std::string text() const { return text_.str(); }

 private:
  std::ostringstream text_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

TEST_F(EmbeddingCacheTest, RoundTripsEveryDtypeAndShape) {
  // 1000-byte chunks: most tensors span several chunks with a partial last one.
  EmbeddingCache cache(server_.endpoint(), options(1000), quick_options());
  const std::vector<std::vector<int64_t>> shapes = {{},  {0},      {3, 0, 2}, {1},
                                                    {7}, {125, 8}, {333, 3},  {4, 1000}};
  int seed = 0;
  for (at::ScalarType dtype : {at::kBool, at::kByte, at::kChar, at::kShort, at::kInt, at::kLong, at::kHalf,
                               at::kBFloat16, at::kFloat, at::kDouble}) {
    for (const std::vector<int64_t>& shape : shapes) {
      at::Tensor tensor = sample(dtype, shape, ++seed);
      std::string key = fmt::format("rt-{}-{}", c10::toString(dtype), seed);
      SCOPED_TRACE(fmt::format("{} shape [{}] seed {}", c10::toString(dtype), fmt::join(shape, ","), seed));
      EmbeddingMetadata metadata;
      metadata.grid_thw = {4, 16, 28};
      metadata.frame_timestamps = {0.0, 0.5, 1.25, 3599.75};
      metadata.encoder_fingerprint = "f00d";
      metadata.extra = {{"video", "a.mp4"}};
      ASSERT_EQ(cache.put(key, tensor, metadata), PutResult::Stored);
      std::optional<CachedEmbedding> hit = cache.get(key);
      ASSERT_TRUE(hit.has_value());
      EXPECT_TRUE(same_bytes(hit->tensor, tensor));
      EXPECT_EQ(hit->manifest.metadata.grid_thw, metadata.grid_thw);
      EXPECT_EQ(hit->manifest.metadata.frame_timestamps, metadata.frame_timestamps);
      EXPECT_EQ(hit->manifest.metadata.encoder_fingerprint, "f00d");
      EXPECT_EQ(hit->manifest.metadata.extra, metadata.extra);
      EXPECT_GT(hit->manifest.created_unix_ms, 1600000000000);
      EXPECT_EQ(hit->manifest.chunks, (tensor.nbytes() + 999) / 1000);
      // The manifest's checksum is the payload's XXH3-128 (hashed chunk by chunk on put's own thread).
      const at::Tensor bytes = tensor.contiguous();
      EXPECT_EQ(hit->manifest.checksum, hash_bytes(bytes.data_ptr(), bytes.nbytes()).hex());
    }
  }
  // Non-contiguous input is stored as its values, in row-major order.
  at::Tensor strided = sample(at::kFloat, {40, 30}, 99).t();
  cache.put("strided", strided);
  EXPECT_TRUE(at::equal(cache.get("strided")->tensor, strided));
  EXPECT_EQ(cache.stats().broken, 0u);
}

TEST_F(EmbeddingCacheTest, RoundTripAbove512MBStringLimit) {
  // 600 MiB: more than one Redis string may hold, so only chunking can store it.
  EmbeddingCache cache(server_.endpoint(), options(), quick_options());
  const int64_t bytes = int64_t{600} << 20;
  at::Tensor tensor = at::arange(bytes / 8, at::TensorOptions().dtype(at::kLong));
  ASSERT_EQ(cache.put("huge", tensor), PutResult::Stored);
  std::optional<CachedEmbedding> hit = cache.get("huge");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->manifest.chunks, 150u);
  EXPECT_TRUE(same_bytes(hit->tensor, tensor));
  EXPECT_EQ(cache.put("huge", tensor), PutResult::AlreadyPresent);
  hit.reset();
  EXPECT_TRUE(cache.remove("huge"));
  EXPECT_EQ(key_count(), 0);
}

TEST_F(EmbeddingCacheTest, ConcurrentPutAndGetFromFourThreads) {
  EmbeddingCache cache(server_.endpoint(), options(64 << 10), quick_options());
  std::atomic<int> wrong{0}, stored_shared{0};
  std::vector<at::Tensor> shared_versions;
  for (int t = 0; t < 4; ++t) shared_versions.push_back(sample(at::kFloat, {300, 257}, 1000 + t));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      // Every thread writes the same key with its own bytes (two encoder runs need not agree bit
      // for bit): exactly one must win, and every reader must see that one, whole.
      if (cache.put("shared", shared_versions[t]) == PutResult::Stored) ++stored_shared;
      for (int i = 0; i < 6; ++i) {
        at::Tensor mine = sample(at::kBFloat16, {50 + i, 300 + t}, t * 100 + i);
        std::string key = fmt::format("t{}-{}", t, i);
        cache.put(key, mine);
        std::optional<CachedEmbedding> back = cache.get(key);
        if (!back || !same_bytes(back->tensor, mine)) ++wrong;
        std::optional<CachedEmbedding> shared = cache.get("shared");
        if (shared) {
          bool one_of = false;
          for (const at::Tensor& version : shared_versions) one_of |= same_bytes(shared->tensor, version);
          if (!one_of) ++wrong;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(stored_shared, 1);
  // The losers' chunks are gone: only committed entries' keys remain.
  uint64_t expected_keys = 0;
  for (const CacheEntry& entry : cache.list()) expected_keys += 1 + entry.manifest->chunks;
  EXPECT_EQ(cache.list().size(), 25u);
  EXPECT_EQ(static_cast<uint64_t>(key_count()), expected_keys);
}

TEST_F(EmbeddingCacheTest, MissingChunkIsAMissLoggedAndCleanedUp) {
  EmbeddingCache cache(server_.endpoint(), options(1 << 10), quick_options());
  cache.put("k", sample(at::kFloat, {10, 100}, 1));
  EXPECT_TRUE(cache.contains("k"));
  std::vector<std::string> chunks = keys("lvrl:default:emb:c:k:*");
  ASSERT_EQ(chunks.size(), 4u);
  raw_.run(RedisCommand{"DEL", chunks[2]}, Retry::Idempotent);
  EXPECT_FALSE(cache.contains("k"));
  LogCapture log;
  EXPECT_FALSE(cache.get("k").has_value());
  EXPECT_NE(log.text().find("entry k is broken (chunk"), std::string::npos) << log.text();
  EXPECT_NE(log.text().find("is missing"), std::string::npos) << log.text();
  EXPECT_EQ(key_count(), 0);
  EXPECT_EQ(cache.stats().broken, 1u);
}

TEST_F(EmbeddingCacheTest, CorruptedOrTruncatedChunkIsAMissAndCleanedUp) {
  EmbeddingCache cache(server_.endpoint(), options(1 << 10), quick_options());
  for (const char* damage : {"flip", "truncate", "extend"}) {
    SCOPED_TRACE(damage);
    cache.put("k", sample(at::kInt, {1000}, 2));
    std::string chunk = keys("lvrl:default:emb:c:k:*")[1];
    if (std::string(damage) == "flip")
      raw_.run(RedisCommand{"SETRANGE", chunk, "17", "?"}, Retry::Idempotent);
    if (std::string(damage) == "truncate") raw_.run(RedisCommand{"SET", chunk, "short"}, Retry::Idempotent);
    if (std::string(damage) == "extend") raw_.run(RedisCommand{"APPEND", chunk, "x"}, Retry::Idempotent);
    LogCapture log;
    EXPECT_FALSE(cache.get("k").has_value());
    EXPECT_NE(
        log.text().find(std::string(damage) == "flip" ? "checksum mismatch" : "bytes, the manifest says"),
        std::string::npos)
        << log.text();
    EXPECT_EQ(key_count(), 0);
  }
}

TEST_F(EmbeddingCacheTest, BadManifestIsAMissAndEveryChunkGoes) {
  EmbeddingCache cache(server_.endpoint(), options(1 << 10), quick_options());
  const std::string manifest = "lvrl:default:emb:m:k";
  for (const char* bad : {"{not json", R"({"format": 1})", "shape"}) {
    SCOPED_TRACE(bad);
    cache.put("k", sample(at::kDouble, {500}, 3));
    if (std::string(bad) == "shape") {  // valid JSON that disagrees with itself
      std::string text = raw_.run(RedisCommand{"GET", manifest}, Retry::Idempotent).str();
      text.replace(text.find("\"shape\":[500]"), 13, "\"shape\":[501]");
      raw_.run(RedisCommand{"SET", manifest}.add(text), Retry::Idempotent);
    } else {
      raw_.run(RedisCommand{"SET", manifest, bad}, Retry::Idempotent);
    }
    EXPECT_FALSE(cache.contains("k"));
    EXPECT_NE(cache.verify("k", false), "");
    EXPECT_FALSE(cache.get("k").has_value());
    EXPECT_EQ(key_count(), 0);
  }
}

TEST_F(EmbeddingCacheTest, ABrokenEntryNeverTakesANewGoodOneWithIt) {
  EmbeddingCacheOptions hooked = options(1 << 10);
  EmbeddingCache other(server_.endpoint(), options(1 << 10), quick_options());
  at::Tensor good = sample(at::kFloat, {2000}, 5);
  bool swapped = false;
  // While a reader is inside entry A, A is replaced by a good entry B: the reader then finds A's
  // chunks gone, and must delete nothing of B.
  hooked.on_chunk = [&](std::string_view stage, uint64_t chunk) {
    if (stage == "get" && chunk == 0 && !swapped) {
      swapped = true;
      other.remove("k");
      other.put("k", good);
    }
  };
  RedisOptions one_at_a_time = quick_options();
  one_at_a_time.pipeline_reply_bytes = 1;  // chunk 1 is requested only after the hook ran
  EmbeddingCache cache(server_.endpoint(), hooked, one_at_a_time);
  cache.put("k", sample(at::kFloat, {2000}, 4));
  EXPECT_FALSE(cache.get("k").has_value());
  ASSERT_TRUE(swapped);
  std::optional<CachedEmbedding> hit = cache.get("k");
  ASSERT_TRUE(hit.has_value());
  EXPECT_TRUE(at::equal(hit->tensor, good));
}

TEST_F(EmbeddingCacheTest, ChangingAnyContentKeyPartIsAMiss) {
  EmbeddingCache cache(server_.endpoint(), options(), quick_options());
  EmbeddingKeyParts parts{hash_string("video bytes"), "uniform 64", "qwen2.5-vl max_pixels=200704", "enc-1"};
  cache.put(embedding_key(parts), sample(at::kFloat, {64, 8}, 6));
  EXPECT_TRUE(cache.get(embedding_key(parts)).has_value());
  auto changed = [&](auto mutate) {
    EmbeddingKeyParts copy = parts;
    mutate(copy);
    return cache.get(embedding_key(copy)).has_value();
  };
  EXPECT_FALSE(changed([](EmbeddingKeyParts& p) { p.video = hash_string("other bytes"); }));
  EXPECT_FALSE(changed([](EmbeddingKeyParts& p) { p.sampling = "uniform 65"; }));
  EXPECT_FALSE(changed([](EmbeddingKeyParts& p) { p.preprocessing += " "; }));
  EXPECT_FALSE(changed([](EmbeddingKeyParts& p) { p.encoder = "enc-2"; }));
}

TEST_F(EmbeddingCacheTest, ListRemoveVerifyAndStats) {
  EmbeddingCache cache(server_.endpoint(), options(1 << 10), quick_options());
  for (const char* key : {"a/1", "a/2", "b/1"}) cache.put(key, sample(at::kHalf, {700}, 7));
  std::vector<CacheEntry> all = cache.list(), a = cache.list("a/");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[2].key, "b/1");
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[1].manifest->bytes, 1400u);
  EXPECT_EQ(cache.verify("a/1", false), "");
  EXPECT_EQ(cache.verify("zzz", false), "no such entry");
  EXPECT_TRUE(cache.remove("a/1"));
  EXPECT_FALSE(cache.remove("a/1"));
  EXPECT_FALSE(cache.get("a/1").has_value());
  CacheStats stats = cache.stats();
  EXPECT_EQ(stats.stored, 3u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.maxmemory_policy, "allkeys-lru");
  EXPECT_EQ(stats.maxmemory, int64_t{2} << 30);
  EXPECT_THROW(cache.put("has space", sample(at::kFloat, {1}, 0)), InputError);
  EXPECT_THROW(cache.put("has:colon", sample(at::kFloat, {1}, 0)), InputError);
  EXPECT_THROW(cache.put("complex", at::zeros({2}, at::kComplexFloat)), InputError);
}

TEST(ReadBuffers, LargeResultsReuseFreedMappings) {
  release_read_buffers();
  at::Tensor small = allocate_read_tensor({10}, at::kFloat, 40);
  EXPECT_EQ(small.nbytes(), 40u);
  at::Tensor first = allocate_read_tensor({4 << 20}, at::kFloat, 16 << 20);
  void* address = first.data_ptr();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(address) % (2 << 20), 0u);  // huge-page aligned
  first.fill_(1);
  first.reset();
  at::Tensor second = allocate_read_tensor({3 << 20}, at::kInt, 12 << 20);  // fits, within 2x
  EXPECT_EQ(second.data_ptr(), address);
  at::Tensor third = allocate_read_tensor({1 << 20}, at::kDouble, 8 << 20);  // nothing pooled fits now
  EXPECT_NE(third.data_ptr(), address);
  second.reset();
  third.reset();
  release_read_buffers();
}

TEST(EmbeddingCacheEviction, EvictedEntriesAreMissesNeverWrongHits) {
  TestServer server(RedisRole::Cache, "48mb");
  EmbeddingCacheOptions options;
  options.chunk_bytes = 1 << 20;
  EmbeddingCache cache(server.endpoint(), options, quick_options());
  std::vector<at::Tensor> tensors;
  for (int i = 0; i < 24; ++i) {  // 24 × 4 MiB into 48 MB: the LRU must evict chunks
    tensors.push_back(sample(at::kFloat, {1 << 20}, 200 + i));
    cache.put("e" + std::to_string(i), tensors.back());
  }
  int hits = 0;
  for (int i = 0; i < 24; ++i) {
    std::optional<CachedEmbedding> hit = cache.get("e" + std::to_string(i));
    if (hit) {
      ++hits;
      EXPECT_TRUE(same_bytes(hit->tensor, tensors[i])) << "entry " << i;
    }
  }
  EXPECT_GT(hits, 0);
  EXPECT_LT(hits, 24);
  EXPECT_GT(cache.stats().evicted_keys, 0);
}

TEST(EmbeddingCacheEviction, ATensorLargerThanTheServerIsReported) {
  TestServer server(RedisRole::Cache, "16mb");
  EmbeddingCacheOptions options;
  options.chunk_bytes = 1 << 20;
  EmbeddingCache cache(server.endpoint(), options, quick_options());
  try {
    cache.put("too-big", at::zeros({40 << 20}, at::kByte));
    FAIL() << "stored 40 MB in a 16 MB server";
  } catch (const LibraryError& e) {
    EXPECT_NE(e.detail().find("maxmemory"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(cache.get("too-big").has_value());
}

}  // namespace
}  // namespace lvrl::cache
