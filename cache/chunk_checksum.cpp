#include "cache/chunk_checksum.h"

#include <sched.h>

#include <algorithm>

namespace lvrl::cache {
namespace {
constexpr size_t kSliceBytes = size_t{1} << 20;
}  // namespace

ChunkChecksum::ChunkChecksum(uint64_t chunks) {
  if (chunks <= 1) return;
  thread_ = std::thread([this] {
    // Lowering one's own priority needs no privilege; should it fail, the thread runs at normal priority.
    sched_param param{};
    ::sched_setscheduler(0, SCHED_IDLE, &param);
    run();
  });
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
    // In slices, so that digest() never waits long for a slice an idle-class thread has begun.
    for (size_t at = 0; at < size; at += kSliceBytes)
      pending_.emplace_back(data + at, std::min(kSliceBytes, size - at));
  }
  changed_.notify_all();
}

void ChunkChecksum::hash_front(std::unique_lock<std::mutex>& lock) {
  const auto [data, size] = pending_.front();
  pending_.pop_front();
  hashing_ = true;
  lock.unlock();
  hasher_.update(data, size);
  lock.lock();
  hashing_ = false;
  changed_.notify_all();
}

std::string ChunkChecksum::digest() {
  if (thread_.joinable()) {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!pending_.empty() || hashing_) {
      if (hashing_) {
        changed_.wait(lock);
      } else {
        hash_front(lock);
      }
    }
  }
  return hasher_.digest().hex();  // nothing is queued: the thread waits and does not touch hasher_
}

void ChunkChecksum::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    changed_.wait(lock, [this] { return stop_ || (!pending_.empty() && !hashing_); });
    if (stop_) return;
    hash_front(lock);
  }
}

}  // namespace lvrl::cache
