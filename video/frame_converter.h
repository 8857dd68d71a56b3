// Decoded frame → RGB24 at the output size, written straight into an output tensor row. Uses the
// frame's own colour matrix and range (BT.709 for unlabelled HD, BT.601 otherwise, as players do)
// and applies the stream's display rotation. Only chosen frames are ever converted.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <vector>

extern "C" {
struct AVFrame;
struct SwsContext;
}

namespace lvrl::video {

class FrameConverter {
 public:
  // width × height: the displayed (rotated) output size; rotation: clockwise degrees.
  FrameConverter(int width, int height, int rotation);
  ~FrameConverter();
  FrameConverter(const FrameConverter&) = delete;
  FrameConverter& operator=(const FrameConverter&) = delete;

  // out: [height, width, 3] uint8, contiguous.
  void convert(const AVFrame* frame, at::Tensor out);

 private:
  int width_, height_, rotation_;
  SwsContext* sws_ = nullptr;
  at::Tensor upright_;            // [h, w, 3] before rotation (only when rotating)
  std::vector<uint8_t> scratch_;  // swscale's output, rows padded to 64 bytes
};

}  // namespace lvrl::video
