// `lvrl plot RUN_DIR [--out DIR]`: PNG curves of a run's metrics.jsonl, for a quick look without
// TensorBoard (a remote box, a report, a bug). gnuplot draws them (pngcairo): one process, one script,
// one data file per chart, all in a private temporary directory.
//
// Seven charts, always all seven files, so that a report or dashboard can link them blindly: a chart
// whose metrics are all absent from the log (a run without KL, a log from before a metric existed)
// is drawn as a blank panel that says which names are missing, and the command says so on stderr. A
// chart with some of its metrics present draws those.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/command.h"
#include "core/error.h"
#include "core/process.h"
#include "core/temp_dir.h"
#include "trainer/metric_names.h"
#include "trainer/metrics.h"

namespace lvrl {
namespace {

struct Chart {
  const char* file;
  const char* title;
  const char* y_label;
  std::vector<const char*> metrics;
};

const std::vector<Chart>& charts() {
  static const std::vector<Chart> kCharts = {
      {"reward.png", "Reward", "reward", {metric::kRewardOverall, metric::kRewardFormat}},
      {"accuracy.png", "Accuracy reward", "accuracy", {metric::kRewardAccuracy}},
      {"kl.png", "KL to the reference", "KL", {metric::kPpoKl, metric::kKlLoss}},
      {"entropy.png", "Entropy", "entropy", {metric::kEntropyLoss}},
      {"response_length.png",
       "Response length",
       "tokens",
       {metric::kResponseLengthMean, metric::kResponseLengthMax, metric::kResponseLengthMin}},
      {"step_time.png",
       "Step time split",
       "seconds",
       {metric::kTimePerStep, metric::kTimingGeneration, metric::kTimingOldLogProbs,
        metric::kTimingReferenceLogProbs, metric::kTimingAdvantages, metric::kTimingUpdateActor,
        metric::kWaitRollouts, metric::kForwardBackward, metric::kOptimizer, metric::kPublishWeights}},
      {"grad_norm.png", "Gradient norm (before clipping)", "grad norm", {metric::kGradNorm}},
  };
  return kCharts;
}

// A gnuplot single-quoted string: inside one, '' is a quote and nothing else is special.
std::string quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// The chart's data: "step value value ..." a row, NaN where a step lacks a metric.
void write_chart_data(const std::string& path, const std::vector<MetricsRow>& rows,
                      const std::vector<std::string>& metrics) {
  std::ofstream out(path);
  for (const MetricsRow& row : rows) {
    out << row.step;
    for (const std::string& name : metrics) {
      auto found = row.scalars.find(name);
      if (found == row.scalars.end()) {
        out << " NaN";
      } else {
        out << fmt::format(" {:.17g}", found->second);
      }
    }
    out << '\n';
  }
  if (!out) throw InputError({path, 0, "", ""}, "cannot write gnuplot's data file");
}

std::string chart_script(const Chart& chart, const std::string& png_path, const std::string& data_path,
                         const std::vector<std::string>& present, const std::string& missing_note) {
  std::string script = "reset\n";
  script += "set datafile missing 'NaN'\nset grid\nset key below\nset xlabel 'step'\n";
  script += fmt::format("set output {}\nset title {}\n", quoted(png_path), quoted(chart.title));
  if (present.empty()) {
    // A blank panel with the reason in the middle: nothing to plot, so plot a point off the range.
    script += "unset border\nunset xtics\nunset ytics\nunset xlabel\nunset key\n";
    script += "set xrange [0:1]\nset yrange [0:1]\n";
    script += fmt::format("set label 1 {} at 0.5,0.5 center\n", quoted(missing_note));
    script += "plot 2 notitle\n";
  } else {
    script += fmt::format("set ylabel {}\nset offsets 0, 0, graph 0.05, graph 0.05\n", quoted(chart.y_label));
    std::string plot = "plot ";
    for (size_t i = 0; i < present.size(); ++i) {
      if (i > 0) plot += ", ";
      plot += fmt::format("{} using 1:{} with linespoints pointsize 0.5 title {}", quoted(data_path), i + 2,
                          quoted(present[i]));
    }
    script += plot + "\n";
  }
  script += "unset output\n";
  return script;
}

// Runs `gnuplot SCRIPT`; its stderr goes to a file that becomes the error message when it fails.
void run_gnuplot(const std::string& script_path, const TempDir& work) {
  const std::string errors_path = work.file("gnuplot.stderr");
  const int errors_fd = ::open(errors_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (errors_fd < 0) throw InputError({errors_path, 0, "", ""}, std::strerror(errno));
  SpawnOptions options;
  options.stdout_fd = errors_fd;
  options.stderr_fd = errors_fd;
  const pid_t pid = spawn_process({"gnuplot", script_path}, options);
  ::close(errors_fd);
  if (pid < 0) {
    throw InputError({"", 0, "gnuplot", ""},
                     fmt::format("cannot run gnuplot ({}); install it (Debian: apt-get install gnuplot-nox)",
                                 std::strerror(-pid)));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    LVRL_ASSERT(errno == EINTR, std::string("waitpid(gnuplot): ") + std::strerror(errno));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::ifstream errors(errors_path);
    std::string text((std::istreambuf_iterator<char>(errors)), std::istreambuf_iterator<char>());
    throw Error(fmt::format("gnuplot failed (status {}):\n{}", status, text));
  }
}

int run_plot(const std::string& run_dir, std::string out_dir) {
  const std::vector<MetricsRow> rows = read_metrics_jsonl(run_dir + "/metrics.jsonl");
  if (out_dir.empty()) out_dir = run_dir + "/plots";
  std::error_code error;
  std::filesystem::create_directories(out_dir, error);
  if (error)
    throw InputError({out_dir, 0, "--out", out_dir}, "cannot create the directory: " + error.message());

  std::set<std::string> logged;
  for (const MetricsRow& row : rows) {
    for (const auto& entry : row.scalars) logged.insert(entry.first);
  }

  TempDir work("lvrl-plot");
  std::string script = "set terminal pngcairo size 960,540 noenhanced font 'sans,10'\n";
  std::vector<std::string> written;
  for (size_t index = 0; index < charts().size(); ++index) {
    const Chart& chart = charts()[index];
    std::vector<std::string> present, missing;
    for (const char* name : chart.metrics) (logged.count(name) ? present : missing).emplace_back(name);
    std::string missing_note;
    if (present.empty()) {
      std::string names;
      for (const std::string& name : missing) names += (names.empty() ? "" : ", ") + name;
      missing_note = rows.empty() ? "metrics.jsonl has no steps yet" : "not in metrics.jsonl: " + names;
      std::cerr << fmt::format("lvrl plot: {}: {} (drawn as an empty panel)\n", chart.file, missing_note);
    }
    const std::string data_path = work.file(fmt::format("chart{}.dat", index));
    write_chart_data(data_path, rows, present);
    const std::string png_path = out_dir + "/" + chart.file;
    script += chart_script(chart, png_path, data_path, present, missing_note);
    written.push_back(png_path);
  }
  const std::string script_path = work.file("plots.gp");
  {
    std::ofstream out(script_path);
    out << script;
    if (!out) throw InputError({script_path, 0, "", ""}, "cannot write the gnuplot script");
  }
  run_gnuplot(script_path, work);
  for (const std::string& path : written) std::cout << path << '\n';
  return 0;
}

const RegisterCommand plot_command(
    "plot", "Draw a run's metrics (reward, accuracy, KL, entropy, length, step time, grad norm) as PNGs",
    [](CLI::App& app) {
      auto run_dir = std::make_shared<std::string>();
      auto out_dir = std::make_shared<std::string>();
      app.add_option("RUN_DIR", *run_dir, "the run directory (holds metrics.jsonl)")->required();
      app.add_option("--out", *out_dir, "where the PNGs go (default RUN_DIR/plots)");
      return [run_dir, out_dir] { return run_plot(*run_dir, *out_dir); };
    });

}  // namespace
}  // namespace lvrl
