// Drawing a Scene's frames as RGB, in integer arithmetic only (coordinates in half pixels, so
// centres fall on pixel edges for odd sizes too): the same scene gives the same bytes on every
// machine and compiler, which makes the encoded files reproducible. No anti-aliasing: edges are
// hard, so after H.264 a region's mean colour or brightness reads back unambiguously.
#pragma once

#include <cstdint>
#include <vector>

#include "synth/scene.h"

namespace lvrl::synth {

constexpr Colour kBackground{"background", 32, 32, 32};
constexpr Colour kLampOff{"dark", 72, 72, 72};
constexpr Colour kLampOn{"lit", 255, 250, 200};
constexpr Colour kForeground{"white", 235, 235, 235};  // shapes and the ball

struct Rect {
  int x = 0, y = 0, width = 0, height = 0;
};

// Where each track is drawn in a width × height frame. Centres are in half pixels: the pixel (x, y)
// has its centre at (2x + 1, 2y + 1).
struct Layout {
  int width = 0, height = 0;
  Rect panel;                      // top-left quadrant, inset
  int lamp_x2 = 0, lamp_y2 = 0;    // lamp centre (half pixels)
  int lamp_radius = 0;             // pixels
  int shape_x2 = 0, shape_y2 = 0;  // shape centre (half pixels)
  int shape_radius = 0;            // half the shape's side, pixels
  Rect motion;                     // bottom-right quadrant: the ball's track
  int ball_radius = 0;             // pixels
};
Layout make_layout(int width, int height);  // width, height >= 32 (asserted)

// The ball's centre at `frame` (half pixels): it crosses its quadrant at constant speed, from one
// inset edge at frame 0 to the opposite one at the last frame, midway along the other axis.
void ball_centre(const Scene& scene, const Layout& layout, int64_t frame, int& x2, int& y2);

// Frame `frame` of the scene: [height, width, 3] uint8 RGB into `rgb` (resized to fit).
void render_frame(const Scene& scene, const Layout& layout, int64_t frame, std::vector<uint8_t>& rgb);

}  // namespace lvrl::synth
