#include "core/cpu_allocator.h"

#include <c10/util/Exception.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace lvrl {
namespace {

// Every block starts with this header; the tensor's data follows 64 bytes later (the alignment LibTorch
// gives CPU tensors). The header names the allocator that owns the block, so the deleter — a plain
// function of the data pointer — can hand it back.
constexpr size_t kHeaderBytes = 64;
constexpr uint64_t kMagic = 0x6c76726c416c6c63;  // "lvrlAllc"

struct BlockHeader {
  uint64_t magic;
  uint64_t mapped_bytes;  // 0: a posix_memalign block
  const CachingCpuAllocator* owner;
};
static_assert(sizeof(BlockHeader) <= kHeaderBytes);

size_t page_bytes() {
  static const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

size_t round_up(size_t n, size_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

BlockHeader* header_of(void* data) {
  return reinterpret_cast<BlockHeader*>(static_cast<char*>(data) - kHeaderBytes);
}

void* data_of(void* base, const CachingCpuAllocator* owner, size_t mapped_bytes) {
  auto* header = static_cast<BlockHeader*>(base);
  header->magic = kMagic;
  header->mapped_bytes = mapped_bytes;
  header->owner = owner;
  return static_cast<char*>(base) + kHeaderBytes;
}

}  // namespace

CachingCpuAllocator::~CachingCpuAllocator() {
  release_kept();
}

c10::DataPtr CachingCpuAllocator::allocate(size_t bytes) const {
  const c10::Device cpu(c10::DeviceType::CPU);
  if (bytes == 0) return {nullptr, nullptr, &free_block, cpu};
  TORCH_CHECK(bytes <= SIZE_MAX - kHeaderBytes - page_bytes(), "CPU allocator: cannot allocate ", bytes,
              " bytes");
  const size_t total = bytes + kHeaderBytes;
  void* data = nullptr;
  if (total < kLargeBlock) {
    void* base = nullptr;
    const int err = ::posix_memalign(&base, kHeaderBytes, total);
    TORCH_CHECK(err == 0 && base != nullptr, "CPU allocator: not enough memory for ", bytes, " bytes (",
                std::strerror(err), ")");
    data = data_of(base, this, 0);
  } else {
    const size_t mapped = round_up(total, page_bytes());
    data = data_of(take_mapping(mapped), this, mapped);
  }
  return {data, data, &free_block, cpu};
}

c10::DeleterFnPtr CachingCpuAllocator::raw_deleter() const {
  return &free_block;
}

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
void CachingCpuAllocator::copy_data(void* dest, const void* src, std::size_t count) const {
  if (count > 0) std::memcpy(dest, src, count);
}
#endif

void CachingCpuAllocator::free_block(void* data) {
  if (data == nullptr) return;
  BlockHeader* header = header_of(data);
  if (header->magic != kMagic) {  // not ours, or its header was overwritten: nothing safe to do
    std::fprintf(stderr, "lvrl CPU allocator: freeing %p, whose block header is damaged\n", data);
    std::abort();
  }
  header->magic = 0;
  if (header->mapped_bytes == 0) {
    std::free(header);
  } else {
    header->owner->keep_mapping(header, header->mapped_bytes);
  }
}

// Prefers the smallest kept block that is large enough (shrunk in place: its tail pages go back to the
// kernel), then the largest smaller one (grown: only the new pages fault in), then a fresh mapping. The
// mapping calls run under the lock: large allocations are rare next to the work they feed.
void* CachingCpuAllocator::take_mapping(size_t size) const {
  std::lock_guard<std::mutex> lock(mutex_);
  ptrdiff_t fit = -1, smaller = -1;
  for (size_t i = 0; i < kept_.size(); ++i) {
    const size_t s = kept_[i].size;
    if (s >= size && (fit < 0 || s < kept_[fit].size)) fit = static_cast<ptrdiff_t>(i);
    if (s < size && (smaller < 0 || s > kept_[smaller].size)) smaller = static_cast<ptrdiff_t>(i);
  }
  void* base = nullptr;
  const ptrdiff_t chosen = fit >= 0 ? fit : smaller;
  if (chosen >= 0) {
    const Kept block = kept_[chosen];
    kept_.erase(kept_.begin() + chosen);
    stats_.kept_bytes -= static_cast<int64_t>(block.size);
    if (block.size == size) {
      base = block.base;
      ++stats_.reuses;
    } else {
      base = ::mremap(block.base, block.size, size, MREMAP_MAYMOVE);
      if (base == MAP_FAILED) {  // e.g. no room to grow: give the block back to the kernel, map afresh
        ::munmap(block.base, block.size);
        ++stats_.unmaps;
        base = nullptr;
      } else {
        ++stats_.resizes;
      }
    }
  }
  if (base == nullptr) {
    base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TORCH_CHECK(base != MAP_FAILED, "CPU allocator: not enough memory for ", size,
                " bytes (mmap: ", std::strerror(errno), ")");
    ++stats_.maps;
  }
  stats_.live_bytes += static_cast<int64_t>(size);
  stats_.peak_live_bytes = std::max(stats_.peak_live_bytes, stats_.live_bytes);
  while (!kept_.empty() && stats_.live_bytes + stats_.kept_bytes > stats_.peak_live_bytes)
    unmap_oldest_locked();
  return base;
}

void CachingCpuAllocator::keep_mapping(void* base, size_t size) const {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.live_bytes -= static_cast<int64_t>(size);
  kept_.push_back({base, size});
  stats_.kept_bytes += static_cast<int64_t>(size);
}

void CachingCpuAllocator::unmap_oldest_locked() const {
  const Kept block = kept_.front();
  kept_.erase(kept_.begin());
  ::munmap(block.base, block.size);
  stats_.kept_bytes -= static_cast<int64_t>(block.size);
  ++stats_.unmaps;
}

CpuAllocatorStats CachingCpuAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingCpuAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_live_bytes = stats_.live_bytes + stats_.kept_bytes;
}

void CachingCpuAllocator::release_kept() {
  std::lock_guard<std::mutex> lock(mutex_);
  while (!kept_.empty()) unmap_oldest_locked();
}

CachingCpuAllocator& cpu_allocator() {
  static auto* instance = new CachingCpuAllocator;
  return *instance;
}

namespace {

// AddressSanitizer sees inside malloc's blocks, not inside our mappings: sanitizer builds default to
// LibTorch's allocator.
#if defined(__has_feature)  // clang
#if __has_feature(address_sanitizer)
#define LVRL_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(LVRL_ASAN)  // gcc, clang
constexpr const char* kDefaultAllocator = "system";
#else
constexpr const char* kDefaultAllocator = "caching";
#endif

// Runs before main (LibTorch's own allocator registers earlier, in libc10's initialisation): priority 1
// outranks it.
bool install_at_start() {
  const char* choice = std::getenv("LVRL_CPU_ALLOCATOR");
  const std::string value = choice == nullptr ? kDefaultAllocator : choice;
  if (value == "system") return false;
  if (value != "caching") {
    std::fprintf(stderr, "error: LVRL_CPU_ALLOCATOR='%s' is not one of: caching, system\n", value.c_str());
    std::exit(2);
  }
  c10::SetAllocator(c10::DeviceType::CPU, &cpu_allocator(), /*priority=*/1);
  return true;
}

const bool installed_at_start = install_at_start();

}  // namespace

bool cpu_allocator_installed() {
  return installed_at_start;
}

}  // namespace lvrl
