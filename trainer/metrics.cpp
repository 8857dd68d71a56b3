#include "trainer/metrics.h"

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "trainer/event_file_writer.h"
#include "trainer/metric_names.h"

namespace lvrl {
namespace {

double unix_seconds_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The step of one JSONL line, or nothing when the line is not a JSON object with an integer "step".
std::optional<int64_t> step_of_line(const std::string& line) {
  nlohmann::json value = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!value.is_object()) return std::nullopt;
  auto step = value.find(metric::kStepKey);
  if (step == value.end() || !step->is_number_integer()) return std::nullopt;
  return step->get<int64_t>();
}

}  // namespace

MetricsLog::MetricsLog(const std::string& run_dir) : jsonl_path_(run_dir + "/metrics.jsonl") {
  std::error_code error;
  std::filesystem::create_directories(run_dir, error);
  if (error)
    throw InputError({run_dir, 0, "run.dir", run_dir}, "cannot create the run directory: " + error.message());
  open_jsonl();
  events_ = std::make_unique<EventFileWriter>(run_dir + "/tb");
}

MetricsLog::~MetricsLog() {
  if (jsonl_ != nullptr) std::fclose(jsonl_);
}

const std::string& MetricsLog::event_file_path() const {
  return events_->path();
}

void MetricsLog::open_jsonl() {
  jsonl_ = std::fopen(jsonl_path_.c_str(), "ab");
  if (jsonl_ == nullptr) {
    throw InputError({jsonl_path_, 0, "", ""},
                     std::string("cannot open the metrics log: ") + std::strerror(errno));
  }
  // A crash mid-line leaves a line without its '\n': end it, so that the next line stays whole (the
  // torn one is then a bad line that truncate_after drops).
  std::error_code error;
  const auto size = std::filesystem::file_size(jsonl_path_, error);
  if (!error && size > 0) {
    std::ifstream last(jsonl_path_, std::ios::binary);
    last.seekg(static_cast<std::streamoff>(size) - 1);
    if (last.get() != '\n') std::fputc('\n', jsonl_);
  }
}

void MetricsLog::log(int64_t step, const std::map<std::string, double>& scalars) {
  const double wall_time = unix_seconds_now();
  // ordered_json: "step" and "wall_time" lead every line, the scalars follow by name.
  nlohmann::ordered_json line;
  line[metric::kStepKey] = step;
  line[metric::kWallTimeKey] = wall_time;
  for (const auto& [name, value] : scalars) {
    LVRL_ASSERT(name != metric::kStepKey && name != metric::kWallTimeKey,
                "metric name '" + name + "' is reserved for the line's own fields");
    // nlohmann writes NaN and infinities as null; say so explicitly rather than rely on it.
    if (std::isfinite(value)) {
      line[name] = value;
    } else {
      line[name] = nullptr;
    }
  }
  const std::string text = line.dump() + "\n";
  if (std::fwrite(text.data(), 1, text.size(), jsonl_) != text.size() || std::fflush(jsonl_) != 0) {
    throw InputError({jsonl_path_, 0, "", ""},
                     std::string("cannot write the metrics log: ") + std::strerror(errno));
  }
  events_->write_scalars(step, scalars, wall_time);
}

int64_t truncate_jsonl_after(const std::string& path, int64_t step) {
  if (!std::filesystem::exists(path)) return 0;
  std::ifstream in(path, std::ios::binary);
  std::string kept, line;
  int64_t dropped = 0;
  while (std::getline(in, line)) {
    std::optional<int64_t> line_step = step_of_line(line);
    if (line_step && *line_step <= step) {
      kept += line + "\n";
    } else {
      ++dropped;
    }
  }
  in.close();
  // Write beside, then rename: a crash leaves either the old file or the new one, never half.
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << kept;
    out.flush();
    if (!out) throw InputError({temporary, 0, "", ""}, "cannot write the truncated log");
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) throw InputError({path, 0, "", ""}, "cannot replace the log: " + error.message());
  return dropped;
}

int64_t MetricsLog::truncate_after(int64_t step) {
  std::fclose(jsonl_);
  jsonl_ = nullptr;
  const int64_t dropped = truncate_jsonl_after(jsonl_path_, step);
  open_jsonl();
  events_->write_restart(step + 1, unix_seconds_now());
  return dropped;
}

std::vector<MetricsRow> read_metrics_jsonl(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError({path, 0, "", ""}, "cannot read the metrics log (is this a run directory?)");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();

  std::vector<MetricsRow> rows;
  size_t start = 0;
  for (int line_number = 1; start < text.size(); ++line_number) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) break;  // a line still being written
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json value = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!value.is_object())
      throw InputError({path, line_number, "", ""}, "expected one JSON object per line");
    auto step = value.find(metric::kStepKey);
    if (step == value.end() || !step->is_number_integer()) {
      throw InputError({path, line_number, metric::kStepKey, ""},
                       "expected an integer \"step\" on every line");
    }
    MetricsRow row;
    row.step = step->get<int64_t>();
    for (const auto& [name, field] : value.items()) {
      if (name == metric::kStepKey || !field.is_number()) continue;
      row.scalars[name] = field.get<double>();
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string format_step_summary(const std::map<std::string, double>& scalars) {
  struct Shown {
    const char* name;
    const char* label;
    const char* format;
  };
  static const Shown kShown[] = {
      {metric::kRewardOverall, "reward", "{} {:.3f}"},
      {metric::kRewardAccuracy, "acc", "{} {:.3f}"},
      {metric::kPpoKl, "kl", "{} {:.1e}"},
      {metric::kEntropyLoss, "entropy", "{} {:.3f}"},
      {metric::kResponseLengthMean, "len", "{} {:.0f}"},
      {metric::kTimePerStep, "step", "{} {:.1f} s"},
  };
  std::string out;
  for (const Shown& shown : kShown) {
    auto found = scalars.find(shown.name);
    if (found == scalars.end()) continue;
    if (!out.empty()) out += ", ";
    out += fmt::format(fmt::runtime(shown.format), shown.label, found->second);
  }
  return out;
}

}  // namespace lvrl
