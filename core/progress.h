// Progress bars for long loops (preprocessing thousands of videos, evaluating a benchmark).
//
// On a terminal one line is redrawn in place ('\r') at most every 100 ms. Anywhere else (CI, log
// files, `lvrl launch` collecting a child's stderr) '\r' redraws turn into one enormous line, so
// there it prints plain full lines, at most one every 10 s ($LVRL_PROGRESS_INTERVAL overrides), and
// always a final line.
//
//   Progress progress("preprocess", videos.size(), "video");
//   for (...) { ...; progress.advance(); }   // thread-safe; cheap enough for hot loops
//   progress.finish();                       // or let the destructor print the final line
//
// A loop with more to say than its rate (the trainer's reward, KL, seconds per step) sets a detail
// text that every later line carries after the standard part: progress.set_detail("reward 0.53").
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>

namespace lvrl {

struct ProgressOptions {
  std::FILE* stream = stderr;
  // Redraw in place? Unset: whether `stream` is a terminal.
  std::optional<bool> tty;
  // Seconds between printed lines. Unset: 0.1 on a terminal; elsewhere $LVRL_PROGRESS_INTERVAL,
  // else 10. 0 prints on every clock check (tests).
  std::optional<double> interval_s;
};

class Progress {
 public:
  // `total` 0 = unknown (no bar, no ETA). `unit` names one step in the rate ("video/s").
  Progress(std::string label, int64_t total, std::string unit = "it", ProgressOptions options = {});
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress();

  // Thread-safe. Costs one relaxed atomic add; the clock is read only when the count crosses a
  // stride (a power of two) that adapts so that checks come about every 2 µs of work: every step
  // for steps slower than that, every few hundred steps for the tightest loops.
  void advance(int64_t n = 1);

  // Prints the final line (ending in '\n'); later calls do nothing. Thread-safe.
  void finish();

  // Text appended (after ", ") to every line printed from now on; "" for none. Thread-safe.
  void set_detail(std::string detail);

  int64_t done() const { return done_.load(std::memory_order_relaxed); }
  int64_t total() const { return total_; }
  bool tty() const { return tty_; }
  double interval_s() const { return interval_s_; }

 private:
  using Clock = std::chrono::steady_clock;
  void check_clock();
  void print_line(bool final_line);  // needs mutex_
  double elapsed_s(Clock::time_point now) const;

  const std::string label_;
  const int64_t total_;
  const std::string unit_;
  std::FILE* const stream_;
  const bool tty_;
  const double interval_s_;
  const Clock::time_point start_;

  std::atomic<int64_t> done_{0};
  // The clock is checked when `done` crosses a multiple of 2^check_shift_.
  std::atomic<int> check_shift_{0};

  std::mutex mutex_;  // guards everything below and the writes to stream_
  Clock::time_point last_check_;
  Clock::time_point last_print_;
  std::string detail_;
  size_t last_line_length_ = 0;  // terminal only: to blank what a shorter redraw leaves behind
  bool finished_ = false;
};

// One progress line, without '\r' or '\n':
//   known total:   "label [#####---------------] 25/100 it (25%), 5.0 it/s, elapsed 0:05, ETA 0:15"
//   unknown total: "label 25 it, 5.0 it/s, elapsed 0:05"
// `width` = bar characters (0 = no bar). `done` is clamped to [0, total]. Under 1 step per second the
// rate reads "2.5 s/it"; with nothing done or no time elapsed it reads "? it/s" and the ETA "?".
// Times are M:SS, or H:MM:SS from one hour.
std::string format_progress(const std::string& label, int64_t done, int64_t total, double elapsed_s,
                            const std::string& unit, int width);

// Seconds as M:SS or H:MM:SS (rounded down to whole seconds; negative or non-finite → "?").
std::string format_duration(double seconds);

}  // namespace lvrl
