// A seeded mutation fuzzer over valid safetensors files: every mutant must either load (and every
// tensor be readable end to end) or be an InputError. Any other exception fails the test; a crash
// or hang fails the binary. Bounded to ~3 s or 3000 mutants, whichever comes first.
//
// Reproduce a failure with LVRL_FUZZ_SEED=<printed seed>; the failing mutant is also kept on disk.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/safetensors.h"
#include "tests/support/files.h"

namespace lvrl::safetensors {
namespace {

constexpr int kMaxMutants = 3000;
constexpr double kMaxSeconds = 3.0;
constexpr uint32_t kDefaultSeed = 20240611;

using test::read_file;
using test::write_file;

uint64_t header_length_of(const std::string& bytes) {
  uint64_t length = 0;
  for (int i = 7; i >= 0 && bytes.size() >= 8; --i) length = (length << 8) | static_cast<uint8_t>(bytes[i]);
  return length;
}

void set_header_length(std::string& bytes, uint64_t length) {
  if (bytes.size() < 8) return;
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((length >> (8 * i)) & 0xff);
}

// Valid files to start from: our writer's (every dtype, 0-dim, empty, metadata) and hand-built
// unpadded ones (unaligned tensors, the copy path).
std::vector<std::string> seed_files(const std::string& dir) {
  std::vector<std::string> files;
  at::manual_seed(7);
  const TensorMap mixed = {
      {"f32", at::randn({3, 4})},
      {"f64", at::randn({2}, at::kDouble)},
      {"bf16", at::randn({5}).to(at::kBFloat16)},
      {"f16", at::randn({2, 2}).to(at::kHalf)},
      {"i64", at::arange(3)},
      {"i32", at::arange(4, at::kInt)},
      {"i16", at::arange(2, at::kShort)},
      {"i8", at::arange(3, at::kChar)},
      {"u8", at::arange(5, at::kByte)},
      {"mask", at::arange(4).remainder(2).to(at::kBool)},
      {"scalar", at::scalar_tensor(1.5)},
      {"empty", at::empty({0, 3})},
  };
  save(dir + "/seed0", mixed, {{"format", "pt"}, {"step", "3"}});
  save(dir + "/seed1", {{"w", at::randn({8})}});
  save(dir + "/seed2", {});
  for (int i = 0; i < 3; ++i) files.push_back(read_file(dir + "/seed" + std::to_string(i)));

  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I16","shape":[1],"data_offsets":[8,10]},"__metadata__":{"k":"v"}})";
  std::string unpadded(8, '\0');
  set_header_length(unpadded, header.size());
  files.push_back(unpadded + header + std::string("\x00\x00\x80\x3f\x00\x00\x00\x40\x05\x00", 10));
  return files;
}

// Bytes that change JSON's meaning when they land in a header.
constexpr char kInterestingLiteral[] = "{}[],:\"0123456789-+.eE \\/nulltruefalse\x00\xff\x80\x7f";
const std::string kInterestingBytes(kInterestingLiteral, sizeof(kInterestingLiteral) - 1);

struct Mutator {
  std::mt19937& rng;
  std::ostringstream log;

  size_t pick(size_t n) { return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng); }
  // Half the positions in the header (a few hundred bytes that decide everything), half anywhere.
  size_t position(const std::string& bytes) {
    const uint64_t header_end = 8 + std::min<uint64_t>(header_length_of(bytes), bytes.size());
    if (pick(2) == 0 && header_end <= bytes.size()) return pick(header_end);
    return pick(bytes.size());
  }
  char some_byte() {
    return pick(2) == 0 ? kInterestingBytes[pick(kInterestingBytes.size())] : static_cast<char>(pick(256));
  }

