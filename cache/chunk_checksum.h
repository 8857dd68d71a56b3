// The checksum of an embedding's payload (XXH3-128 of its bytes, as hex: cache_manifest.h), fed chunk
// by chunk and computed on a thread of its own while the chunks travel.
//
// Why a thread: xxh3 runs at ~7 GB/s on our machines (Debian's libxxhash has no AVX2 path), 0.15 s
// per GB on the thread that also sends or receives the chunks. Over TCP that thread is busy for most
// of a transfer — the kernel copies into the socket and, on loopback, runs the receiving side's
// protocol work in the sender's context too — so hashing inline added ~25% to a put and a get. On a
// thread of its own the hash overlaps the transfer. A payload of one chunk is hashed inline: the
// thread would cost more than it saves.
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
  // Waits until every added chunk is hashed; the hex digest of all of them.
  std::string digest();

 private:
  void run();
  Hasher hasher_;  // touched only by the thread while it runs
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::pair<const char*, size_t>> pending_;
  bool hashing_ = false;  // the thread holds a chunk taken from pending_
  bool stop_ = false;
  std::thread thread_;  // not started for one chunk
};

}  // namespace lvrl::cache
