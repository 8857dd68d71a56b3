// Seeds of the trainer's random streams. A stream's seed is a hash of (run seed, step, rank, the
// stream's name), so it is known from those alone: nothing about a generator's state needs to be
// checkpointed, and a resumed run draws at step s exactly what an uninterrupted one would have.
// Streams that must agree across ranks (the dataset shuffle) pass rank 0 on every rank.
#pragma once

#include <cstdint>
#include <string_view>

namespace lvrl::trainer {

// XXH3-128 of the four parts (core/hash.h), its low 64 bits. Different streams, steps or ranks
// give unrelated seeds; the same inputs give the same seed on every machine.
uint64_t derive_seed(uint64_t seed, int64_t step, int64_t rank, std::string_view stream);

}  // namespace lvrl::trainer
