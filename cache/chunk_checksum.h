// The checksum of an embedding's payload (XXH3-128 of its bytes, as hex: cache_manifest.h), fed chunk
// by chunk and computed on a thread of its own while the chunks travel.
//
// Why a thread: xxh3 costs 0.02–0.15 s per GB (42 GB/s over a chunk still in the cache, ~15 from
// memory on the AMD EPYC we bench on; 7 on an older Intel one) on the thread that also sends or
// receives the chunks. Over TCP that thread is busy for most of a transfer — the kernel copies into
// the socket and, on loopback, runs the receiving side's protocol work in the sender's context too —
// so hashing inline added ~25% to a put and a get. On a thread of its own the hash overlaps the
// transfer; callers add each chunk right after sending or receiving it, while it is in the cache. A
// payload of one chunk is hashed inline: the thread would cost more than it saves.
//
// Why SCHED_IDLE: the hash is the one part of a transfer that can wait. At normal priority it
// preempted a Redis server on the same cores, which then spent 5–9 ms of a 64 MB put in the run
// queue; as an idle-class thread it runs only on CPU time nobody else wants (64 MB puts over TCP
// into a full cache: 2.6–3.1 GB/s before, 3.8–3.9 after, one probe run on 2 cores). Where every core
// is busy it may not run at all: digest() then hashes the chunks still queued on the caller's own
// thread, so the worst case is hashing inline, never a stall.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "core/hash.h"

namespace lvrl::cache {

class ChunkChecksum {
 public:
  explicit ChunkChecksum(uint64_t chunks);
  // Stops the thread after the chunk it is hashing; chunks not yet hashed are dropped.
  ~ChunkChecksum();
  ChunkChecksum(const ChunkChecksum&) = delete;
  ChunkChecksum& operator=(const ChunkChecksum&) = delete;

  // The next `size` bytes of the payload, in order. They must stay unchanged and alive until
  // digest() returns or this object is destroyed.
  void add(const char* data, size_t size);
  // Hashes what the thread has not reached yet itself, waits for the chunk the thread is on, and
  // returns the hex digest of every added chunk.
  std::string digest();

 private:
  void run();
  // With `lock` held and no chunk being hashed: hashes the front of pending_ with the lock released.
  void hash_front(std::unique_lock<std::mutex>& lock);
  Hasher hasher_;  // touched only by whoever set hashing_, in order of the chunks
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::pair<const char*, size_t>> pending_;
  bool hashing_ = false;  // a chunk taken from pending_ is being hashed
  bool stop_ = false;
  std::thread thread_;  // not started for one chunk
};

}  // namespace lvrl::cache
