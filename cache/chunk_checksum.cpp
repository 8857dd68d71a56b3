#include "cache/chunk_checksum.h"

namespace lvrl::cache {

ChunkChecksum::ChunkChecksum(uint64_t chunks) {
  if (chunks > 1) thread_ = std::thread([this] { run(); });
}

ChunkChecksum::~ChunkChecksum() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void ChunkChecksum::add(const char* data, size_t size) {
  if (!thread_.joinable()) {
    hasher_.update(data, size);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.emplace_back(data, size);
  }
  changed_.notify_all();
}

std::string ChunkChecksum::digest() {
  if (thread_.joinable()) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return pending_.empty() && !hashing_; });
  }
  return hasher_.digest().hex();  // the thread waits for more chunks: it does not touch hasher_ now
}

void ChunkChecksum::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    changed_.wait(lock, [this] { return stop_ || !pending_.empty(); });
    if (stop_) return;
    const auto [data, size] = pending_.front();
    pending_.pop_front();
    hashing_ = true;
    lock.unlock();
    hasher_.update(data, size);
    lock.lock();
    hashing_ = false;
    changed_.notify_all();
  }
}

}  // namespace lvrl::cache
