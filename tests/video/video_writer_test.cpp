// VideoWriter against the ffmpeg/ffprobe CLIs: the stream is what was asked for (H.264, size,
// rate, frame count, a keyframe exactly every `gop` frames, BT.601 limited range), the muxer wrote
// no version strings, the pixels decode back to the RGB that went in, and bad requests are
// InputErrors naming the file.
#include "video/video_writer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/temp_dir.h"
#include "tests/support/files.h"
#include "tests/video/test_videos.h"

namespace lvrl::video {
namespace {

using testing_video::probe_stream_value;
using testing_video::run_tool;

constexpr int kWidth = 64, kHeight = 48, kFrames = 45, kFps = 15, kGop = 10;

// Frame i: four flat quadrants whose colours depend on i, so every frame differs.
std::vector<uint8_t> test_frame(int i) {
  std::vector<uint8_t> rgb(kWidth * kHeight * 3);
  for (int y = 0; y < kHeight; ++y) {
    for (int x = 0; x < kWidth; ++x) {
      const int quadrant = (y >= kHeight / 2) * 2 + (x >= kWidth / 2);
      uint8_t* p = &rgb[(y * kWidth + x) * 3];
      p[0] = static_cast<uint8_t>((40 + 60 * quadrant + 3 * i) % 256);
      p[1] = static_cast<uint8_t>((200 - 40 * quadrant + 2 * i) % 256);
      p[2] = static_cast<uint8_t>((90 + 25 * quadrant * i) % 256);
    }
  }
  return rgb;
}

std::string write_test_video(const std::string& path, int crf) {
  VideoWriter writer;
  writer.open(path, kWidth, kHeight, kFps, kGop, crf);
  for (int i = 0; i < kFrames; ++i) writer.write_rgb(test_frame(i).data());
  writer.finish();
  EXPECT_EQ(writer.frames_written(), kFrames);
  return path;
}

TEST(VideoWriter, StreamIsWhatWasAskedFor) {
  TempDir dir("lvrl_writer");
  const std::string path = write_test_video(dir.file("clip.mp4"), 20);
  EXPECT_EQ(probe_stream_value(path, "codec_name"), "h264");
  EXPECT_EQ(probe_stream_value(path, "width"), std::to_string(kWidth));
  EXPECT_EQ(probe_stream_value(path, "height"), std::to_string(kHeight));
  EXPECT_EQ(probe_stream_value(path, "pix_fmt"), "yuv420p");
  EXPECT_EQ(probe_stream_value(path, "avg_frame_rate"), "15/1");
  EXPECT_EQ(probe_stream_value(path, "nb_frames"), std::to_string(kFrames));
  EXPECT_EQ(probe_stream_value(path, "duration"), "3.000000");  // 45 frames of 1/15 s, the last one too
  EXPECT_EQ(probe_stream_value(path, "color_space"), "smpte170m");
  EXPECT_EQ(probe_stream_value(path, "color_range"), "tv");
  const testing_video::ReferenceFrames& frames = testing_video::reference_frames(path);
  ASSERT_EQ(frames.key.size(), static_cast<size_t>(kFrames));
  for (int i = 0; i < kFrames; ++i) {
    EXPECT_EQ(frames.key[i], i % kGop == 0) << "frame " << i;
    EXPECT_NEAR(frames.times[i], static_cast<double>(i) / kFps, 1e-6) << "frame " << i;
    EXPECT_NE(frames.pict_type[i], 'B') << "frame " << i;
  }
  // Bitexact muxing: no "Lavf59..." encoder tag, no libavcodec version anywhere in the file.
  const std::string bytes = test::read_file(path);
  EXPECT_EQ(bytes.find("Lavf"), std::string::npos);
  EXPECT_EQ(bytes.find("Lavc"), std::string::npos);
  const auto tags = run_tool(
      {"ffprobe", "-v", "error", "-show_entries", "format_tags:stream_tags", "-of", "default=nw=1", path});
  ASSERT_EQ(tags.exit_code, 0) << tags.error_output;
  EXPECT_EQ(tags.output.find("encoder"), std::string::npos) << tags.output;
}

TEST(VideoWriter, PixelsDecodeBackToTheInput) {
  TempDir dir("lvrl_writer");
  const std::string path = write_test_video(dir.file("clip.mp4"), 0);  // crf 0: lossless YUV
  const auto decoded =
      run_tool({"ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"});
  ASSERT_EQ(decoded.exit_code, 0) << decoded.error_output;
  ASSERT_EQ(decoded.output.size(), static_cast<size_t>(kFrames * kWidth * kHeight * 3));
  // Flat quadrants: only the 8-bit YUV rounding both ways remains, a few levels at most.
  double worst = 0;
  for (int i = 0; i < kFrames; ++i) {
    const std::vector<uint8_t> want = test_frame(i);
    for (size_t k = 0; k < want.size(); ++k) {
      const auto got = static_cast<uint8_t>(decoded.output[i * want.size() + k]);
      worst = std::max(worst, std::abs(static_cast<double>(got) - want[k]));
    }
  }
  EXPECT_LE(worst, 4) << "largest difference of a channel, in levels";
}

TEST(VideoWriter, SameFramesGiveIdenticalBytes) {
  TempDir dir("lvrl_writer");
  const std::string a = write_test_video(dir.file("a.mp4"), 20), b = write_test_video(dir.file("b.mp4"), 20);
  EXPECT_EQ(test::read_file(a), test::read_file(b));
}

TEST(VideoWriter, BadRequestsNameTheFile) {
  TempDir dir("lvrl_writer");
  VideoWriter writer;
  try {
    writer.open(dir.file("odd.mp4"), 63, 48, 10, 10, 20);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), dir.file("odd.mp4"));
    EXPECT_NE(e.problem().find("even"), std::string::npos) << e.what();
  }
  EXPECT_THROW(writer.open(dir.file("x.mp4"), 64, 48, 10, 10, 52), InputError);
  try {
    writer.open(dir.file("missing/dir/x.mp4"), 64, 48, 10, 10, 20);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), dir.file("missing/dir/x.mp4"));
  }
}

TEST(VideoWriter, UnfinishedFileIsRemoved) {
  TempDir dir("lvrl_writer");
  {
    VideoWriter writer;
    writer.open(dir.file("partial.mp4"), kWidth, kHeight, kFps, kGop, 20);
    writer.write_rgb(test_frame(0).data());
    EXPECT_TRUE(std::filesystem::exists(dir.file("partial.mp4")));
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("partial.mp4")));
}

}  // namespace
}  // namespace lvrl::video
