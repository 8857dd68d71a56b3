#include "video/frame_converter.h"

#include <ATen/ATen.h>

#include <cstring>

#include "core/error.h"

extern "C" {
#include <libavutil/frame.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

namespace lvrl::video {
namespace {
int sws_matrix(const AVFrame* frame) {
  switch (frame->colorspace) {
    case AVCOL_SPC_BT709:
      return SWS_CS_ITU709;
    case AVCOL_SPC_FCC:
      return SWS_CS_FCC;
    case AVCOL_SPC_SMPTE240M:
      return SWS_CS_SMPTE240M;
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL:
      return SWS_CS_BT2020;
    case AVCOL_SPC_BT470BG:
    case AVCOL_SPC_SMPTE170M:
      return SWS_CS_ITU601;
    default:  // unlabelled: HD is BT.709 in practice
      return frame->width >= 1280 || frame->height > 576 ? SWS_CS_ITU709 : SWS_CS_ITU601;
  }
}

bool full_range(const AVFrame* frame) {
  if (frame->color_range == AVCOL_RANGE_JPEG) return true;
  if (frame->color_range == AVCOL_RANGE_MPEG) return false;
  AVPixelFormat format = static_cast<AVPixelFormat>(frame->format);
  return format == AV_PIX_FMT_YUVJ420P || format == AV_PIX_FMT_YUVJ422P || format == AV_PIX_FMT_YUVJ444P;
}
}  // namespace

FrameConverter::FrameConverter(int width, int height, int rotation)
    : width_(width), height_(height), rotation_(rotation) {
  LVRL_ASSERT(width > 0 && height > 0, "output size must be positive");
  LVRL_ASSERT(rotation % 90 == 0 && rotation >= 0 && rotation < 360, "rotation must be 0, 90, 180 or 270");
}

FrameConverter::~FrameConverter() {
  sws_freeContext(sws_);
}

void FrameConverter::convert(const AVFrame* frame, at::Tensor out) {
  LVRL_ASSERT(out.is_contiguous() && out.scalar_type() == at::kByte && out.dim() == 3 &&
                  out.size(0) == height_ && out.size(1) == width_ && out.size(2) == 3,
              "output row must be a contiguous [H, W, 3] uint8 tensor");
  bool swapped = rotation_ == 90 || rotation_ == 270;
  int upright_w = swapped ? height_ : width_;  // size before the display rotation
  int upright_h = swapped ? width_ : height_;
  at::Tensor target = out;
  if (rotation_ != 0) {
    if (!upright_.defined()) upright_ = at::empty({upright_h, upright_w, 3}, at::kByte);
    target = upright_;
  }

  AVPixelFormat source = static_cast<AVPixelFormat>(frame->format);
  sws_ =
      sws_getCachedContext(sws_, frame->width, frame->height, source, upright_w, upright_h, AV_PIX_FMT_RGB24,
                           SWS_BICUBIC, nullptr, nullptr, nullptr);  // accurate-rounding flags cost 40%
  LVRL_ASSERT(sws_ != nullptr, std::string("swscale cannot convert from ") +
                                   (av_get_pix_fmt_name(source) ? av_get_pix_fmt_name(source) : "?"));
  const int* coefficients = sws_getCoefficients(sws_matrix(frame));
  // Source range from the frame; output is full-range RGB. Brightness/contrast/saturation neutral.
  sws_setColorspaceDetails(sws_, coefficients, full_range(frame) ? 1 : 0, sws_getCoefficients(SWS_CS_DEFAULT),
                           1, 0, 1 << 16, 1 << 16);

  // swscale's SIMD paths write whole vectors: past the end of a row whose byte width is no multiple
  // of the vector size (e.g. 644·3). Convert into a padded scratch and copy the rows out.
  const int row_bytes = upright_w * 3;
  const int stride = (row_bytes + 63) / 64 * 64;
  scratch_.resize(static_cast<size_t>(stride) * (upright_h + 1) + 64);
  uint8_t* aligned =
      reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(scratch_.data()) + 63) & ~uintptr_t(63));
  uint8_t* planes[4] = {aligned, nullptr, nullptr, nullptr};
  int strides[4] = {stride, 0, 0, 0};
  int rows = sws_scale(sws_, frame->data, frame->linesize, 0, frame->height, planes, strides);
  LVRL_ASSERT(rows == upright_h, "swscale wrote a partial frame");
  uint8_t* out_rows = target.data_ptr<uint8_t>();
  for (int y = 0; y < upright_h; ++y)
    std::memcpy(out_rows + static_cast<size_t>(y) * row_bytes, aligned + static_cast<size_t>(y) * stride,
                row_bytes);

  if (rotation_ != 0) {
    // Clockwise by `rotation_`: at::rot90 turns counterclockwise for k > 0 over dims (0, 1).
    out.copy_(at::rot90(upright_, -rotation_ / 90, {0, 1}));
  }
}

}  // namespace lvrl::video
