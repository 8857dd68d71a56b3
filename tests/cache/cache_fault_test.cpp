// The cache server dies (SIGKILL) in the middle of a put or a get: no crash, no partial hit; the
// operation is retried once the server is back, or reported when it stays down.
#include <gtest/gtest.h>

#include "cache/embedding_cache.h"
#include "core/error.h"
#include "redis_test_support.h"

namespace lvrl::cache {
namespace {
using testing::quick_options;
using testing::TestServer;

struct Crash {
  std::string stage;  // "put" or "get"
  uint64_t at_chunk;
  bool restart;
};

// A cache whose on_chunk hook kills the server once, at the given chunk of the given stage.
EmbeddingCacheOptions crash_once(TestServer& server, const Crash& crash, bool& crashed) {
  EmbeddingCacheOptions options;
  options.chunk_bytes = 1 << 20;
  options.on_chunk = [&server, crash, &crashed](std::string_view stage, uint64_t chunk) {
    if (crashed || stage != crash.stage || chunk != crash.at_chunk) return;
    crashed = true;
    if (crash.restart)
      server.crash_and_restart();
    else
      server.server().kill_now();
  };
  return options;
}

at::Tensor payload() {
  return at::arange(int64_t{24} << 20 >> 3, at::TensorOptions().dtype(at::kLong));
}

TEST(CacheFaults, KillMidPutThenRestartRetriesThePut) {
  TestServer server;
  bool crashed = false;
  EmbeddingCache cache(server.endpoint(), crash_once(server, {"put", 5, true}, crashed), quick_options());
  at::Tensor tensor = payload();
  EXPECT_EQ(cache.put("k", tensor), PutResult::Stored);
  EXPECT_TRUE(crashed);
  std::optional<CachedEmbedding> hit = cache.get("k");
  ASSERT_TRUE(hit.has_value());
  EXPECT_TRUE(at::equal(hit->tensor, tensor));
  // Only the committed entry's keys: the first attempt's chunks died with the server.
  RedisClient raw(server.endpoint(), quick_options());
  EXPECT_EQ(raw.run(RedisCommand{"DBSIZE"}, Retry::Idempotent).integer(), 1 + 24);
}

TEST(CacheFaults, KillMidGetThenRestartIsAMissNotAPartialHit) {
  TestServer server;
  bool crashed = false;
  EmbeddingCache cache(server.endpoint(), crash_once(server, {"get", 3, true}, crashed), quick_options());
  at::Tensor tensor = payload();
  cache.put("k", tensor);
  // The restarted server is empty (no persistence): the read starts over and finds nothing.
  EXPECT_FALSE(cache.get("k").has_value());
  EXPECT_TRUE(crashed);
  cache.put("k", tensor);
  std::optional<CachedEmbedding> hit = cache.get("k");
  ASSERT_TRUE(hit.has_value());
  EXPECT_TRUE(at::equal(hit->tensor, tensor));
}

TEST(CacheFaults, ServerThatStaysDownIsReportedByPutAndGet) {
  TestServer server;
  RedisOptions redis = quick_options();
  redis.reconnect_for = std::chrono::milliseconds(300);
  for (const char* stage : {"put", "get"}) {
    SCOPED_TRACE(stage);
    server.server().start();
    bool crashed = false;
    EmbeddingCache cache(server.endpoint(), crash_once(server, {stage, 2, false}, crashed), redis);
    at::Tensor tensor = payload();
    if (std::string(stage) == "get") cache.put("k", tensor);
    auto start = std::chrono::steady_clock::now();
    try {
      if (std::string(stage) == "put")
        cache.put("k", tensor);
      else
        cache.get("k");
      FAIL() << "the server is down";
    } catch (const RedisConnectionError& e) {
      EXPECT_NE(e.detail().find("cannot connect"), std::string::npos) << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
    EXPECT_TRUE(crashed);
  }
  // Back up: the cache works again (and holds nothing half-written).
  server.server().start();
  EmbeddingCache cache(server.endpoint(), EmbeddingCacheOptions{}, quick_options());
  EXPECT_FALSE(cache.get("k").has_value());
  EXPECT_TRUE(cache.list().empty());
}

}  // namespace
}  // namespace lvrl::cache
