// core/cpu_allocator: blocks hold their bytes (each filled with its own pattern and checked when freed,
// also from 4 threads at once), the allocator's counts follow an independent ledger of a random
// alloc/free sequence (live bytes exact, live + kept never above the ledger's peak), a freed size is
// reused without a fresh mapping, the process's RSS (read from /proc, not from the allocator) stays
// within the peak live bytes where malloc leaves heap holes, and LibTorch's CPU tensors come from it.
#include "core/cpu_allocator.h"

#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace lvrl {
namespace {

size_t mapped_size(size_t bytes) {  // the allocator's layout: a 64-byte header, whole pages
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return (bytes + 64 + page - 1) / page * page;
}
bool is_large(size_t bytes) {
  return bytes + 64 >= CachingCpuAllocator::kLargeBlock;
}

struct Filled {
  c10::DataPtr ptr;
  size_t bytes = 0;
  unsigned char pattern = 0;
};

Filled fill(const CachingCpuAllocator& allocator, size_t bytes, unsigned char pattern) {
  Filled f{allocator.allocate(bytes), bytes, pattern};
  if (bytes > 0) std::memset(f.ptr.get(), pattern, bytes);
  return f;
}

// Every byte still carries the block's pattern (an overlap with another block would overwrite some).
::testing::AssertionResult intact(const Filled& f) {
  const auto* p = static_cast<const unsigned char*>(f.ptr.get());
  if (f.bytes > 0 && reinterpret_cast<uintptr_t>(p) % 64 != 0)
    return ::testing::AssertionFailure() << "block of " << f.bytes << " bytes not 64-byte aligned";
  for (size_t i = 0; i < f.bytes; ++i)
    if (p[i] != f.pattern)
      return ::testing::AssertionFailure() << "byte " << i << " of a " << f.bytes << "-byte block is "
                                           << int(p[i]) << ", expected " << int(f.pattern);
  return ::testing::AssertionSuccess();
}

int64_t rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}

const std::vector<size_t> kSizes = {
    0, 1, 100, 65536, (1 << 20) - 65, (1 << 20) - 64, 1 << 20, (3 << 20) + 5, 8 << 20, (24 << 20) + 4096};

TEST(CpuAllocator, CountsFollowAnIndependentLedger) {
  CachingCpuAllocator allocator;
  std::mt19937_64 rng(7);
  std::vector<Filled> blocks;
  int64_t live = 0, peak = 0;
  for (int step = 0; step < 600; ++step) {
    const bool alloc = blocks.empty() || (blocks.size() < 12 && rng() % 2 == 0);
    if (alloc) {
      const size_t bytes = kSizes[rng() % kSizes.size()];
      blocks.push_back(fill(allocator, bytes, static_cast<unsigned char>(step)));
      if (is_large(bytes)) live += static_cast<int64_t>(mapped_size(bytes));
    } else {
      const size_t i = rng() % blocks.size();
      ASSERT_TRUE(intact(blocks[i])) << "step " << step;
      if (is_large(blocks[i].bytes)) live -= static_cast<int64_t>(mapped_size(blocks[i].bytes));
      blocks.erase(blocks.begin() + static_cast<ptrdiff_t>(i));
    }
    peak = std::max(peak, live);
    const CpuAllocatorStats s = allocator.stats();
    ASSERT_EQ(s.live_bytes, live) << "step " << step;
    ASSERT_EQ(s.peak_live_bytes, peak) << "step " << step;
    ASSERT_LE(s.live_bytes + s.kept_bytes, peak) << "step " << step;
    ASSERT_GE(s.kept_bytes, 0) << "step " << step;
  }
  for (const Filled& f : blocks) EXPECT_TRUE(intact(f));
  blocks.clear();
  const CpuAllocatorStats s = allocator.stats();
  EXPECT_EQ(s.live_bytes, 0);
  EXPECT_GT(s.reuses + s.resizes, 0);  // the sequence frees and re-allocates large sizes
  allocator.release_kept();
  EXPECT_EQ(allocator.stats().kept_bytes, 0);
}

