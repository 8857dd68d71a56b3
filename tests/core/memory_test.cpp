// fix_mmap_threshold: blocks of 1–32 MiB freed in a step go back to the kernel instead of staying
// as heap holes. Each scenario runs in a forked child, so the parent's allocation history (and so
// glibc's adjusted threshold) cannot decide the outcome.
#include "core/memory.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

namespace lvrl {
namespace {

int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

void* touched(size_t bytes) {
  void* p = std::malloc(bytes);
  if (p == nullptr) std::abort();
  std::memset(p, 1, bytes);
  asm volatile("" : : "r"(p) : "memory");  // the pages are used: the compiler may not drop the block
  return p;
}

// In a child: one 16 MiB block freed (glibc raises its threshold to it), then eight 8 MiB blocks,
// freed again. Returns how much of their 64 MiB stays resident, in MiB.
int64_t residue_mib(bool fix) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    if (fix && !fix_mmap_threshold()) _exit(3);
    std::free(touched(size_t{16} << 20));
    // Each block followed by a 1 MiB one that stays (above it on the heap, if it is on the heap;
    // a small one could come from an older hole below).
    std::vector<void*> blocks, pins;
    for (int i = 0; i < 8; ++i) {
      blocks.push_back(touched(size_t{8} << 20));
      pins.push_back(touched(size_t{1} << 20));
    }
    const int64_t with_pins = resident_bytes();
    for (void* b : blocks) std::free(b);
    const int64_t residue = (resident_bytes() - (with_pins - (int64_t{64} << 20))) >> 20;
    for (void* p : pins) std::free(p);
    _exit(write(fds[1], &residue, sizeof residue) == sizeof residue ? 0 : 4);
  }
  close(fds[1]);
  int64_t residue = -1;
  if (read(fds[0], &residue, sizeof residue) != sizeof residue) residue = -1;
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  return residue;
}

TEST(Memory, FixedMmapThresholdReturnsFreedBlocks) {
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("GLIBC_TUNABLES")) {
    GTEST_SKIP() << "the environment sets glibc's malloc tunables";
  }
  const int64_t adjusted = residue_mib(false), fixed = residue_mib(true);
  // glibc's own behaviour, the reason for the fix: the 64 MiB stay resident as heap holes.
  EXPECT_GE(adjusted, 56) << "without the fix";
  EXPECT_LE(fixed, 2) << "with the fix; without it: " << adjusted << " MiB";
}

TEST(Memory, TheEnvironmentWins) {
  ASSERT_EQ(setenv("MALLOC_MMAP_THRESHOLD_", "131072", 1), 0);
  EXPECT_FALSE(fix_mmap_threshold());
  unsetenv("MALLOC_MMAP_THRESHOLD_");
  ASSERT_EQ(setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072", 1), 0);
  EXPECT_FALSE(fix_mmap_threshold());
  unsetenv("GLIBC_TUNABLES");
}

}  // namespace
}  // namespace lvrl
