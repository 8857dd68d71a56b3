#include "core/progress.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"

namespace lvrl {
namespace {

TEST(ProgressFormat, KnownTotal) {
  // 25 of 100 after 5 s: 5 it/s, 75 left → 15 s; a 20-character bar a quarter full.
  EXPECT_EQ(format_progress("preprocess", 25, 100, 5.0, "it", 20),
            "preprocess [#####---------------] 25/100 it (25%), 5.0 it/s, elapsed 0:05, ETA 0:15");
}

TEST(ProgressFormat, NoBarAtWidthZero) {
  EXPECT_EQ(format_progress("eval", 6, 24, 3.0, "video", 0),
            "eval 6/24 video (25%), 2.0 video/s, elapsed 0:03, ETA 0:09");
}

TEST(ProgressFormat, SlowRatesReadAsSecondsPerStepAndHoursShow) {
  // One video an hour: "3600.0 s/video" says more than "0.0 video/s".
  EXPECT_EQ(format_progress("encode", 1, 4, 3600.0, "video", 4),
            "encode [#---] 1/4 video (25%), 3600.0 s/video, elapsed 1:00:00, ETA 3:00:00");
}

TEST(ProgressFormat, UnknownTotalHasNoBarPercentOrEta) {
  std::string line = format_progress("scan", 25, 0, 5.0, "file", 20);
  EXPECT_EQ(line, "scan 25 file, 5.0 file/s, elapsed 0:05");
}

TEST(ProgressFormat, ZeroElapsedHasNoInfinity) {
  for (int64_t total : {0, 100}) {
    std::string line = format_progress("x", 10, total, 0.0, "it", 10);
    SCOPED_TRACE(line);
    EXPECT_NE(line.find("? it/s"), std::string::npos);
    EXPECT_EQ(line.find("inf"), std::string::npos);
    EXPECT_EQ(line.find("nan"), std::string::npos);
    if (total > 0) {
      EXPECT_NE(line.find("ETA ?"), std::string::npos);
    }
  }
  EXPECT_EQ(format_progress("x", 0, 100, 0.0, "it", 4),
            "x [----] 0/100 it (0%), ? it/s, elapsed 0:00, ETA ?");
  // Negative or NaN elapsed (a clock bug elsewhere) reads as zero, not as garbage.
  EXPECT_EQ(format_progress("x", 0, 100, -3.0, "it", 0), format_progress("x", 0, 100, 0.0, "it", 0));
  EXPECT_EQ(format_progress("x", 0, 100, std::nan(""), "it", 0), format_progress("x", 0, 100, 0.0, "it", 0));
}

TEST(ProgressFormat, DoneBeyondTotalIsClamped) {
  EXPECT_EQ(format_progress("x", 150, 100, 10.0, "it", 10),
            "x [##########] 100/100 it (100%), 10.0 it/s, elapsed 0:10, ETA 0:00");
  EXPECT_EQ(format_progress("x", -5, 100, 10.0, "it", 0), "x 0/100 it (0%), ? it/s, elapsed 0:10, ETA ?");
}

TEST(ProgressFormat, PercentAndBarRoundDownUntilDone) {
  std::string line = format_progress("x", 199, 200, 1.0, "it", 10);
  EXPECT_NE(line.find("[#########-]"), std::string::npos) << line;
  EXPECT_NE(line.find("(99%)"), std::string::npos) << line;
}

TEST(ProgressFormat, Durations) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(59.9), "0:59");
  EXPECT_EQ(format_duration(61), "1:01");
  EXPECT_EQ(format_duration(3599), "59:59");
  EXPECT_EQ(format_duration(3600), "1:00:00");
  EXPECT_EQ(format_duration(3661), "1:01:01");
  EXPECT_EQ(format_duration(100 * 3600), "100:00:00");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_duration(1.0 / 0.0), "?");
}

// Everything a Progress wrote to a temporary file.
class ProgressOutput : public ::testing::Test {
 protected:
  void SetUp() override {
    file_ = std::tmpfile();
    ASSERT_NE(file_, nullptr);
  }
  void TearDown() override { std::fclose(file_); }

  std::string written() {
    std::fflush(file_);
    std::rewind(file_);
    std::string out;
    char buffer[4096];
    size_t got;
    while ((got = std::fread(buffer, 1, sizeof(buffer), file_)) > 0) out.append(buffer, got);
    return out;
  }

