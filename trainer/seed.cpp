#include "trainer/seed.h"

#include "core/hash.h"

namespace lvrl::trainer {

uint64_t derive_seed(uint64_t seed, int64_t step, int64_t rank, std::string_view stream) {
  Hasher hasher;
  hasher.update("lvrl.trainer.seed");
  hasher.update_u64(seed).update_u64(static_cast<uint64_t>(step)).update_u64(static_cast<uint64_t>(rank));
  hasher.update_u64(stream.size()).update(stream);  // the length first: the name's end is unambiguous
  return hasher.digest().low;
}

}  // namespace lvrl::trainer
