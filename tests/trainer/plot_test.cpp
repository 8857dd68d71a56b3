// `lvrl plot`: seven PNGs from a run directory's metrics.jsonl, written by hand here (not by
// MetricsLog), each checked as a PNG by walking its chunks: the signature, IHDR first with a width
// and height > 0, and an IEND chunk that ends the file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/files.h"
#include "tests/support/run_process.h"
#include "tests/trainer/png_check.h"

namespace lvrl {
namespace {

using testing_trainer::check_png;
using testing_trainer::kPngNames;
using testing_trainer::PngSize;

// 20 steps of every charted metric, the curves a real run draws (rising reward, falling length).
std::string synthetic_log() {
  std::string text;
  for (int step = 1; step <= 20; ++step) {
    const double t = step / 20.0;
    text += "{\"step\":" + std::to_string(step) + ",\"wall_time\":" + std::to_string(1.7e9 + 40 * step);
    auto add = [&](const char* name, double value) {
      text += ",\"" + std::string(name) + "\":" + std::to_string(value);
    };
    add("reward/overall", 0.2 + 0.6 * t);
    add("reward/accuracy", 0.1 + 0.7 * t);
    add("reward/format", 0.9 + 0.1 * t);
    add("actor/ppo_kl", 1e-3 * t);
    add("actor/kl_loss", 2e-3 * t);
    add("actor/entropy_loss", 1.5 - t);
    add("response_length/mean", 400 - 100 * t);
    add("response_length/max", 1024);
    add("response_length/min", 12);
    add("actor/grad_norm", 1 + std::sin(step));
    add("perf/time_per_step", 40);
    add("timing_s/gen", 25);
    add("timing_s/old", 3);
    add("timing_s/ref", 3);
    add("timing_s/adv", 0.1);
    add("timing_s/update_actor", 8.9);
    text += "}\n";
  }
  return text;
}

TEST(PlotCommand, WritesSevenValidPngs) {
  TempDir dir("plot");
  const std::string run = dir.file("run"), out = dir.file("out");
  std::filesystem::create_directories(run);
  test::write_file(run + "/metrics.jsonl", synthetic_log());
  test::ProcessResult result = test::run_lvrl({"plot", run, "--out", out});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const std::string& name : kPngNames) {
    const PngSize size = check_png(out + "/" + name);
    EXPECT_EQ(size.width, 960u) << name;  // the terminal size the command asks gnuplot for
    EXPECT_EQ(size.height, 540u) << name;
    EXPECT_NE(result.output.find(out + "/" + name), std::string::npos) << result.output;
  }
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(out), std::filesystem::directory_iterator()),
            static_cast<long>(kPngNames.size()));
}

TEST(PlotCommand, AbsentMetricsGiveAnEmptyPanelAndAMessage) {
  TempDir dir("plot");
  // Only rewards, with a null (a NaN the trainer logged) in the middle; plots go to RUN/plots.
  test::write_file(dir.file("metrics.jsonl"),
                   "{\"step\":1,\"reward/overall\":0.1}\n{\"step\":2,\"reward/overall\":null}\n"
                   "{\"step\":3,\"reward/overall\":0.3,\"reward/accuracy\":0.5}\n");
  test::ProcessOptions options;
  options.separate_stderr = true;
  test::ProcessResult result = test::run_lvrl({"plot", dir.path()}, options);
  ASSERT_EQ(result.exit_code, 0) << result.output << result.error_output;
  for (const std::string& name : kPngNames) check_png(dir.file("plots/" + name));
  EXPECT_NE(result.error_output.find("kl.png: not in metrics.jsonl: actor/ppo_kl, actor/kl_loss"),
            std::string::npos)
      << result.error_output;
  EXPECT_EQ(result.error_output.find("reward.png"), std::string::npos) << result.error_output;
  EXPECT_EQ(result.error_output.find("accuracy.png"), std::string::npos) << result.error_output;
}

TEST(PlotCommand, EmptyLogStillDrawsEveryPanel) {
  TempDir dir("plot");
  test::write_file(dir.file("metrics.jsonl"), "");
  test::ProcessResult result = test::run_lvrl({"plot", dir.path(), "--out", dir.file("png")});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const std::string& name : kPngNames) check_png(dir.file("png/" + name));
  EXPECT_NE(result.output.find("no steps yet"), std::string::npos) << result.output;
}

TEST(PlotCommand, MissingLogIsBadInput) {
  TempDir dir("plot");
  test::ProcessResult result = test::run_lvrl({"plot", dir.path()});
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find(dir.file("metrics.jsonl")), std::string::npos) << result.output;
}

}  // namespace
}  // namespace lvrl
