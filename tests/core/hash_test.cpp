// Hashes are checked against an independent implementation: the `xxhsum` command-line tool (Debian
// package `xxhash`), run on the same bytes written to a temporary file.
#include "core/hash.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "tests/support/files.h"
#include "tests/support/run_process.h"

namespace lvrl {
namespace {

class HashTest : public ::testing::Test {
 protected:
  std::string write_file(const std::string& name, const std::string& bytes) {
    const std::string path = dir_.file(name);
    test::write_file(path, bytes);
    return path;
  }

  // XXH3-128 of `bytes` as `xxhsum -H2` prints it ("<32 hex digits>  <file>").
  std::string xxhsum_hex(const std::string& bytes) {
    const std::vector<std::string> argv = {"xxhsum", "-H2", write_file("xxhsum-input", bytes)};
    test::ProcessOptions options;
    options.separate_stderr = true;
    const test::ProcessResult run = test::run_process(argv, options);
    if (run.exit_code != 0 || run.output.size() < 32) {
      ADD_FAILURE() << "`" << test::join_command(argv) << "` failed (exit status " << run.exit_code
                    << "); the tests need the Debian package `xxhash` for the xxhsum tool\n"
                    << run.error_output;
      return "";
    }
    return run.output.substr(0, 32);
  }

  TempDir dir_{"lvrl-hash-test"};
};

using test::random_bytes;

TEST_F(HashTest, EmptyInputMatchesXxhsum) {
  // Also pinned here, so a broken xxhsum can't make both sides agree on a wrong value.
  const std::string kEmptyXxh3_128 = "99aa06d3014798d86001c324468d497f";
  EXPECT_EQ(xxhsum_hex(""), kEmptyXxh3_128);
  EXPECT_EQ(hash_string("").hex(), kEmptyXxh3_128);
  EXPECT_EQ(hash_bytes(nullptr, 0).hex(), kEmptyXxh3_128);
  EXPECT_EQ(Hasher().digest().hex(), kEmptyXxh3_128);
}

TEST_F(HashTest, KnownStringsMatchXxhsum) {
  // Lengths chosen to cross XXH3's internal size classes (0-16, 17-128, 129-240, >240 bytes).
  for (std::string text : {std::string("xxhash"), std::string("lvrl content address"), std::string(100, 'a'),
                           random_bytes(200, 7), random_bytes(5000, 8)}) {
    SCOPED_TRACE("input length " + std::to_string(text.size()));
    EXPECT_EQ(hash_string(text).hex(), xxhsum_hex(text));
  }
}

TEST_F(HashTest, HexIsCanonicalBigEndianHighHalfFirst) {
  Hash128 hash;
  hash.high = 0x0123456789abcdefULL;
  hash.low = 0xfedcba9876543210ULL;
  EXPECT_EQ(hash.hex(), "0123456789abcdeffedcba9876543210");
  EXPECT_EQ(Hash128{}.hex(), std::string(32, '0'));
}

TEST_F(HashTest, EqualityComparesBothHalves) {
  Hash128 a = hash_string("a");
  Hash128 b = a;
  EXPECT_TRUE(a == b);
  b.low ^= 1;
  EXPECT_TRUE(a != b);
  b = a;
  b.high ^= 1;
  EXPECT_TRUE(a != b);
  EXPECT_NE(hash_string("a"), hash_string("b"));
}

TEST_F(HashTest, FileEqualsBytesAroundTheReadSize) {
  constexpr size_t kMiB = size_t{1} << 20;
  const uint64_t seed = 20240601;
  for (size_t size : {size_t{0}, size_t{1}, 4 * kMiB - 1, 4 * kMiB, 4 * kMiB + 1, 9 * kMiB}) {
    SCOPED_TRACE("size " + std::to_string(size) + " seed " + std::to_string(seed));
    std::string bytes = random_bytes(size, seed + size);
    std::string path = write_file("content-" + std::to_string(size), bytes);
    EXPECT_EQ(hash_file(path), hash_bytes(bytes.data(), bytes.size()));
  }
}

TEST_F(HashTest, LargeFileMatchesXxhsum) {
  std::string bytes = random_bytes((size_t{9} << 20) + 3, 99);
  std::string path = write_file("large", bytes);
  EXPECT_EQ(hash_file(path).hex(), xxhsum_hex(bytes));
}

TEST_F(HashTest, StreamingEqualsOneShotAtAnySplit) {
  const uint64_t seed = 12345;
  std::mt19937_64 rng(seed);
  std::string bytes = random_bytes(10000, seed);
  Hash128 one_shot = hash_bytes(bytes.data(), bytes.size());
  for (int trial = 0; trial < 50; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial) + " seed " + std::to_string(seed));
    Hasher hasher;
    size_t at = 0;
    while (at < bytes.size()) {
      // Mostly small pieces (XXH3 buffers internally), now and then a large one or an empty one.
      size_t piece = rng() % 4 == 0 ? rng() % 3000 : rng() % 70;
      piece = std::min(piece, bytes.size() - at);
      hasher.update(bytes.data() + at, piece);
      at += piece;
    }
    EXPECT_EQ(hasher.digest(), one_shot);
  }
}

TEST_F(HashTest, DigestLeavesTheHasherUsable) {
  Hasher hasher;
  hasher.update("abc");
  EXPECT_EQ(hasher.digest(), hash_string("abc"));
  hasher.update(std::string_view("def"));
  EXPECT_EQ(hasher.digest(), hash_string("abcdef"));
  Hasher copy = hasher;
  copy.update("g");
  EXPECT_EQ(copy.digest(), hash_string("abcdefg"));
  EXPECT_EQ(hasher.digest(), hash_string("abcdef"));
}

TEST_F(HashTest, U64IsLittleEndianBytes) {
  Hasher hasher;
  hasher.update_u64(0x0807060504030201ULL);
  const unsigned char expected[] = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(hasher.digest(), hash_bytes(expected, sizeof(expected)));
}

TEST_F(HashTest, MissingFileIsInputErrorNamingIt) {
  std::string path = dir_.file("no-such-video.mp4");
  try {
    hash_file(path);
    FAIL() << "hash_file on a missing file did not throw";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), path);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
}

TEST_F(HashTest, DirectoryIsInputErrorNamingIt) {
  try {
    hash_file(dir_.path());
    FAIL() << "hash_file on a directory did not throw";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), dir_.path());
    EXPECT_NE(std::string(e.what()).find("Is a directory"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lvrl
