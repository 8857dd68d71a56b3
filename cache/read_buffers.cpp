#include "cache/read_buffers.h"

#include <sys/mman.h>

#include <algorithm>
#include <mutex>
#include <new>

namespace lvrl::cache {
namespace {
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kMinimumBytes = size_t{8} << 20;  // below this LibTorch's allocator is as good
constexpr size_t kPoolBytes = size_t{2} << 30;
constexpr size_t kPoolEntries = 8;

struct Mapping {
  void* base = nullptr;  // as mmap returned it
  size_t size = 0;       // as mapped
  char* aligned = nullptr;
  size_t capacity = 0;  // usable bytes from `aligned`
};

class Pool {
 public:
  // nullopt-like: base == nullptr when nothing fits (within 2× the request, so a 1 GB buffer does
  // not serve a 10 MB tensor).
  Mapping take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->capacity >= bytes && it->capacity <= 2 * bytes &&
          (best == free_.end() || it->capacity < best->capacity)) {
        best = it;
      }
    }
    if (best == free_.end()) return {};
    Mapping out = *best;
    pooled_ -= out.size;
    free_.erase(best);
    return out;
  }

  void give(const Mapping& mapping) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (free_.size() < kPoolEntries && pooled_ + mapping.size <= kPoolBytes) {
        free_.push_back(mapping);
        pooled_ += mapping.size;
        return;
      }
    }
    ::munmap(mapping.base, mapping.size);
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Mapping& mapping : free_) ::munmap(mapping.base, mapping.size);
    free_.clear();
    pooled_ = 0;
  }

 private:
  std::mutex mutex_;
  std::vector<Mapping> free_;
  size_t pooled_ = 0;
};

// Never destroyed: tensors holding pooled memory may be freed during static destruction.
Pool& pool() {
  static Pool* instance = new Pool();
  return *instance;
}

Mapping map_huge(size_t bytes) {
  Mapping out;
  out.size = (bytes + kHugePage - 1) / kHugePage * kHugePage + kHugePage;  // + slack to align
  out.base = ::mmap(nullptr, out.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (out.base == MAP_FAILED) throw std::bad_alloc();
  auto start = reinterpret_cast<uintptr_t>(out.base);
  auto aligned = (start + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1);
  out.aligned = reinterpret_cast<char*>(aligned);
  out.capacity = out.size - (aligned - start);
  ::madvise(out.aligned, out.capacity, MADV_HUGEPAGE);  // advice: no error if THP is off
  return out;
}
}  // namespace

at::Tensor allocate_read_tensor(const std::vector<int64_t>& shape, at::ScalarType dtype, uint64_t bytes) {
  const auto options = at::TensorOptions().dtype(dtype);
  if (bytes < kMinimumBytes) return at::empty(shape, options);
  Mapping mapping = pool().take(bytes);
  if (mapping.base == nullptr) mapping = map_huge(bytes);
  return at::from_blob(
      mapping.aligned, shape, [mapping](void*) { pool().give(mapping); }, options);
}

void release_read_buffers() {
  pool().clear();
}

}  // namespace lvrl::cache
