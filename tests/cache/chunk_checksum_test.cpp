// ChunkChecksum hashes a payload chunk by chunk on a thread of its own; its digest must be the
// one-shot XXH3-128 of the whole payload (hash_bytes, itself checked against `xxhsum -H2` in
// tests/core/hash_test.cpp) for every way of cutting the payload, one chunk (hashed inline) included.
#include "cache/chunk_checksum.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/hash.h"
#include "tests/core/test_files.h"

namespace lvrl::cache {
namespace {

using testing_files::random_bytes;

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
    for (uint64_t i = 0; i < 32; ++i) checksum.add(payload.data() + i * (payload.size() / 32), payload.size() / 32);
  }
  SUCCEED();
}

}  // namespace
}  // namespace lvrl::cache
