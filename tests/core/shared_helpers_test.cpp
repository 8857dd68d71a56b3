// The small helpers every library shares: byte counts for people (one format for cache ls/stats,
// model info and sp plan), --dtype names, and the clocks. References: a hand-computed table, and
// the C library's time().
#include <gtest/gtest.h>

#include <ctime>
#include <thread>

#include "core/clock.h"
#include "core/dtype_name.h"
#include "core/error.h"
#include "core/human_bytes.h"

namespace {
using lvrl::InputError;

TEST(HumanBytes, WholeBytesThenOneDecimalInBinaryUnits) {
  const std::pair<double, const char*> table[] = {
      {0, "0 B"},
      {48, "48 B"},
      {1023, "1023 B"},
      {1024, "1.0 KiB"},
      {1536, "1.5 KiB"},
      {10 * 1048576.0 - 1, "10.0 MiB"},  // 9.99999905 MiB rounds up
      {72.0 * (1 << 30), "72.0 GiB"},
      {3.0 * (1ull << 40), "3.0 TiB"},
      {2048.0 * (1ull << 50), "2048.0 PiB"},  // no unit above PiB
      {-2.0 * (1 << 20), "-2.0 MiB"},
  };
  for (const auto& [bytes, text] : table) EXPECT_EQ(lvrl::human_bytes(bytes), text) << bytes;
}

TEST(DtypeName, ParsesOnlyTheAllowedNamesAndSaysWhichTheyAre) {
  EXPECT_EQ(lvrl::parse_float_dtype("bfloat16", {at::kFloat, at::kBFloat16}, {}), at::kBFloat16);
  EXPECT_EQ(lvrl::parse_float_dtype("float64", {at::kDouble}, {}), at::kDouble);
  try {
    lvrl::parse_float_dtype("float64", {at::kFloat, at::kBFloat16, at::kHalf}, {"", 0, "--dtype", ""});
    FAIL() << "float64 is not allowed here";
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), "--dtype");
    EXPECT_EQ(e.value(), "float64");
    EXPECT_EQ(e.problem(), "expected float32, bfloat16 or float16");
  }
  EXPECT_STREQ(lvrl::float_dtype_name(at::kHalf), "float16");
  EXPECT_EQ(lvrl::float_dtype_name(at::kLong), nullptr);
}

TEST(Clock, SecondsSinceAndUnixMilliseconds) {
  const auto start = lvrl::SteadyClock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const double elapsed = lvrl::seconds_since(start);
  EXPECT_GE(elapsed, 0.020);
  EXPECT_LT(elapsed, 5.0);
  const int64_t before = static_cast<int64_t>(std::time(nullptr)) * 1000;
  const int64_t now = lvrl::now_unix_ms();
  const int64_t after = (static_cast<int64_t>(std::time(nullptr)) + 1) * 1000;
  EXPECT_GE(now, before);
  EXPECT_LT(now, after);
}
}  // namespace
