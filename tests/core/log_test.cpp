// Logging: level names, the rank prefix, and rank-0-only helpers.
#include "core/log.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>

#include "core/error.h"

namespace {
TEST(Log, ParsesLevelsAndRejectsOthersByName) {
  EXPECT_EQ(lvrl::log::parse_level("DEBUG"), spdlog::level::debug);
  EXPECT_EQ(lvrl::log::parse_level("warn"), spdlog::level::warn);
  try {
    lvrl::log::parse_level("loud");
    FAIL();
  } catch (const lvrl::InputError& e) {
    EXPECT_EQ(e.value(), "loud");
  }
}

// Captures what the lvrl logger prints, through a sink that uses its formatter.
std::string capture(int rank, const std::function<void()>& body) {
  lvrl::log::init("info", rank);
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  auto logger = spdlog::default_logger();
  auto saved = logger->sinks();
  logger->sinks() = {sink};
  lvrl::log::init("info", rank);  // re-applies the pattern to the new sink
  body();
  logger->flush();
  logger->sinks() = saved;
  return out.str();
}

TEST(Log, RankPrefixAndRankZeroHelpers) {
  std::string rank3 = capture(3, [] {
    LVRL_INFO("every rank {}", 1);
    LVRL_INFO0("only rank zero");
  });
  EXPECT_NE(rank3.find("[rank 3] every rank 1"), std::string::npos) << rank3;
  EXPECT_EQ(rank3.find("only rank zero"), std::string::npos) << rank3;

  std::string rank0 = capture(0, [] { LVRL_INFO0("only rank zero"); });
  EXPECT_NE(rank0.find("[rank 0] only rank zero"), std::string::npos) << rank0;

  std::string quiet = capture(0, [] { LVRL_DEBUG("hidden at info"); });
  EXPECT_EQ(quiet.find("hidden"), std::string::npos) << quiet;
}
}  // namespace
