// The `redis` config section and the Redis servers of one run.
//
//   redis.cache_url / redis.queue_url   external servers; when empty, RunRedis starts private ones
//                                       in <run.dir>/redis (redis_server.h)
//   redis.cache_maxmemory, ...          `lvrl config keys --section redis` lists them all
//
// The embedding cache and the queue live on different servers (the cache evicts, the queue must
// not). Pointing both URLs at one external server is allowed only if that server is `noeviction`
// — RunRedis checks the cache server's policy and warns when the queue would share an evicting one.
#pragma once

#include <memory>
#include <string>

#include "cache/embedding_cache.h"
#include "cache/redis_client.h"
#include "cache/redis_server.h"
#include "cache/rollout_stream.h"
#include "core/config.h"

namespace lvrl::cache {

RedisOptions redis_options_from(const Config& config);
EmbeddingCacheOptions cache_options_from(const Config& config);
RolloutStreamOptions stream_options_from(const Config& config);
// redis.cache_url parsed; nullopt when empty. An InputError names the key for a bad URL.
std::optional<RedisEndpoint> configured_endpoint(const Config& config, const std::string& key);

class RunRedis {
 public:
  enum Need { Cache = 1, Queue = 2, Both = 3 };
  // Uses redis.cache_url / redis.queue_url when set, else starts private servers (only for `need`).
  explicit RunRedis(const Config& config, Need need = Both);

  const RedisEndpoint& cache() const;  // asserts it was needed
  const RedisEndpoint& queue() const;
  // Private servers, null for external ones: for tests and the launcher (pids, logs).
  RedisServer* cache_server() const { return cache_server_.get(); }
  RedisServer* queue_server() const { return queue_server_.get(); }

 private:
  std::unique_ptr<RedisServer> cache_server_, queue_server_;
  std::optional<RedisEndpoint> cache_, queue_;
};

}  // namespace lvrl::cache
