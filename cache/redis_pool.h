// Connections for many threads: hiredis contexts are not thread-safe, so each thread leases its
// own RedisClient for the length of an operation and gives it back for the next thread to reuse.
// Leasing costs a lock and a list pop; a new connection (AUTH, SELECT, PING) only when all the
// idle ones are in use.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "cache/redis_client.h"

namespace lvrl::cache {

class RedisPool {
 public:
  // Connects once now, so a wrong URL or password fails here rather than in the first worker.
  RedisPool(RedisEndpoint endpoint, RedisOptions options = {}, size_t max_idle = 16);

  class Lease {
   public:
    Lease(RedisPool* pool, std::unique_ptr<RedisClient> client) : pool_(pool), client_(std::move(client)) {}
    Lease(Lease&&) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    RedisClient& operator*() const { return *client_; }
    RedisClient* operator->() const { return client_.get(); }

   private:
    RedisPool* pool_;
    std::unique_ptr<RedisClient> client_;
  };

  Lease acquire();
  const RedisEndpoint& endpoint() const { return endpoint_; }
  const RedisOptions& options() const { return options_; }

 private:
  void release(std::unique_ptr<RedisClient> client);
  RedisEndpoint endpoint_;
  RedisOptions options_;
  size_t max_idle_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<RedisClient>> idle_;
};

}  // namespace lvrl::cache
