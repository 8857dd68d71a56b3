// Process-wide allocation policy for tensor-heavy processes.
//
// glibc serves a request from the heap when it is below the mmap threshold, and raises that
// threshold (up to 32 MiB) each time a mapped block is freed. A training step allocates and frees
// tensors of 1–32 MiB by the thousand (per-rank shards, ring blocks, gradient accumulators), so
// after the first few frees they all come from the heap, whose freed holes are reused only by
// requests that fit and are returned to the kernel only at its top: resident memory stays at the
// step's worst interleaving, not its live tensors (zigzag attention, L = 64k over 4 ranks: 366–383
// MiB per rank against 322 MiB with the threshold fixed; bench/RESULTS.md, sp_attention).
//
// A fixed threshold stops the adjustment: every block of at least that size is its own mapping,
// unmapped when freed. 4 MiB keeps the attention kernel's per-tile temporaries (≤ 1 MiB at the
// default 256 × 256 tiles) on the heap, where their reuse is cheap.
#pragma once

#include <cstddef>

namespace lvrl {

inline constexpr size_t kDefaultMmapThreshold = size_t{4} << 20;

// Fixes glibc's mmap threshold at `bytes` unless the environment already sets one
// (MALLOC_MMAP_THRESHOLD_, or GLIBC_TUNABLES glibc.malloc.mmap_threshold), which then wins.
// True when this call set it.
bool fix_mmap_threshold(size_t bytes = kDefaultMmapThreshold);

}  // namespace lvrl
