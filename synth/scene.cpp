#include "synth/scene.h"

#include <numeric>

#include "core/error.h"

namespace lvrl::synth {
namespace {

constexpr int64_t kMinEventSlots = 2;

// `count` distinct values of [0, n) in random order.
std::vector<int> distinct(int n, int count, Rng& rng) {
  std::vector<int> values(n);
  std::iota(values.begin(), values.end(), 0);
  rng.shuffle(values);
  values.resize(count);
  return values;
}

// Back-to-back segments of the given values covering every slot, each at least 2 slots long.
std::vector<Segment> sequence(const std::vector<int>& values, int64_t slots, Rng& rng) {
  const std::vector<int64_t> lengths =
      split_slots(slots, std::vector<int64_t>(values.size(), kMinEventSlots), rng);
  std::vector<Segment> out;
  int64_t slot = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    out.push_back({values[i], slot, lengths[i]});
    slot += lengths[i];
  }
  return out;
}

// Lengths alternate dark, lit, dark, ..., lit, dark: 2·count + 1 parts; the lit ones become segments.
std::vector<Segment> flashes(int count, int64_t slots, Rng& rng) {
  std::vector<int64_t> minimum(2 * count + 1, kMinEventSlots);
  minimum.front() = minimum.back() = 1;  // dark at both ends: every flash is seen to begin and end
  const std::vector<int64_t> lengths = split_slots(slots, minimum, rng);
  std::vector<Segment> out;
  int64_t slot = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    if (i % 2 == 1) out.push_back({0, slot, lengths[i]});
    slot += lengths[i];
  }
  return out;
}

}  // namespace

const char* shape_name(Shape shape) {
  // Indexed by the enumerator's value: kShapes lists them in declaration order.
  constexpr std::array<const char*, 4> kNames{"square", "circle", "triangle", "cross"};
  const auto index = static_cast<size_t>(shape);
  LVRL_ASSERT(index < kNames.size(), "unknown Shape");
  return kNames[index];
}

const char* direction_name(Direction direction) {
  // Indexed by the enumerator's value: kDirections lists them in declaration order.
  constexpr std::array<const char*, 4> kNames{"left", "right", "up", "down"};
  const auto index = static_cast<size_t>(direction);
  LVRL_ASSERT(index < kNames.size(), "unknown Direction");
  return kNames[index];
}

std::vector<int64_t> split_slots(int64_t total, const std::vector<int64_t>& minimum, Rng& rng) {
  std::vector<int64_t> lengths = minimum;
  const int64_t spare = total - std::accumulate(minimum.begin(), minimum.end(), int64_t{0});
  LVRL_ASSERT(spare >= 0 && !minimum.empty(), "split_slots: the minima exceed the total");
  for (int64_t i = 0; i < spare; ++i) ++lengths[rng.below(lengths.size())];
  return lengths;
}

Scene make_scene(const Timeline& timeline, Rng& rng) {
  LVRL_ASSERT(timeline.slots() >= kMinSlots, "make_scene: too few slots (make_timeline checks this)");
  Scene scene;
  scene.timeline = timeline;
  const int64_t slots = timeline.slots();
  scene.panel = sequence(distinct(kPalette.size(), static_cast<int>(rng.between(3, 4)), rng), slots, rng);
  scene.flashes = flashes(static_cast<int>(rng.between(1, 4)), slots, rng);
  scene.shapes = sequence(distinct(kShapes.size(), static_cast<int>(rng.between(2, 3)), rng), slots, rng);
  scene.motion = kDirections[rng.below(kDirections.size())];
  return scene;
}

}  // namespace lvrl::synth
