// MetricsLog: the JSONL lines, resume truncation, and the TensorBoard event file read back by an
// independent Python reader (tests/trainer/event_reader.py: its own CRC-32C and protobuf decoding).
#include "trainer/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/progress.h"
#include "tests/support/expect_error.h"
#include "tests/support/files.h"
#include "tests/support/run_process.h"
#include "trainer/crc32c.h"
#include "trainer/metric_names.h"

namespace lvrl {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

uint32_t float_bits(double value) {
  const float narrowed = static_cast<float>(value);
  uint32_t bits = 0;
  std::memcpy(&bits, &narrowed, sizeof(bits));
  return bits;
}

// The event file's records as the Python reader decodes them; a test failure if it refuses the file.
std::vector<nlohmann::json> read_events(const std::string& path) {
  test::ProcessOptions options;
  options.separate_stderr = true;
  test::ProcessResult run =
      test::run_process({"python3", test::source_dir() + "/tests/trainer/event_reader.py", path}, options);
  EXPECT_EQ(run.exit_code, 0) << run.error_output;
  std::vector<nlohmann::json> events;
  for (const std::string& line : lines_of(run.output)) events.push_back(nlohmann::json::parse(line));
  return events;
}

TEST(Crc32c, PublishedCheckValues) {
  // The CRC catalogue's check value, and RFC 3720 (iSCSI) appendix B.4's 32-byte vectors.
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0u);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c(std::string(32, '\xFF')), 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(crc32c(ascending), 0x46DD794Eu);
  // Masked: ((0xE3069283 >> 15) | (0xE3069283 << 17)) + 0xA282EAD8, by hand: 0x1C60D + 0x25060000 =
  // 0x2507C60D.
  EXPECT_EQ(masked_crc32c("123456789"), static_cast<uint32_t>(0x2507C60Du + 0xA282EAD8u));
}

TEST(MetricsLog, JsonlLinesHoldWhatWasLogged) {
  TempDir run("metrics");
  const double before = static_cast<double>(std::time(nullptr));
  {
    MetricsLog log(run.path() + "/run");
    log.log(1, {{metric::kRewardOverall, 0.53125},
                {metric::kPpoKl, 1.2345678901234567e-3},
                {metric::kGradNorm, 0.0}});
    log.log(2,
            {{metric::kRewardOverall, -0.1}, {metric::kGradNorm, std::numeric_limits<double>::quiet_NaN()}});
  }
  const std::vector<std::string> lines = lines_of(test::read_file(run.path() + "/run/metrics.jsonl"));
  ASSERT_EQ(lines.size(), 2u);
  nlohmann::json first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first["step"], 1);
  EXPECT_EQ(first["reward/overall"].get<double>(), 0.53125);
  EXPECT_EQ(first["actor/ppo_kl"].get<double>(), 1.2345678901234567e-3);  // round-trips exactly
  EXPECT_EQ(first["actor/grad_norm"].get<double>(), 0.0);
  EXPECT_GE(first["wall_time"].get<double>(), before);
  EXPECT_LE(first["wall_time"].get<double>(), before + 60);
  EXPECT_EQ(first.size(), 5u);
  EXPECT_EQ(lines[0].rfind("{\"step\":1,", 0), 0u) << "step leads the line: " << lines[0];
  nlohmann::json second = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(second["step"], 2);
  EXPECT_EQ(second["reward/overall"].get<double>(), -0.1);
  EXPECT_TRUE(second["actor/grad_norm"].is_null());  // JSON has no NaN

  const std::vector<MetricsRow> rows = read_metrics_jsonl(run.path() + "/run/metrics.jsonl");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].step, 1);
  EXPECT_EQ(rows[0].scalars.at("reward/overall"), 0.53125);
  EXPECT_EQ(rows[1].scalars.count("actor/grad_norm"), 0u);  // the null reads back as absent
}

TEST(MetricsLog, AppendsAcrossReopens) {
  TempDir run("metrics");
  { MetricsLog(run.path()).log(1, {{"reward/overall", 1}}); }
  { MetricsLog(run.path()).log(2, {{"reward/overall", 2}}); }
  const std::vector<MetricsRow> rows = read_metrics_jsonl(run.file("metrics.jsonl"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].step, 2);
}

TEST(MetricsLog, TruncateAfterDropsLaterStepsAndATornLine) {
  TempDir run("metrics");
  {
    MetricsLog log(run.path());
    for (int step = 1; step <= 5; ++step) log.log(step, {{"reward/overall", step * 0.25}});
  }
  // A crash in the middle of step 6's line.
  const std::string path = run.file("metrics.jsonl");
  test::write_file(path, test::read_file(path) + "{\"step\":6,\"rew");

  MetricsLog log(run.path());
  EXPECT_EQ(log.truncate_after(3), 3);  // steps 4, 5 and the torn line
  log.log(4, {{"reward/overall", 9.0}});
  const std::vector<MetricsRow> rows = read_metrics_jsonl(path);
  ASSERT_EQ(rows.size(), 4u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(rows[i].step, i + 1);
    EXPECT_EQ(rows[i].scalars.at("reward/overall"), (i + 1) * 0.25);
  }
  EXPECT_EQ(rows[3].step, 4);
  EXPECT_EQ(rows[3].scalars.at("reward/overall"), 9.0);

  // The new event file tells TensorBoard that step 4 restarts: SessionLog START (1) at step 4.
  std::vector<nlohmann::json> events = read_events(log.event_file_path());
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[1]["session_status"], 1);
  EXPECT_EQ(events[1]["step"], 4);
  EXPECT_EQ(events[2]["step"], 4);
}

