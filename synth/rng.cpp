#include "synth/rng.h"

#include "core/error.h"

namespace lvrl::synth {

uint64_t mix_seed(uint64_t value) {
  uint64_t z = value + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

Rng::Rng(uint64_t seed, uint64_t stream) : engine_(mix_seed(mix_seed(seed) ^ stream)) {}

uint64_t Rng::below(uint64_t n) {
  LVRL_ASSERT(n >= 1, "Rng::below(0)");
  const uint64_t threshold = (0 - n) % n;  // 2^64 mod n: the values that would favour small results
  uint64_t x = engine_();
  while (x < threshold) x = engine_();
  return x % n;
}

int64_t Rng::between(int64_t lo, int64_t hi) {
  LVRL_ASSERT(lo <= hi, "Rng::between: empty range");
  return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1));
}

}  // namespace lvrl::synth
