// Test support for cache/: every test starts its own redis-server on a unix socket in a fresh
// temporary directory (lvrl::TempDir; never a fixed TCP port), with client options that fail fast.
// The server is started like every child of lvrl's, by spawn_process (core/process.h).
#pragma once

#include <memory>
#include <string>

#include "cache/redis_client.h"
#include "cache/redis_server.h"
#include "core/temp_dir.h"

namespace lvrl::cache::testing {

// Short timeouts and backoff, so failure paths take milliseconds; reconnects still span a restart.
RedisOptions quick_options();

// A loopback TCP port the OS picked and nobody uses now (bound to 0, then released).
int free_tcp_port();

// A private server in its own temp dir; stopped and removed with the object.
class TestServer {
 public:
  explicit TestServer(RedisRole role = RedisRole::Cache, const std::string& maxmemory = "1gb",
                      int tcp_port = 0);
  RedisServer& server() { return *server_; }
  RedisEndpoint endpoint() const { return server_->endpoint(); }
  const std::string& dir() const { return dir_.path(); }
  // SIGKILL, then start again on the same socket with the same password (empty again: no
  // persistence on a cache server).
  void crash_and_restart();

 private:
  TempDir dir_{"lvrl-cache-test"};
  std::unique_ptr<RedisServer> server_;
};

}  // namespace lvrl::cache::testing
