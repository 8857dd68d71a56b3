// Errors: input errors name file, line, key and value; library failures name statement and location.
#include "core/error.h"

#include <gtest/gtest.h>

#include <chrono>
#include <torch/csrc/distributed/c10d/FileStore.hpp>

#include "core/temp_dir.h"

namespace {
TEST(Error, InputErrorNamesEverythingGiven) {
  lvrl::InputError e({"data.jsonl", 7, "video", "../x.mp4"}, "escapes data.video_dir");
  EXPECT_STREQ(e.what(), "data.jsonl:7: 'video' = '../x.mp4': escapes data.video_dir");
  EXPECT_EQ(e.file(), "data.jsonl");
  EXPECT_EQ(e.line(), 7);
  EXPECT_EQ(e.key(), "video");
  EXPECT_EQ(e.value(), "../x.mp4");
  EXPECT_STREQ(lvrl::InputError({"", 0, "", ""}, "plain").what(), "plain");
  EXPECT_STREQ(lvrl::InputError({"f", 0, "", "v"}, "p").what(), "f: 'v': p");
}

int fails_with(int code) {
  return code;
}

TEST(Error, GeneratorReportsStatementFunctionLocationAndText) {
  int line = __LINE__ + 2;
  try {
    LVRL_CHECK_GEN("testlib", fails_with(-5), lvrl_rc >= 0, "code " + std::to_string(lvrl_rc));
    FAIL() << "must throw";
  } catch (const lvrl::LibraryError& e) {
    std::string message = e.what();
    EXPECT_EQ(e.library(), "testlib");
    EXPECT_EQ(e.statement(), "fails_with(-5)");
    EXPECT_EQ(e.detail(), "code -5");
    EXPECT_NE(message.find("TestBody()"), std::string::npos) << message;
    EXPECT_NE(message.find("error_test.cpp:" + std::to_string(line)), std::string::npos) << message;
  }
}

TEST(Error, C10dFailureBecomesLibraryError) {
  // A real c10d failure: a key nobody sets, in a store file nobody creates, after a short timeout.
  const lvrl::TempDir dir("lvrl-c10d");
  const std::string path = dir.file("store");
  c10d::FileStore store(path, 1);
  store.setTimeout(std::chrono::milliseconds(50));
  try {
    LVRL_C10D_CHECK(store.get("never-set"));
    FAIL() << "must throw";
  } catch (const lvrl::LibraryError& e) {
    EXPECT_EQ(e.library(), "c10d");
    EXPECT_EQ(e.statement(), "store.get(\"never-set\")");
    EXPECT_NE(e.detail().find(path), std::string::npos) << e.what();  // c10d's own text names the file
  }
}

TEST(ErrorTest, C10dCheckLeavesOtherFailuresAlone) {
  // Only c10d's own refusals become a LibraryError; no memory or a bug in the statement stays itself.
  EXPECT_THROW(LVRL_C10D_CHECK(throw std::bad_alloc()), std::bad_alloc);
  EXPECT_THROW(LVRL_C10D_CHECK(throw std::logic_error("a bug")), std::logic_error);
  EXPECT_THROW(LVRL_C10D_CHECK(throw std::runtime_error("gloo: connection closed")), lvrl::LibraryError);
}

TEST(ErrorDeathTest, AssertAbortsWithMessage) {
  EXPECT_DEATH(LVRL_ASSERT(1 + 1 == 3, "arithmetic broke"), "1 \\+ 1 == 3.*arithmetic broke");
}
}  // namespace