TEST(MetricsLog, EventFileReadsBackWithAnIndependentReader) {
  TempDir run("metrics");
  const std::vector<std::map<std::string, double>> steps = {
      {{metric::kRewardOverall, 0.5}, {metric::kRewardAccuracy, 0.0}, {metric::kLearningRate, 1e-6}},
      {{metric::kRewardOverall, -1.75}, {metric::kGradNorm, 3.14159265358979}, {metric::kTimePerStep, 41.2}},
      {{metric::kStaleRecordsDropped, 1e12}, {metric::kPpoKl, std::numeric_limits<double>::quiet_NaN()}},
  };
  const std::vector<int64_t> step_numbers = {0, 1, 300};  // 0: proto3 leaves the field out
  std::string event_path;
  {
    MetricsLog log(run.path());
    for (size_t i = 0; i < steps.size(); ++i) log.log(step_numbers[i], steps[i]);
    event_path = log.event_file_path();
  }
  EXPECT_EQ(event_path.rfind(run.path() + "/tb/events.out.tfevents.", 0), 0u) << event_path;
  const std::vector<MetricsRow> rows = read_metrics_jsonl(run.file("metrics.jsonl"));
  const std::vector<std::string> lines = lines_of(test::read_file(run.file("metrics.jsonl")));

  std::vector<nlohmann::json> events = read_events(event_path);
  ASSERT_EQ(events.size(), steps.size() + 1);
  EXPECT_EQ(events[0]["file_version"], "brain.Event:2");
  for (size_t i = 0; i < steps.size(); ++i) {
    nlohmann::json& event = events[i + 1];
    EXPECT_EQ(event["step"], step_numbers[i]);
    // The same wall time as the JSONL line (both exact doubles).
    EXPECT_EQ(event["wall_time"].get<double>(), nlohmann::json::parse(lines[i])["wall_time"].get<double>());
    ASSERT_EQ(event["values"].size(), steps[i].size());
    size_t k = 0;
    for (const auto& [tag, value] : steps[i]) {  // std::map order = the writer's order
      EXPECT_EQ(event["values"][k]["tag"], tag);
      EXPECT_EQ(event["values"][k]["bits"].get<uint32_t>(), float_bits(value)) << tag << " = " << value;
      ++k;
    }
  }
}

TEST(MetricsLog, IndependentReaderRejectsACorruptedByte) {
  // The check above is only worth something if the reader really checks: flip one byte of a value.
  TempDir run("metrics");
  std::string event_path;
  {
    MetricsLog log(run.path());
    log.log(7, {{"reward/overall", 0.25}});
    event_path = log.event_file_path();
  }
  std::string bytes = test::read_file(event_path);
  bytes[bytes.size() - 6] ^= 0x01;
  test::write_file(run.file("corrupt.tfevents"), bytes);
  test::ProcessResult result = test::run_process(
      {"python3", test::source_dir() + "/tests/trainer/event_reader.py", run.file("corrupt.tfevents")});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("bad data crc"), std::string::npos) << result.output;
}

TEST(MetricsLog, ReadRefusesBadLinesButSkipsALineBeingWritten) {
  TempDir run("metrics");
  test::write_file(run.file("a.jsonl"), "{\"step\":1,\"x\":2}\n[1,2]\n");
  InputError error = test::expect_input_error([&] { read_metrics_jsonl(run.file("a.jsonl")); });
  EXPECT_EQ(error.file(), run.file("a.jsonl"));
  EXPECT_EQ(error.line(), 2);
  test::write_file(run.file("b.jsonl"), "{\"step\":1,\"x\":2}\n{\"x\":3}\n");
  EXPECT_EQ(test::expect_input_error([&] { read_metrics_jsonl(run.file("b.jsonl")); }).key(), "step");
  test::write_file(run.file("c.jsonl"), "{\"step\":1,\"x\":2}\n{\"step\":2,\"x");
  EXPECT_EQ(read_metrics_jsonl(run.file("c.jsonl")).size(), 1u);
  test::expect_input_error([&] { read_metrics_jsonl(run.file("missing.jsonl")); });
}

TEST(StepProgress, SummaryShowsTheKnownScalars) {
  // No value sits on a rounding tie.
  EXPECT_EQ(format_step_summary({{metric::kRewardOverall, 0.5312},
                                 {metric::kRewardAccuracy, 0.5},
                                 {metric::kPpoKl, 0.00123},
                                 {metric::kResponseLengthMean, 311.6},
                                 {metric::kTimePerStep, 41.26},
                                 {metric::kGradNorm, 9.0}}),
            "reward 0.531, acc 0.500, kl 1.2e-03, len 312, step 41.3 s");
  EXPECT_EQ(format_step_summary({{metric::kGradNorm, 9.0}}), "");
}

TEST(StepProgress, ProgressLinesCarryTheDetail) {
  std::FILE* stream = std::tmpfile();
  ASSERT_NE(stream, nullptr);
  {
    ProgressOptions options;
    options.stream = stream;
    options.tty = false;
    options.interval_s = 0;
    Progress progress("train", 10, "step", options);
    progress.set_detail("reward 0.500");
    progress.advance();
    progress.finish();
  }
  std::rewind(stream);
  std::string text;
  for (int c; (c = std::fgetc(stream)) != EOF;) text.push_back(static_cast<char>(c));
  std::fclose(stream);
  const std::vector<std::string> lines = lines_of(text);
  ASSERT_FALSE(lines.empty());
  for (const std::string& line : lines) {
    EXPECT_EQ(line.rfind("train 1/10 step (10%)", 0), 0u) << line;
    const std::string tail = ", reward 0.500";
    ASSERT_GE(line.size(), tail.size());
    EXPECT_EQ(line.substr(line.size() - tail.size()), tail) << line;
  }
}

}  // namespace
}  // namespace lvrl
