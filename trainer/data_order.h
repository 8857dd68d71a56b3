// The order a run reads its dataset in: epoch e is a permutation of the items drawn from
// derive_seed(shuffle_seed, e, 0, "data-order") — a pure function of (seed, epoch), the same on
// every rank and after any resume, so the data cursor (trainer_state.h) is just (epoch, position).
#pragma once

#include <cstdint>
#include <vector>

#include "trainer/trainer_state.h"

namespace lvrl::trainer {

// [dataset_size] item indices of epoch `epoch`.
std::vector<int64_t> epoch_order(int64_t dataset_size, uint64_t shuffle_seed, int64_t epoch);

// The next `count` items from `cursor` (read from cursor_to_read_from), not crossing the epoch's end:
// fewer at the end of an epoch. Advances the cursor past them.
std::vector<int64_t> take_items(DataCursor& cursor, int64_t dataset_size, int64_t count);

}  // namespace lvrl::trainer