TEST(CpuAllocator, FreedSizeIsReusedWithoutANewMapping) {
  CachingCpuAllocator allocator;
  void* first = nullptr;
  {
    Filled a = fill(allocator, 8 << 20, 1);
    first = a.ptr.get();
  }
  Filled b = fill(allocator, 8 << 20, 2);
  EXPECT_EQ(b.ptr.get(), first);
  CpuAllocatorStats s = allocator.stats();
  EXPECT_EQ(s.maps, 1);
  EXPECT_EQ(s.reuses, 1);
  b = Filled{};
  Filled c = fill(allocator, 3 << 20, 3);  // a smaller size: the kept 8 MiB block shrinks
  s = allocator.stats();
  EXPECT_EQ(s.maps, 1);
  EXPECT_EQ(s.resizes, 1);
  EXPECT_EQ(s.live_bytes, static_cast<int64_t>(mapped_size(3 << 20)));
  EXPECT_TRUE(intact(c));
}

// Many 6 MiB blocks, every other one freed, then 12 MiB blocks: malloc (below its mmap threshold, which
// glibc raises to the largest block freed) cannot place the larger blocks in the holes, so its RSS
// grows past what is live; this allocator's RSS stays within the peak of live bytes.
TEST(CpuAllocator, ResidentMemoryStaysWithinPeakLiveBytes) {
  CachingCpuAllocator allocator;
  const int64_t before = rss_bytes();
  ASSERT_GT(before, 0);
  int64_t highest = 0;
  {
    std::vector<Filled> small, large;
    for (int i = 0; i < 16; ++i) small.push_back(fill(allocator, 6 << 20, 1));
    for (int i = 0; i < 16; i += 2) small[i] = Filled{};
    for (int i = 0; i < 4; ++i) {
      large.push_back(fill(allocator, 12 << 20, 2));
      highest = std::max(highest, rss_bytes() - before);
    }
    for (const Filled& f : large) EXPECT_TRUE(intact(f));
  }
  const CpuAllocatorStats s = allocator.stats();
  const int64_t slack = 4 << 20;  // the test's own vectors, page-table pages, other threads
  EXPECT_LE(highest, s.peak_live_bytes + slack)
      << "RSS growth " << highest << ", peak live " << s.peak_live_bytes;
  EXPECT_EQ(s.peak_live_bytes, static_cast<int64_t>(16 * mapped_size(6 << 20)));  // the holes were refilled
}

TEST(CpuAllocator, FourThreadsKeepTheirBytes) {
  CachingCpuAllocator allocator;
  std::vector<std::thread> threads;
  std::vector<std::string> failures(4);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      std::vector<Filled> mine;
      for (int step = 0; step < 300; ++step) {
        if (mine.size() < 6 && rng() % 3 != 0) {
          mine.push_back(
              fill(allocator, kSizes[rng() % kSizes.size()], static_cast<unsigned char>(16 * t + step % 16)));
        } else if (!mine.empty()) {
          const size_t i = rng() % mine.size();
          if (auto r = intact(mine[i]); !r) failures[t] = r.message();
          mine.erase(mine.begin() + static_cast<ptrdiff_t>(i));
        }
      }
    });
  for (std::thread& t : threads) t.join();
  for (const std::string& f : failures) EXPECT_EQ(f, "");
  EXPECT_EQ(allocator.stats().live_bytes, 0);
}

TEST(CpuAllocator, LibTorchTensorsComeFromIt) {
  if (!cpu_allocator_installed()) GTEST_SKIP() << "LVRL_CPU_ALLOCATOR=system";
  const int64_t before = cpu_allocator().stats().live_bytes;
  at::Tensor t = at::full({3 << 20}, 7, at::kByte);
  EXPECT_EQ(cpu_allocator().stats().live_bytes - before, static_cast<int64_t>(mapped_size(3 << 20)));
  EXPECT_EQ(t.sum().item<int64_t>(), int64_t{7} * (3 << 20));
  void* raw = c10::GetCPUAllocator()->raw_allocate(2 << 20);  // the raw interface round-trips
  std::memset(raw, 1, 2 << 20);
  c10::GetCPUAllocator()->raw_deallocate(raw);
  t.reset();
  EXPECT_EQ(cpu_allocator().stats().live_bytes, before);
}

}  // namespace
}  // namespace lvrl
