#include "cache/redis_config.h"

#include <fmt/format.h>

#include <filesystem>

#include "core/error.h"
#include "core/log.h"

namespace lvrl::cache {
namespace {
const RegisterConfigSection redis_section(
    {"redis",
     "Redis servers: the embedding cache and the rollout queue",
     {
         ConfigKey::string("cache_url", "",
                           "embedding cache server: redis://[:password@]host:port/db or "
                           "unix:///path?password=P; empty: a private server in <run.dir>/redis"),
         ConfigKey::string("queue_url", "",
                           "rollout queue and weight versions (must not evict); empty: a private "
                           "server in <run.dir>/redis"),
         ConfigKey::string("namespace", "default",
                           "key prefix lvrl:<namespace>:, so runs can share a server"),
         ConfigKey::string("cache_maxmemory", "4gb",
                           "private cache server's maxmemory (allkeys-lru); Redis units"),
         ConfigKey::string("queue_maxmemory", "0",
                           "private queue server's maxmemory (noeviction); 0 = no limit"),
         ConfigKey::integer("cache_port", 0,
                            "private cache server's TCP port on redis.bind; 0 = unix socket only")
             .range(0, 65535),
         ConfigKey::integer("queue_port", 0,
                            "private queue server's TCP port on redis.bind; 0 = unix socket only")
             .range(0, 65535),
         ConfigKey::string("bind", "127.0.0.1", "address private servers listen on when given a port"),
         ConfigKey::string("server", "redis-server", "redis-server executable for private servers"),
         ConfigKey::integer("chunk_bytes", 4 << 20,
                            "embedding tensors are stored in chunks of this many bytes")
             .range(64 << 10, 512 << 20),
         ConfigKey::integer("pipeline_bytes", 32 << 20, "bytes of requests in flight per connection (puts)")
             .range(1 << 20, 2048.0 * (1 << 20)),
         ConfigKey::integer("pipeline_reply_bytes", 8 << 20,
                            "bytes of expected replies in flight per connection (gets)")
             .range(1 << 20, 2048.0 * (1 << 20)),
         ConfigKey::integer("connect_timeout_ms", 2000, "connect timeout").range(10, 600000),
         ConfigKey::integer("command_timeout_ms", 30000, "send/receive timeout of one command")
             .range(10, 3600000),
         ConfigKey::integer("reconnect_for_ms", 10000, "keep reconnecting to a lost server this long")
             .range(0, 3600000),
         ConfigKey::integer("claim_idle_ms", 600000,
                            "rollouts pending this long are given to another trainer consumer; the "
                            "trainer acknowledges a rollout only once a checkpoint holds it, so this "
                            "must exceed the time between checkpoints (trainer.save_every steps)")
             .range(1000, 86400000),
         ConfigKey::integer("max_deliveries", 5, "rollouts delivered more often go to the dead-letter stream")
             .range(1, 1000),
     }});

int64_t get_int(const Config& config, const char* key) {
  return config.get<int64_t>(key);
}
}  // namespace

RedisOptions redis_options_from(const Config& config) {
  RedisOptions out;
  out.connect_timeout = std::chrono::milliseconds(get_int(config, "redis.connect_timeout_ms"));
  out.command_timeout = std::chrono::milliseconds(get_int(config, "redis.command_timeout_ms"));
  out.reconnect_for = std::chrono::milliseconds(get_int(config, "redis.reconnect_for_ms"));
  out.pipeline_bytes = static_cast<size_t>(get_int(config, "redis.pipeline_bytes"));
  out.pipeline_reply_bytes = static_cast<size_t>(get_int(config, "redis.pipeline_reply_bytes"));
  return out;
}

EmbeddingCacheOptions cache_options_from(const Config& config) {
  EmbeddingCacheOptions out;
  out.ns = config.get<std::string>("redis.namespace");
  out.chunk_bytes = static_cast<size_t>(get_int(config, "redis.chunk_bytes"));
  return out;
}

RolloutStreamOptions stream_options_from(const Config& config) {
  RolloutStreamOptions out;
  out.ns = config.get<std::string>("redis.namespace");
  out.claim_idle = std::chrono::milliseconds(get_int(config, "redis.claim_idle_ms"));
  out.max_deliveries = static_cast<int>(get_int(config, "redis.max_deliveries"));
  return out;
}

std::optional<RedisEndpoint> configured_endpoint(const Config& config, const std::string& key) {
  const std::string& url = config.get<std::string>(key);
  if (url.empty()) return std::nullopt;
  try {
    return RedisEndpoint::parse(url);
  } catch (const InputError& e) {
    throw InputError({config.source_of(key), 0, key, e.value()}, e.problem());
  }
}

RunRedis::RunRedis(const Config& config, Need need) {
  const std::string dir = (std::filesystem::path(config.get<std::string>("run.dir")) / "redis").string();
  auto private_server = [&](RedisRole role, const char* name) {
    RedisServerOptions options;
    options.role = role;
    options.dir = dir;
    options.name = name;
    const std::string memory_key =
        role == RedisRole::Cache ? "redis.cache_maxmemory" : "redis.queue_maxmemory";
    options.maxmemory = config.get<std::string>(memory_key);
    parse_memory_size(options.maxmemory, {config.source_of(memory_key), 0, memory_key, ""});
    options.tcp_port =
        static_cast<int>(get_int(config, role == RedisRole::Cache ? "redis.cache_port" : "redis.queue_port"));
    options.bind = config.get<std::string>("redis.bind");
    options.executable = config.get<std::string>("redis.server");
    try {
      return std::make_unique<RedisServer>(options);
    } catch (const InputError& e) {  // name the config key behind the bad value
      if (e.key() == "redis server executable") {
        throw InputError({config.source_of("redis.server"), 0, "redis.server", options.executable},
                         e.problem());
      }
      if (e.problem().find("socket path") != std::string::npos) {
        throw InputError({config.source_of("run.dir"), 0, "run.dir", config.get<std::string>("run.dir")},
                         e.problem());
      }
      throw;
    }
  };
  if (need & Cache) {
    cache_ = configured_endpoint(config, "redis.cache_url");
    if (!cache_) {
      cache_server_ = private_server(RedisRole::Cache, "cache");
      cache_ = cache_server_->endpoint();
    }
  }
  if (need & Queue) {
    queue_ = configured_endpoint(config, "redis.queue_url");
    if (queue_) {
      RedisClient client(*queue_, redis_options_from(config));
      RedisReply policy =
          client.run_unchecked(RedisCommand{"CONFIG", "GET", "maxmemory-policy"}, Retry::Idempotent);
      if (!policy.is_error() && policy.size() == 2 && policy[1].text() != "noeviction") {
        LVRL_WARN(
            "redis.queue_url {} evicts keys (maxmemory-policy {}): rollouts and weight versions may vanish; "
            "use a noeviction server",
            queue_->describe(), policy[1].text());
      }
    } else {
      queue_server_ = private_server(RedisRole::Queue, "queue");
      queue_ = queue_server_->endpoint();
    }
  }
}

const RedisEndpoint& RunRedis::cache() const {
  LVRL_ASSERT(cache_.has_value(), "RunRedis made without the cache server");
  return *cache_;
}

const RedisEndpoint& RunRedis::queue() const {
  LVRL_ASSERT(queue_.has_value(), "RunRedis made without the queue server");
  return *queue_;
}

}  // namespace lvrl::cache
