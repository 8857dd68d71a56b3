// The `redis` config section and a run's servers: private ones in <run.dir>/redis when no URL is
// configured, the configured external ones otherwise; bad values name their key.
#include "cache/redis_config.h"

#include <gtest/gtest.h>

#include "cache/content_key.h"
#include "core/error.h"
#include "redis_test_support.h"

namespace lvrl::cache {
namespace {
using testing::quick_options;
using testing::TestServer;

TEST(RedisConfig, PrivateServersForARun) {
  TempDir dir;
  Config config = Config::parse("", "test", {"run.dir=" + dir.path(), "redis.cache_maxmemory=32mb"});
  RunRedis redis(config);
  ASSERT_NE(redis.cache_server(), nullptr);
  ASSERT_NE(redis.queue_server(), nullptr);
  EXPECT_EQ(redis.cache().socket_path, dir.path() + "/redis/cache.sock");
  EXPECT_NE(redis.cache().password, redis.queue().password);
  RedisClient cache(redis.cache(), quick_options()), queue(redis.queue(), quick_options());
  EXPECT_EQ(cache.run(RedisCommand{"CONFIG", "GET", "maxmemory-policy"}, Retry::Idempotent)[1].str(),
            "allkeys-lru");
  EXPECT_EQ(cache.run(RedisCommand{"CONFIG", "GET", "maxmemory"}, Retry::Idempotent)[1].str(), "33554432");
  EXPECT_EQ(queue.run(RedisCommand{"CONFIG", "GET", "maxmemory-policy"}, Retry::Idempotent)[1].str(),
            "noeviction");
  // Only what is needed is started.
  TempDir other;
  RunRedis cache_only(Config::parse("", "test", {"run.dir=" + other.path()}), RunRedis::Cache);
  EXPECT_EQ(cache_only.queue_server(), nullptr);
}

TEST(RedisConfig, ExternalServersWhenConfigured) {
  TestServer external(RedisRole::Queue, "0");
  TempDir dir;
  Config config = Config::parse("", "test",
                                {"run.dir=" + dir.path(), "redis.queue_url=" + external.endpoint().url(),
                                 "redis.namespace=exp1", "redis.chunk_bytes=1048576"});
  RunRedis redis(config);
  EXPECT_EQ(redis.queue_server(), nullptr);
  EXPECT_EQ(redis.queue().socket_path, external.endpoint().socket_path);
  EXPECT_NE(redis.cache_server(), nullptr);
  EXPECT_EQ(cache_options_from(config).ns, "exp1");
  EXPECT_EQ(cache_options_from(config).chunk_bytes, size_t{1} << 20);
  EXPECT_EQ(stream_options_from(config).ns, "exp1");
}

TEST(RedisConfig, BadValuesNameTheirKey) {
  TempDir dir;
  try {
    RunRedis redis(Config::parse("", "test", {"run.dir=" + dir.path(), "redis.cache_url=http://x"}));
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), "redis.cache_url");
  }
  try {
    RunRedis redis(Config::parse("", "test", {"run.dir=" + dir.path(), "redis.cache_maxmemory=huge"}));
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), "redis.cache_maxmemory");
  }
  try {
    RunRedis redis(Config::parse("", "test", {"run.dir=" + dir.path(), "redis.server=/no/redis-server"}));
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), "redis.server");
  }
  try {
    RunRedis redis(Config::parse("", "test", {"run.dir=" + dir.path() + "/" + std::string(110, 'r')}));
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), "run.dir");
  }
}

TEST(ContentKey, StableDistinctAndOrderFree) {
  EmbeddingKeyParts parts{hash_string("v"), "uniform 8", "qwen", "enc"};
  EXPECT_EQ(embedding_key(parts), embedding_key(parts));
  EXPECT_EQ(embedding_key(parts).rfind("emb1-", 0), 0u);
  EXPECT_EQ(embedding_key(parts).size(), 5u + 32u);
  EmbeddingKeyParts shifted{hash_string("v"), "uniform 8q", "uen", "enc"};  // same concatenation
  EXPECT_NE(embedding_key(parts), embedding_key(shifted));

  std::map<std::string, at::Tensor> weights = {{"a", at::ones({2, 3})}, {"b", at::zeros({4}, at::kHalf)}};
  std::string fingerprint = encoder_fingerprint(weights);
  EXPECT_EQ(fingerprint.size(), 32u);
  std::map<std::string, at::Tensor> reshaped = {{"a", at::ones({3, 2})}, {"b", at::zeros({4}, at::kHalf)}};
  EXPECT_NE(encoder_fingerprint(reshaped), fingerprint);
  std::map<std::string, at::Tensor> changed = {{"a", at::ones({2, 3})}, {"b", at::ones({4}, at::kHalf)}};
  EXPECT_NE(encoder_fingerprint(changed), fingerprint);
  std::map<std::string, at::Tensor> strided = {{"a", at::ones({3, 2}).t()}, {"b", at::zeros({4}, at::kHalf)}};
  EXPECT_EQ(encoder_fingerprint(strided), fingerprint);  // values, not memory layout
}

}  // namespace
}  // namespace lvrl::cache