  std::vector<std::string> lines() {
    std::vector<std::string> out;
    std::istringstream in(written());
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  ProgressOptions options(bool tty, std::optional<double> interval_s) {
    ProgressOptions out;
    out.stream = file_;
    out.tty = tty;
    out.interval_s = interval_s;
    return out;
  }

  std::FILE* file_ = nullptr;
};

TEST_F(ProgressOutput, LogModePrintsPlainFullLines) {
  {
    Progress progress("decode", 5, "video", options(/*tty=*/false, /*interval_s=*/0.0));
    for (int i = 0; i < 5; ++i) progress.advance();
    progress.finish();
  }
  std::string text = written();
  EXPECT_EQ(text.find('\r'), std::string::npos) << text;
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  std::vector<std::string> all = lines();
  // Interval 0: a line per clock check (each of the first advances), plus the final line.
  ASSERT_GE(all.size(), 2u) << text;
  for (const std::string& line : all) {
    EXPECT_EQ(line.rfind("decode ", 0), 0u) << line;
    EXPECT_EQ(line.find('['), std::string::npos) << "no bar in logs: " << line;
  }
  EXPECT_NE(all.back().find("5/5 video (100%)"), std::string::npos) << all.back();
  EXPECT_NE(all.back().find("ETA 0:00"), std::string::npos) << all.back();
}

TEST_F(ProgressOutput, LogModeIntervalLimitsLinesToTheFinalOne) {
  {
    Progress progress("decode", 1000, "it", options(false, 1000.0));
    for (int i = 0; i < 1000; ++i) progress.advance();
  }  // the destructor prints the final line
  std::vector<std::string> all = lines();
  ASSERT_EQ(all.size(), 1u) << written();
  EXPECT_NE(all[0].find("1000/1000 it"), std::string::npos) << all[0];
}

TEST_F(ProgressOutput, FinishPrintsOnceAndDestructorAddsNothing) {
  {
    Progress progress("x", 0, "it", options(false, 1000.0));
    progress.advance(7);
    progress.finish();
    progress.finish();
  }
  std::vector<std::string> all = lines();
  ASSERT_EQ(all.size(), 1u) << written();
  EXPECT_EQ(all[0].rfind("x 7 it, ", 0), 0u) << all[0];
}

TEST_F(ProgressOutput, TerminalModeRedrawsOneLine) {
  {
    Progress progress("train", 3, "step", options(/*tty=*/true, 0.0));
    for (int i = 0; i < 3; ++i) progress.advance();
  }
  std::string text = written();
  EXPECT_NE(text.find('\r'), std::string::npos) << text;
  EXPECT_EQ(text.find('\n'), text.size() - 1) << "only the final draw ends the line: " << text;
  std::string last_draw = text.substr(text.rfind('\r') + 1);
  EXPECT_NE(last_draw.find("3/3 step (100%)"), std::string::npos) << last_draw;
  EXPECT_NE(last_draw.find("[#"), std::string::npos) << "a bar on a terminal: " << last_draw;
}

TEST_F(ProgressOutput, ConcurrentAdvancesAllCount) {
  constexpr int kThreads = 4, kPerThread = 100000;
  {
    Progress progress("x", int64_t{kThreads} * kPerThread, "it", options(false, 0.0));
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < kPerThread; ++i) progress.advance();
      });
    }
    for (std::thread& thread : threads) thread.join();
    EXPECT_EQ(progress.done(), int64_t{kThreads} * kPerThread);
  }
  std::string last = lines().back();
  EXPECT_NE(last.find("400000/400000 it"), std::string::npos) << last;
}

class ProgressInterval : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* old = std::getenv("LVRL_PROGRESS_INTERVAL");
    if (old != nullptr) saved_ = old;
    null_ = std::fopen("/dev/null", "w");  // the final lines of these Progress objects go nowhere
    ASSERT_NE(null_, nullptr);
  }
  void TearDown() override {
    std::fclose(null_);
    if (saved_) {
      ::setenv("LVRL_PROGRESS_INTERVAL", saved_->c_str(), 1);
    } else {
      ::unsetenv("LVRL_PROGRESS_INTERVAL");
    }
  }
  ProgressOptions log_mode() const {
    ProgressOptions out;
    out.stream = null_;
    out.tty = false;
    return out;
  }
  std::optional<std::string> saved_;
  std::FILE* null_ = nullptr;
};

TEST_F(ProgressInterval, DefaultsAndEnvironmentOverride) {
  ::unsetenv("LVRL_PROGRESS_INTERVAL");
  EXPECT_EQ(Progress("x", 1, "it", log_mode()).interval_s(), 10.0);
  ProgressOptions terminal = log_mode();
  terminal.tty = true;
  EXPECT_EQ(Progress("x", 1, "it", terminal).interval_s(), 0.1);

  ::setenv("LVRL_PROGRESS_INTERVAL", "2.5", 1);
  EXPECT_EQ(Progress("x", 1, "it", log_mode()).interval_s(), 2.5);
  // An explicit interval beats the environment.
  ProgressOptions explicit_interval = log_mode();
  explicit_interval.interval_s = 30;
  EXPECT_EQ(Progress("x", 1, "it", explicit_interval).interval_s(), 30.0);
}

TEST_F(ProgressInterval, BadEnvironmentValueIsInputErrorNamingIt) {
  for (const char* bad : {"abc", "-1", "5s", "nan"}) {
    ::setenv("LVRL_PROGRESS_INTERVAL", bad, 1);
    try {
      Progress progress("x", 1, "it", log_mode());
      ADD_FAILURE() << "LVRL_PROGRESS_INTERVAL=" << bad << " was accepted";
    } catch (const InputError& e) {
      EXPECT_EQ(e.key(), "LVRL_PROGRESS_INTERVAL");
      EXPECT_EQ(e.value(), bad);
    }
  }
}

}  // namespace
}  // namespace lvrl
