#include "cache/redis_pool.h"

namespace lvrl::cache {

RedisPool::RedisPool(RedisEndpoint endpoint, RedisOptions options, size_t max_idle)
    : endpoint_(std::move(endpoint)), options_(options), max_idle_(max_idle) {
  idle_.push_back(std::make_unique<RedisClient>(endpoint_, options_));
}

RedisPool::Lease::~Lease() {
  if (client_ != nullptr) pool_->release(std::move(client_));
}

RedisPool::Lease RedisPool::acquire() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!idle_.empty()) {
      std::unique_ptr<RedisClient> client = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(client));
    }
  }
  RedisOptions options = options_;
  options.first_connect_for = options_.reconnect_for;  // the server answered before: it may be restarting
  return Lease(this, std::make_unique<RedisClient>(endpoint_, options));
}

void RedisPool::release(std::unique_ptr<RedisClient> client) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(client));
}

}  // namespace lvrl::cache
