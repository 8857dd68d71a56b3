// Private redis-server processes for one run (tests, the demo, `lvrl launch`).
//
// Two roles, because one server cannot be both (docs/cache.md#two-servers):
//  - Cache: `maxmemory` + `allkeys-lru`, no persistence. Embeddings are a cache: losing them costs
//    re-encoding, never correctness (manifests and chunks are checked on every read).
//  - Queue: `noeviction` + AOF `everysec`. Streams and weight versions must not be evicted and
//    should survive a restart of the server.
//
// Each server listens on a unix socket in the run directory (mode 700), requires a random password,
// and opens no TCP port unless one is configured (then on 127.0.0.1 only, by default). It runs
// `redis-server <dir>/<name>.conf` through spawn_process (core/process.h): no inherited descriptors,
// output to its log only, and SIGTERM when the thread that started it exits, so a crashed parent
// does not leave servers behind — start servers from a thread that outlives them (the main thread).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cache/redis_url.h"
#include "core/error.h"

namespace lvrl::cache {

enum class RedisRole { Cache, Queue };

struct RedisServerOptions {
  RedisRole role = RedisRole::Cache;
  std::string dir;                          // socket, config, log and AOF go here; created if missing
  std::string name = "cache";               // <name>.sock, <name>.conf, <name>.log
  std::string maxmemory = "1gb";            // Redis units (b, kb, mb, gb; k/m/g); "0" = no limit (queue)
  int tcp_port = 0;                         // 0: no TCP listener
  std::string bind = "127.0.0.1";           // with tcp_port
  std::string password;                     // empty: 32 random hex digits
  std::string executable = "redis-server";  // found on PATH unless a path
  std::chrono::milliseconds start_timeout{10000};
  std::vector<std::pair<std::string, std::string>> extra_config;  // more directives, appended last
};

class RedisServer {
 public:
  // Writes the config, starts the server and waits until it answers PING with the password.
  // A server that exits or stays silent is a LibraryError quoting the end of its log.
  explicit RedisServer(RedisServerOptions options);
  ~RedisServer();  // stop()
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // The unix socket, with the password: what clients connect to.
  RedisEndpoint endpoint() const;
  // 127.0.0.1:tcp_port (or the bind address) with the password; only when tcp_port was set.
  RedisEndpoint tcp_endpoint() const;

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  const RedisServerOptions& options() const { return options_; }
  std::string config_path() const;
  std::string log_path() const;

  // SIGTERM (the server flushes its AOF and exits), then SIGKILL after 10 s. No-op when stopped.
  void stop();
  // SIGKILL and reap: a crash, for tests of what clients do when the server vanishes.
  void kill_now();
  // Starts it again with the same config: same socket, password, AOF (a stopped or killed server).
  void start();

 private:
  void write_config() const;
  void spawn();
  void wait_ready();
  std::string log_tail() const;
  RedisServerOptions options_;
  pid_t pid_ = -1;
};

// "4gb" → 4294967296, as redis.conf reads memory sizes (k = 1000, kb = 1024, ...). Anything else is
// an InputError at `where` (the config key that held it).
int64_t parse_memory_size(const std::string& text, const InputWhere& where);

}  // namespace lvrl::cache
