#include "video/av_check.h"

#include <fmt/format.h>

extern "C" {
#include <libavutil/error.h>
}

namespace lvrl::video {
std::string av_error_text(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {0};
  if (av_strerror(code, text, sizeof(text)) < 0) {
    return fmt::format("unknown FFmpeg error {}", code);
  }
  return fmt::format("{} (AVERROR {})", text, code);
}
}  // namespace lvrl::video
