#include "trainer/data_order.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "core/error.h"
#include "trainer/seed.h"

namespace lvrl::trainer {

std::vector<int64_t> epoch_order(int64_t dataset_size, uint64_t shuffle_seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(dataset_size));
  std::iota(order.begin(), order.end(), 0);
  // Fisher–Yates with our own index draws: std::shuffle's use of the engine is not specified, and
  // the order must be the same with every standard library.
  std::mt19937_64 engine(derive_seed(shuffle_seed, epoch, 0, "data-order"));
  for (int64_t i = dataset_size - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(engine() % static_cast<uint64_t>(i + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

std::vector<int64_t> take_items(DataCursor& cursor, int64_t dataset_size, int64_t count) {
  LVRL_ASSERT(dataset_size > 0 && count > 0 && cursor.position < dataset_size,
              fmt::format("take {} items at {} of {}", count, cursor.position, dataset_size));
  const std::vector<int64_t> order = epoch_order(dataset_size, cursor.shuffle_seed, cursor.epoch);
  const int64_t end = std::min(dataset_size, cursor.position + count);
  std::vector<int64_t> items(order.begin() + cursor.position, order.begin() + end);
  cursor.position = end;
  return items;
}

}  // namespace lvrl::trainer
