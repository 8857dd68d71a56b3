// What one synthetic video shows: four independent tracks, one per quadrant of the frame, each the
// subject of a question kind (synth/questions.h).
//   top-left      a panel that shows 3 or 4 distinct colours in turn        (which colour first / last)
//   top-right     a lamp that lights up 1 to 4 times                         (how many flashes)
//   bottom-left   2 or 3 distinct shapes in turn                              (which shape at the end)
//   bottom-right  a ball crossing its quadrant left, right, up or down        (which way it moves)
// Tracks are timed in slots (synth/timeline.h): every colour, shape and flash lasts at least 2 slots,
// the gaps between flashes too, and the lamp is dark in the first and last slot, so each event is on
// at least 2 sampled frames. Each answer is uniform over its options (the first colour over the
// palette, the flash count over 1..4, ...), so nothing but the pixels tells which one is right.
// Generation is pure: a Timeline and a stream of random numbers in, a Scene out.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "synth/rng.h"
#include "synth/timeline.h"

namespace lvrl::synth {

struct Colour {
  const char* name;
  uint8_t r, g, b;
};
// Saturated and far apart, so 4:2:0 H.264 keeps them apart.
constexpr std::array<Colour, 6> kPalette{{{"red", 220, 30, 30},
                                          {"green", 30, 180, 50},
                                          {"blue", 40, 70, 230},
                                          {"yellow", 240, 220, 30},
                                          {"magenta", 210, 40, 200},
                                          {"cyan", 30, 200, 210}}};

enum class Shape { Square, Circle, Triangle, Cross };
constexpr std::array<Shape, 4> kShapes{Shape::Square, Shape::Circle, Shape::Triangle, Shape::Cross};
const char* shape_name(Shape shape);  // "square", ...

enum class Direction { Left, Right, Up, Down };
constexpr std::array<Direction, 4> kDirections{Direction::Left, Direction::Right, Direction::Up,
                                               Direction::Down};
const char* direction_name(Direction direction);  // "left", ...

// `value` slots from `first_slot` on; value: a palette index (panel), a Shape (shapes), unused (lamp).
struct Segment {
  int value = 0;
  int64_t first_slot = 0;
  int64_t slots = 0;
  int64_t end_slot() const { return first_slot + slots; }
};

struct Scene {
  Timeline timeline;
  std::vector<Segment> panel;    // covers every slot; distinct colours
  std::vector<Segment> flashes;  // the lamp's lit runs, ascending, apart by >= 2 slots
  std::vector<Segment> shapes;   // covers every slot; distinct shapes
  Direction motion = Direction::Left;
};

Scene make_scene(const Timeline& timeline, Rng& rng);

// `parts` lengths, each >= its minimum, summing to `total`: the minima, then each remaining slot to
// a part drawn uniformly. total >= sum(minimum) (asserted).
std::vector<int64_t> split_slots(int64_t total, const std::vector<int64_t>& minimum, Rng& rng);

}  // namespace lvrl::synth
