// FFmpeg return codes through the one check generator (core/error.h): negative AVERROR → LibraryError
// naming the statement, function, file:line and FFmpeg's own text for the code.
#pragma once

#include <string>

#include "core/error.h"

namespace lvrl::video {
std::string av_error_text(int code);  // av_strerror, plus the code itself
}  // namespace lvrl::video

#define LVRL_AV_CHECK(statement) \
  LVRL_CHECK_GEN("FFmpeg", statement, lvrl_rc >= 0, ::lvrl::video::av_error_text(lvrl_rc))
