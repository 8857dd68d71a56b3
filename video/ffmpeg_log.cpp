// FFmpeg calls the log callback from any thread (frame-threaded decoders log from their workers)
// and often hands over one line in several pieces, so the pieces are gathered per thread and a
// line is logged when its newline arrives. av_log_format_line2 adds FFmpeg's "[h264 @ 0x...]"
// prefix; its "line starts here" state is per thread too, so no lock is needed (spdlog's logger is
// thread-safe itself).
#include "video/ffmpeg_log.h"

#include <cstdarg>
#include <mutex>
#include <string>

#include "core/log.h"

extern "C" {
#include <libavutil/log.h>
}

namespace lvrl::video {
namespace {
void log_line(void* context, int level, const char* format, va_list args) {
  if (level > av_log_get_level()) return;
  spdlog::logger* logger = spdlog::default_logger_raw();
  if (logger == nullptr || !logger->should_log(spdlog::level::debug)) return;
  thread_local int print_prefix = 1;
  thread_local std::string pending;
  char piece[1024];
  va_list copy;
  va_copy(copy, args);
  av_log_format_line2(context, level, format, copy, piece, sizeof piece, &print_prefix);
  va_end(copy);
  pending += piece;
  const bool whole = !pending.empty() && pending.back() == '\n';
  if (!whole && pending.size() < 4096) return;  // the rest of the line is still to come
  if (whole) pending.pop_back();
  if (!pending.empty()) LVRL_DEBUG("ffmpeg: {}", pending);
  pending.clear();
}
}  // namespace

void route_ffmpeg_log() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_callback(&log_line); });
}

}  // namespace lvrl::video
