// The one random source of dataset synthesis, specified down to the bit so a seed gives the same
// dataset on every machine and standard library: std::mt19937_64 (its output sequence is fixed by
// the C++ standard) with our own mappings. std::uniform_int_distribution and std::shuffle are left
// out on purpose: their algorithms are the library's choice and differ between releases.
//
// Every video draws from its own stream, seeded from (seed, stream id) through SplitMix64, so
// video i is the same whatever the number of videos; answer letters come from streams of their own.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace lvrl::synth {

// SplitMix64's finalizer (Steele, Lea, Flood 2014): a bijection that scatters nearby seeds.
uint64_t mix_seed(uint64_t value);

class Rng {
 public:
  // The stream for (seed, stream): mt19937_64 seeded with mix_seed(mix_seed(seed) ^ stream).
  Rng(uint64_t seed, uint64_t stream);

  // Uniform in [0, n), n >= 1: draws below 2^64 mod n are rejected (as OpenBSD's arc4random_uniform), then x
  // mod n.
  uint64_t below(uint64_t n);
  // Uniform in [lo, hi].
  int64_t between(int64_t lo, int64_t hi);

  // Fisher–Yates from the back: for i = size-1 .. 1, swap(v[i], v[below(i + 1)]).
  template <typename T>
  void shuffle(std::vector<T>& values) {
    for (size_t i = values.size(); i > 1; --i) std::swap(values[i - 1], values[below(i)]);
  }

 private:
  std::mt19937_64 engine_;
};

}  // namespace lvrl::synth
