// RUN/metrics.jsonl: one JSON object per optimizer step, {"step": N, "<metric>": value, ...}, the
// file users plot and tail. A resumed run repeats the steps after its checkpoint, so opening the log
// for a run resumed at step S first drops the lines of steps above S (and a line a crash cut short):
// the file then reads as one uninterrupted run.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace lvrl::trainer {

inline constexpr const char* kMetricsFileName = "metrics.jsonl";

class MetricsLog {
 public:
  // Creates RUN (and the file) when missing. `resumed_step`: the checkpoint's step, 0 for a run
  // that starts afresh (which keeps no earlier line).
  MetricsLog(const std::string& run_dir, int64_t resumed_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // One line, written and fsynced before returning; `metrics` must be an object with an integer "step".
  void append(const nlohmann::json& metrics);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace lvrl::trainer
