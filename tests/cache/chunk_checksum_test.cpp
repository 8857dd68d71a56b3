// ChunkChecksum hashes a payload chunk by chunk on a thread of its own; its digest must be the
// one-shot XXH3-128 of the whole payload (hash_bytes, itself checked against `xxhsum -H2` in
// tests/core/hash_test.cpp) for every way of cutting the payload, one chunk (hashed inline) included.
#include "cache/chunk_checksum.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/hash.h"
#include "tests/support/files.h"

namespace lvrl::cache {
namespace {

using test::random_bytes;

TEST(ChunkChecksum, EqualsTheOneShotHashForEveryCut) {
  const std::string payload = random_bytes(1 << 20, 7);
  const std::string whole = hash_bytes(payload.data(), payload.size()).hex();
  // {chunk size, chunks}: even cuts, a short last chunk, one chunk, many tiny ones.
  for (const size_t chunk : {size_t{1} << 20, size_t{4096}, size_t{1000}, size_t{7}, size_t{333333}}) {
    SCOPED_TRACE(fmt::format("chunk {} bytes", chunk));
    const uint64_t chunks = (payload.size() + chunk - 1) / chunk;
    ChunkChecksum checksum(chunks);
    for (uint64_t i = 0; i < chunks; ++i) {
      checksum.add(payload.data() + i * chunk, std::min(chunk, payload.size() - i * chunk));
    }
    EXPECT_EQ(checksum.digest(), whole);
  }
}

TEST(ChunkChecksum, EmptyPayloadAndEmptyChunks) {
  EXPECT_EQ(ChunkChecksum(0).digest(), hash_bytes("", 0).hex());
  const std::string payload = random_bytes(5000, 8);
  ChunkChecksum checksum(4);  // zero-length chunks in between change nothing
  checksum.add(payload.data(), 0);
  checksum.add(payload.data(), 2500);
  checksum.add(payload.data() + 2500, 0);
  checksum.add(payload.data() + 2500, 2500);
  EXPECT_EQ(checksum.digest(), hash_bytes(payload.data(), payload.size()).hex());
}

TEST(ChunkChecksum, DigestWaitsForEveryChunkAndOrderMatters) {
  // 64 chunks of 256 KiB added back to back: digest() must wait for the thread to finish all of them.
  const std::string payload = random_bytes(size_t{16} << 20, 9);
  const size_t chunk = size_t{256} << 10;
  ChunkChecksum in_order(64), swapped(64);
  for (uint64_t i = 0; i < 64; ++i) in_order.add(payload.data() + i * chunk, chunk);
  for (uint64_t i = 0; i < 64; ++i) swapped.add(payload.data() + (i ^ 1) * chunk, chunk);
  const std::string whole = hash_bytes(payload.data(), payload.size()).hex();
  EXPECT_EQ(in_order.digest(), whole);
  EXPECT_NE(swapped.digest(), whole);
}

TEST(ChunkChecksum, DestroyedBeforeDigestStopsCleanly) {
  // A put or get that fails midway drops its checksum with chunks still queued: no hang, no crash.
  const std::string payload = random_bytes(size_t{8} << 20, 10);
  for (int round = 0; round < 20; ++round) {
    ChunkChecksum checksum(32);
    for (uint64_t i = 0; i < 32; ++i)
      checksum.add(payload.data() + i * (payload.size() / 32), payload.size() / 32);
  }
  SUCCEED();
}

TEST(ChunkChecksum, DigestDoesNotWaitOnAnIdleClassThreadOfABusyMachine) {
  // The hashing thread runs at SCHED_IDLE: with every core kept busy by normal threads it gets next to
  // no CPU, and 256 MiB took it 17–19 s here (2 cores, four busy threads) when digest() only waited.
  // digest() must hash what is still queued on the caller's own thread instead (~0.1 s here).
  const size_t chunk = size_t{4} << 20;
  std::string payload(size_t{256} << 20, '\0');
  for (size_t i = 0; i < payload.size(); i += 4096) payload[i] = static_cast<char>(i >> 12);
  const std::string whole = hash_bytes(payload.data(), payload.size()).hex();
  std::atomic<bool> done{false};
  std::vector<std::thread> spinners;
  for (unsigned i = 0; i < 2 * std::max(1u, std::thread::hardware_concurrency()); ++i) {  // two per core
    spinners.emplace_back([&] {
      while (!done.load(std::memory_order_relaxed)) {
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // every core busy before the thread starts
  ChunkChecksum checksum(payload.size() / chunk);
  for (size_t at = 0; at < payload.size(); at += chunk) checksum.add(payload.data() + at, chunk);
  const auto start = std::chrono::steady_clock::now();
  const std::string digest = checksum.digest();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  done = true;
  for (std::thread& spinner : spinners) spinner.join();
  EXPECT_EQ(digest, whole);
  EXPECT_LT(seconds, 0.5) << "digest() waited for the idle-class thread";
}

}  // namespace
}  // namespace lvrl::cache
