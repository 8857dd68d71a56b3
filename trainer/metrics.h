// The per-step record of a run, in two forms from one call:
//  - RUN/metrics.jsonl: one JSON object a line, {"step": N, "wall_time": unix s, "<name>": value, ...},
//    flushed per line — `tail -f`, jq and pandas read it, and `lvrl plot` draws from it;
//  - RUN/tb/events.out.tfevents.*: the same scalars for `tensorboard --logdir RUN`.
// Names are trainer/metric_names.h. Only one process (rank 0) writes a run's metrics.
//
// JSON has no NaN or infinity: such a value is written as null in the JSONL (and read back as
// absent), while TensorBoard gets the float as is.
//
// Resume: the log may hold steps past the checkpoint the run resumes from (they were trained, then
// lost). truncate_after(step) drops them from the JSONL, and marks the event file so that TensorBoard
// drops them from the older event files too.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lvrl {

class EventFileWriter;

class MetricsLog {
 public:
  // Opens RUN/metrics.jsonl for appending (creating RUN and the file) and starts a new event file
  // in RUN/tb/. An InputError naming the path when either cannot be written.
  explicit MetricsLog(const std::string& run_dir);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Appends the line for `step`. A name that is "step" or "wall_time" is a bug.
  void log(int64_t step, const std::map<std::string, double>& scalars);

  // Keeps the JSONL lines whose step is <= `step` (and drops any line that is not a whole JSON object,
  // e.g. one torn by a crash), rewriting the file atomically; TensorBoard is told that steps after
  // `step` restart here. Returns how many lines were dropped.
  int64_t truncate_after(int64_t step);

  const std::string& jsonl_path() const { return jsonl_path_; }
  const std::string& event_file_path() const;

 private:
  void open_jsonl();

  std::string jsonl_path_;
  std::FILE* jsonl_ = nullptr;
  std::unique_ptr<EventFileWriter> events_;
};

// Rewrites a JSONL file whose lines carry an integer "step" keeping the lines of steps <= `step`
// (dropping any other line, e.g. one a crash cut short), atomically (temp file + rename). Returns how
// many lines were dropped. A missing file is left missing.
int64_t truncate_jsonl_after(const std::string& path, int64_t step);

struct MetricsRow {
  int64_t step = 0;
  std::map<std::string, double> scalars;  // without "step"; nulls (non-finite values) left out
};

// Every line of a metrics.jsonl, in file order. An InputError naming the file and line for a line
// that is not a JSON object with an integer "step", except a last line without its '\n' (a writer
// mid-line), which is skipped. A missing file is an InputError too.
std::vector<MetricsRow> read_metrics_jsonl(const std::string& path);

// The short text a progress line carries for a step: "reward 0.531, acc 0.500, kl 1.2e-03, len 312,
// step 41.3 s" — whichever of those the scalars hold (Progress::set_detail, core/progress.h).
std::string format_step_summary(const std::map<std::string, double>& scalars);

}  // namespace lvrl
