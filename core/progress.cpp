#include "core/progress.h"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "core/error.h"

namespace lvrl {
namespace {

constexpr double kTerminalIntervalS = 0.1;
constexpr double kLogIntervalS = 10.0;
constexpr const char* kIntervalEnv = "LVRL_PROGRESS_INTERVAL";
constexpr int kTerminalBarWidth = 30;
// How much work advance() lets pass between clock reads. A check (clock read + try_lock) costs tens
// of nanoseconds, so 2 µs keeps it near 1% of the cheapest loop. It is kept that short, rather than
// aimed at the print interval, because the stride is measured in steps: after a loop slows down (cache
// hits, then real decoding) the next check is late by one stride of slow steps, and a stride sized for
// 10 ms of cache hits could be hundreds of 2-second videos.
constexpr double kClockCheckTargetS = 2e-6;
constexpr int kMaxCheckShift = 40;

double log_interval_from_env() {
  const char* text = std::getenv(kIntervalEnv);
  if (text == nullptr || *text == '\0') return kLogIntervalS;
  char* end = nullptr;
  errno = 0;
  double seconds = std::strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !std::isfinite(seconds) || seconds < 0) {
    throw InputError({"", 0, kIntervalEnv, text},
                     "expected the seconds between progress lines, a number >= 0");
  }
  return seconds;
}

int terminal_columns(std::FILE* stream) {
  struct winsize size {};
  if (::ioctl(::fileno(stream), TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

// Formats a rate of `per_second` steps: "5.0 it/s", or "2.5 s/it" when slower than 1 per second
// (where "0.4 it/s" would hide the number people actually want).
std::string format_rate(double per_second, const std::string& unit) {
  if (!(per_second > 0) || !std::isfinite(per_second)) return fmt::format("? {}/s", unit);
  if (per_second >= 1) return fmt::format("{:.1f} {}/s", per_second, unit);
  return fmt::format("{:.1f} s/{}", 1 / per_second, unit);
}

}  // namespace

std::string format_duration(double seconds) {
  // Beyond ~30 years a duration is noise (a rate near zero), and the cast below must stay in range.
  if (!std::isfinite(seconds) || seconds < 0 || seconds > 1e9) return "?";
  auto whole = static_cast<int64_t>(seconds);
  int64_t hours = whole / 3600, minutes = whole / 60 % 60, secs = whole % 60;
  if (hours > 0) return fmt::format("{}:{:02}:{:02}", hours, minutes, secs);
  return fmt::format("{}:{:02}", minutes, secs);
}

std::string format_progress(const std::string& label, int64_t done, int64_t total, double elapsed_s,
                            const std::string& unit, int width) {
  if (!std::isfinite(elapsed_s) || elapsed_s < 0) elapsed_s = 0;
  done = std::max<int64_t>(done, 0);
  const bool known_total = total > 0;
  if (known_total) done = std::min(done, total);
  // Zero elapsed time gives an infinite rate; format_rate prints it as unknown.
  const double rate = elapsed_s > 0 ? static_cast<double>(done) / elapsed_s : 0;

  std::string line = label;
  if (!known_total) {
    return line + fmt::format(" {} {}, {}, elapsed {}", done, unit, format_rate(rate, unit),
                              format_duration(elapsed_s));
  }
  const double fraction = static_cast<double>(done) / static_cast<double>(total);
  if (width > 0) {
    int filled = std::clamp(static_cast<int>(std::floor(fraction * width)), 0, width);
    line += " [" + std::string(filled, '#') + std::string(width - filled, '-') + "]";
  }
  // Rounded down, so "100%" appears only when everything is done.
  int percent = std::clamp(static_cast<int>(std::floor(fraction * 100)), 0, 100);
  std::string eta = done == total ? format_duration(0)
                    : rate > 0    ? format_duration(static_cast<double>(total - done) / rate)
                                  : "?";
  return line + fmt::format(" {}/{} {} ({}%), {}, elapsed {}, ETA {}", done, total, unit, percent,
                            format_rate(rate, unit), format_duration(elapsed_s), eta);
}

Progress::Progress(std::string label, int64_t total, std::string unit, ProgressOptions options)
    : label_(std::move(label)),
      total_(total),
      unit_(std::move(unit)),
      stream_(options.stream),
      tty_(options.tty ? *options.tty : ::isatty(::fileno(options.stream)) == 1),
      interval_s_(options.interval_s ? *options.interval_s
                  : tty_             ? kTerminalIntervalS
                                     : log_interval_from_env()),
      start_(Clock::now()),
      last_check_(start_),
      last_print_(start_) {
  LVRL_ASSERT(stream_ != nullptr, "Progress needs a stream");
  LVRL_ASSERT(total_ >= 0, "Progress total must be >= 0 (0 = unknown), got " + std::to_string(total_));
  LVRL_ASSERT(std::isfinite(interval_s_) && interval_s_ >= 0,
              "Progress interval must be >= 0 s, got " + std::to_string(interval_s_));
}

Progress::~Progress() {
  finish();
}

void Progress::advance(int64_t n) {
  LVRL_ASSERT(n >= 0, "Progress::advance by a negative count " + std::to_string(n));
  const int64_t before = done_.fetch_add(n, std::memory_order_relaxed);
  const int shift = check_shift_.load(std::memory_order_relaxed);
  if (((before + n) >> shift) == (before >> shift)) return;
  check_clock();
}

void Progress::check_clock() {
  // Whoever holds the lock is already checking (or printing): nothing for this thread to add.
  std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock() || finished_) return;
  const Clock::time_point now = Clock::now();

  // Re-aim the stride so that the next check comes about kClockCheckTargetS of work from now, at the
  // rate seen since the last one.
  const double since_check = std::chrono::duration<double>(now - last_check_).count();
  const double target = std::min(kClockCheckTargetS, interval_s_ / 4);
  const int shift = check_shift_.load(std::memory_order_relaxed);
  const double steps_per_check = std::ldexp(1.0, shift);
  int new_shift = shift;
  if (since_check <= 0) {
    new_shift = shift + 1;
  } else {
    const double wanted_steps = steps_per_check * target / since_check;
    new_shift = wanted_steps >= 2 ? static_cast<int>(std::floor(std::log2(wanted_steps))) : 0;
  }
  check_shift_.store(std::clamp(new_shift, 0, kMaxCheckShift), std::memory_order_relaxed);
  last_check_ = now;

  if (std::chrono::duration<double>(now - last_print_).count() >= interval_s_) {
    last_print_ = now;
    print_line(false);
  }
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  finished_ = true;
  print_line(true);
}

void Progress::set_detail(std::string detail) {
  std::lock_guard<std::mutex> lock(mutex_);
  detail_ = std::move(detail);
}

double Progress::elapsed_s(Clock::time_point now) const {
  return std::chrono::duration<double>(now - start_).count();
}

void Progress::print_line(bool final_line) {
  const double elapsed = elapsed_s(Clock::now());
  const int64_t done = done_.load(std::memory_order_relaxed);
  std::string out;
  if (tty_) {
    // A line that wraps can't be redrawn with '\r': narrow the bar, then cut the text to fit.
    const size_t columns = static_cast<size_t>(terminal_columns(stream_)) - 1;
    std::string line;
    for (int width = kTerminalBarWidth;; width = std::max(0, width - 10)) {
      line = format_progress(label_, done, total_, elapsed, unit_, width);
      if (!detail_.empty()) line += ", " + detail_;
      if (line.size() <= columns || width == 0) break;
    }
    if (line.size() > columns) line.resize(columns);
    out = "\r" + line;
    if (line.size() < last_line_length_) out += std::string(last_line_length_ - line.size(), ' ');
    last_line_length_ = line.size();
  } else {
    // Log lines: no bar, they are read (and grepped) one by one.
    out = format_progress(label_, done, total_, elapsed, unit_, 0);
    if (!detail_.empty()) out += ", " + detail_;
  }
  if (final_line || !tty_) out += '\n';
  std::fwrite(out.data(), 1, out.size(), stream_);
  std::fflush(stream_);
}

}  // namespace lvrl
