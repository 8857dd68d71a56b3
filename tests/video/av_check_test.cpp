// The FFmpeg check reports statement, function, file:line and FFmpeg's text for a real failing call.
#include "video/av_check.h"

#include <gtest/gtest.h>

extern "C" {
#include <libavformat/avformat.h>
}

namespace {
void open_missing(const char* path) {
  AVFormatContext* format = nullptr;
  LVRL_AV_CHECK(avformat_open_input(&format, path, nullptr, nullptr));
  avformat_close_input(&format);
}

TEST(AvCheck, ReportsStatementLocationAndFfmpegText) {
  try {
    open_missing("/nonexistent/lvrl-av-check.mp4");
    FAIL() << "opening a missing file must throw";
  } catch (const lvrl::LibraryError& e) {
    std::string message = e.what();
    EXPECT_EQ(e.library(), "FFmpeg");
    EXPECT_NE(message.find("avformat_open_input(&format, path, nullptr, nullptr)"), std::string::npos)
        << message;
    EXPECT_NE(message.find("open_missing()"), std::string::npos) << message;
    EXPECT_NE(message.find("av_check_test.cpp:"), std::string::npos) << message;
    // ENOENT as FFmpeg words it, with the code: an independent check of the text.
    EXPECT_NE(message.find("No such file or directory"), std::string::npos) << message;
    EXPECT_NE(message.find(std::to_string(AVERROR(ENOENT))), std::string::npos) << message;
  }
}

TEST(AvCheck, PassesSuccessThrough) {
  int calls = 0;
  auto succeed = [&] {
    ++calls;
    return 0;
  };
  EXPECT_NO_THROW(LVRL_AV_CHECK(succeed()));
  EXPECT_EQ(calls, 1) << "the statement is evaluated exactly once";
}
}  // namespace