  void mutate(std::string& bytes) {
    switch (pick(7)) {
      case 0: {
        if (bytes.empty()) return;
        const size_t at = position(bytes);
        const int bit = static_cast<int>(pick(8));
        bytes[at] = static_cast<char>(bytes[at] ^ (1 << bit));
        log << "flip bit " << bit << " of byte " << at << "; ";
        return;
      }
      case 1: {
        if (bytes.empty()) return;
        const size_t at = position(bytes);
        bytes[at] = some_byte();
        log << "overwrite byte " << at << "; ";
        return;
      }
      case 2: {
        const size_t length = pick(bytes.size() + 1);
        bytes.resize(length);
        log << "truncate to " << length << "; ";
        return;
      }
      case 3: {
        const size_t at = position(bytes);
        std::string inserted;
        for (size_t n = 1 + pick(8); n > 0; --n) inserted += some_byte();
        bytes.insert(std::min(at, bytes.size()), inserted);
        log << "insert " << inserted.size() << " bytes at " << at << "; ";
        return;
      }
      case 4: {
        if (bytes.empty()) return;
        const size_t at = position(bytes);
        const size_t count = std::min(1 + pick(16), bytes.size() - at);
        bytes.erase(at, count);
        log << "erase " << count << " bytes at " << at << "; ";
        return;
      }
      case 5: {
        const uint64_t old_length = header_length_of(bytes);
        const uint64_t choices[] = {
            0,
            old_length + 1 + pick(8),
            old_length - 1 - std::min<uint64_t>(pick(8), old_length ? old_length - 1 : 0),
            bytes.size(),
            bytes.size() - std::min<size_t>(8, bytes.size()),
            100ull << 20,
            1ull << 63,
            std::uniform_int_distribution<uint64_t>()(rng)};
        const uint64_t length = choices[pick(8)];
        set_header_length(bytes, length);
        log << "header length " << old_length << " -> " << length << "; ";
        return;
      }
      default: {  // copy a run of bytes over another place: plausible JSON in the wrong spot
        if (bytes.size() < 2) return;
        const size_t from = position(bytes), to = position(bytes);
        const size_t count = std::min({1 + pick(12), bytes.size() - from, bytes.size() - to});
        bytes.replace(to, count, bytes.substr(from, count));
        log << "copy " << count << " bytes " << from << " -> " << to << "; ";
        return;
      }
    }
  }
};

// Loads every tensor and touches every element (a sum), so a view past the mapping would fault.
void read_everything(const std::string& path) {
  const std::shared_ptr<File> file = File::open(path);
  for (const TensorInfo& info : file->tensors()) {
    const at::Tensor tensor = file->get(info.name);
    (void)tensor.to(at::kDouble).sum().item<double>();
  }
}

TEST(SafetensorsFuzzTest, MutantsLoadOrAreInputErrors) {
  const char* seed_env = std::getenv("LVRL_FUZZ_SEED");
  const uint32_t seed = seed_env != nullptr ? static_cast<uint32_t>(std::stoul(seed_env)) : kDefaultSeed;
  std::cout << "[ fuzz     ] seed " << seed << " (set LVRL_FUZZ_SEED to reproduce)\n";
  std::mt19937 rng(seed);

  const TempDir temp("lvrl-safetensors-fuzz");
  const std::string dir = temp.path();
  const std::vector<std::string> seeds = seed_files(dir);
  for (size_t i = 0; i < seeds.size(); ++i) {
    write_file(dir + "/valid", seeds[i]);
    ASSERT_NO_THROW(read_everything(dir + "/valid")) << "seed file " << i << " must be valid";
  }

  const auto start = std::chrono::steady_clock::now();
  int mutants = 0, loaded = 0, rejected = 0;
  bool failed = false;
  for (; mutants < kMaxMutants && !failed; ++mutants) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > kMaxSeconds) break;
    Mutator mutator{rng, {}};
    const size_t base = mutator.pick(seeds.size());
    std::string bytes = seeds[base];
    for (size_t n = 1 + mutator.pick(3); n > 0; --n) mutator.mutate(bytes);
    const std::string path = dir + "/mutant";
    write_file(path, bytes);
    try {
      read_everything(path);
      ++loaded;
    } catch (const InputError&) {
      ++rejected;
    } catch (const std::exception& e) {
      failed = true;
      const std::string kept = "/tmp/lvrl_safetensors_fuzz_failure.safetensors";
      write_file(kept, bytes);
      ADD_FAILURE() << "seed " << seed << ", mutant " << mutants << " of seed file " << base << " ("
                    << mutator.log.str() << ") threw a non-InputError: " << e.what() << "\nkept as " << kept;
    }
  }
  std::cout << "[ fuzz     ] " << mutants << " mutants: " << loaded << " loaded, " << rejected
            << " rejected as InputError\n";
  EXPECT_GT(rejected, 0);
  EXPECT_GT(mutants, 500) << "too few mutants ran to mean anything";
}

}  // namespace
}  // namespace lvrl::safetensors
