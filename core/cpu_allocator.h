// The CPU tensor allocator of every lvrl process. Blocks of 1 MiB and more are private anonymous
// mappings; a freed one is kept mapped for the next allocation (the same size reused as is, another size
// resized in place or moved with mremap), and the blocks kept never take the process above the most bytes
// its large tensors held live at once (live + kept ≤ peak live). A training step repeats its shapes, so
// after its first step the large temporaries neither fault in fresh pages nor leave holes in the malloc
// heap: glibc keeps freed memory that lies below the top of its heap, so with the system allocator a
// rank's RSS climbs above what it ever held live (sequence-parallel ranks at 64k tokens: ~20%).
// Smaller blocks come from posix_memalign. Every block is 64-byte aligned, as LibTorch's own.
//
// Installed for every binary that links core/ at start-up (LibTorch's CPU allocator slot, priority 1);
// LVRL_CPU_ALLOCATOR=system keeps LibTorch's allocator (an anchor for benchmarks, or a memory debugger;
// the default in AddressSanitizer builds, which cannot see inside these mappings).
#pragma once

#include <c10/core/Allocator.h>
#include <torch/version.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace lvrl {

struct CpuAllocatorStats {
  int64_t live_bytes = 0;       // mapped bytes of large blocks in use
  int64_t kept_bytes = 0;       // mapped bytes of large blocks freed and kept for reuse
  int64_t peak_live_bytes = 0;  // most live_bytes so far; live + kept never exceeds it
  int64_t maps = 0;             // fresh mappings
  int64_t reuses = 0;           // allocations served by a kept block of the same size
  int64_t resizes = 0;          // allocations served by resizing a kept block
  int64_t unmaps = 0;           // kept blocks released (to hold live + kept ≤ peak, or on request)
};

class CachingCpuAllocator final : public c10::Allocator {
 public:
  static constexpr size_t kLargeBlock = size_t{1} << 20;  // header included

  CachingCpuAllocator() = default;
  ~CachingCpuAllocator() override;  // unmaps the kept blocks; blocks still in use must be gone
  CachingCpuAllocator(const CachingCpuAllocator&) = delete;
  CachingCpuAllocator& operator=(const CachingCpuAllocator&) = delete;

  c10::DataPtr allocate(size_t bytes) const override;
  c10::DeleterFnPtr raw_deleter() const override;  // data pointer = context: raw_allocate works
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  void copy_data(void* dest, const void* src, std::size_t count) const override;
#endif

  CpuAllocatorStats stats() const;
  void reset_peak();    // peak_live_bytes := live + kept (a benchmark's baseline)
  void release_kept();  // unmaps every kept block

 private:
  struct Kept {
    void* base;
    size_t size;
  };
  static void free_block(void* data);
  void* take_mapping(size_t size) const;  // a mapping of `size` bytes, kept or fresh
  void keep_mapping(void* base, size_t size) const;
  void unmap_oldest_locked() const;

  mutable std::mutex mutex_;
  mutable std::vector<Kept> kept_;  // oldest first
  mutable CpuAllocatorStats stats_;
};

// The process's instance (never destroyed: tensors may outlive static destructors), and whether it is
// LibTorch's CPU allocator in this process (false under LVRL_CPU_ALLOCATOR=system).
CachingCpuAllocator& cpu_allocator();
bool cpu_allocator_installed();

}  // namespace lvrl
