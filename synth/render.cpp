#include "synth/render.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"

namespace lvrl::synth {
namespace {

const Segment* segment_at(const std::vector<Segment>& segments, int64_t slot) {
  for (const Segment& segment : segments) {
    if (slot >= segment.first_slot && slot < segment.end_slot()) return &segment;
  }
  return nullptr;
}

// dx, dy: offsets from the centre in half pixels; r2: the radius (half the side) in half pixels.
bool inside(Shape shape, int dx, int dy, int r2) {
  const int ax = std::abs(dx), ay = std::abs(dy);
  switch (shape) {
    case Shape::Square:
      return ax <= r2 && ay <= r2;
    case Shape::Circle:
      return dx * dx + dy * dy <= r2 * r2;
    case Shape::Triangle:
      return ay <= r2 && 2 * ax <= dy + r2;  // apex up, base at the bottom
    case Shape::Cross:
      return ax <= r2 && ay <= r2 && (ax <= r2 / 3 || ay <= r2 / 3);
  }
  return false;
}

class Canvas {
 public:
  Canvas(int width, int height, std::vector<uint8_t>& rgb) : width_(width), height_(height), rgb_(rgb) {
    rgb_.resize(static_cast<size_t>(width) * height * 3);
  }
  void fill(const Rect& rect, const Colour& colour) {
    for (int y = std::max(rect.y, 0); y < std::min(rect.y + rect.height, height_); ++y) {
      for (int x = std::max(rect.x, 0); x < std::min(rect.x + rect.width, width_); ++x) put(x, y, colour);
    }
  }
  // Every pixel whose centre is inside `shape` of radius `radius` pixels centred at (x2, y2).
  void draw(Shape shape, int x2, int y2, int radius, const Colour& colour) {
    for (int y = std::max((y2 - 2 * radius) / 2 - 1, 0); y <= std::min((y2 + 2 * radius) / 2, height_ - 1);
         ++y) {
      for (int x = std::max((x2 - 2 * radius) / 2 - 1, 0); x <= std::min((x2 + 2 * radius) / 2, width_ - 1);
           ++x) {
        if (inside(shape, 2 * x + 1 - x2, 2 * y + 1 - y2, 2 * radius)) put(x, y, colour);
      }
    }
  }

 private:
  void put(int x, int y, const Colour& colour) {
    uint8_t* pixel = &rgb_[(static_cast<size_t>(y) * width_ + x) * 3];
    pixel[0] = colour.r;
    pixel[1] = colour.g;
    pixel[2] = colour.b;
  }
  int width_, height_;
  std::vector<uint8_t>& rgb_;
};

}  // namespace

Layout make_layout(int width, int height) {
  LVRL_ASSERT(width >= 32 && height >= 32, "make_layout: frames must be at least 32x32");
  Layout layout;
  layout.width = width;
  layout.height = height;
  const int qw = width / 2, qh = height / 2;
  const int unit = std::min(qw, qh), margin = unit / 8;
  layout.panel = {margin, margin, qw - 2 * margin, qh - 2 * margin};
  layout.lamp_x2 = qw + width;  // the centre of [qw, width), in half pixels
  layout.lamp_y2 = qh;
  layout.lamp_radius = unit * 3 / 8;
  layout.shape_x2 = qw;
  layout.shape_y2 = qh + height;
  layout.shape_radius = unit * 3 / 8;
  layout.motion = {qw + margin, qh + margin, width - qw - 2 * margin, height - qh - 2 * margin};
  layout.ball_radius = std::max(2, unit / 6);
  return layout;
}

void ball_centre(const Scene& scene, const Layout& layout, int64_t frame, int& x2, int& y2) {
  const Rect& track = layout.motion;
  const int r = layout.ball_radius;
  const bool horizontal = scene.motion == Direction::Left || scene.motion == Direction::Right;
  const int low = horizontal ? 2 * (track.x + r) : 2 * (track.y + r);
  const int high = horizontal ? 2 * (track.x + track.width - r) : 2 * (track.y + track.height - r);
  const bool increasing = scene.motion == Direction::Right || scene.motion == Direction::Down;
  const int from = increasing ? low : high, to = increasing ? high : low;
  const int64_t last = std::max<int64_t>(scene.timeline.frames - 1, 1);
  const int along = from + static_cast<int>((to - from) * frame / last);
  x2 = horizontal ? along : 2 * track.x + track.width;
  y2 = horizontal ? 2 * track.y + track.height : along;
}

void render_frame(const Scene& scene, const Layout& layout, int64_t frame, std::vector<uint8_t>& rgb) {
  Canvas canvas(layout.width, layout.height, rgb);
  const int64_t slot = scene.timeline.slot_of(frame);
  canvas.fill({0, 0, layout.width, layout.height}, kBackground);

  const Segment* colour = segment_at(scene.panel, slot);
  LVRL_ASSERT(colour != nullptr, "the panel's segments must cover every slot");
  canvas.fill(layout.panel, kPalette[colour->value]);

  const bool lit = segment_at(scene.flashes, slot) != nullptr;
  canvas.draw(Shape::Circle, layout.lamp_x2, layout.lamp_y2, layout.lamp_radius, lit ? kLampOn : kLampOff);

  const Segment* shape = segment_at(scene.shapes, slot);
  LVRL_ASSERT(shape != nullptr, "the shapes' segments must cover every slot");
  canvas.draw(static_cast<Shape>(shape->value), layout.shape_x2, layout.shape_y2, layout.shape_radius,
              kForeground);

  int x2 = 0, y2 = 0;
  ball_centre(scene, layout, frame, x2, y2);
  canvas.draw(Shape::Circle, x2, y2, layout.ball_radius, kForeground);
}

}  // namespace lvrl::synth
