#include "core/memory.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

namespace lvrl {

bool fix_mmap_threshold(size_t bytes) {
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr) return false;
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.mmap_threshold") != nullptr) return false;
  return mallopt(M_MMAP_THRESHOLD, static_cast<int>(bytes)) == 1;
}

}  // namespace lvrl
