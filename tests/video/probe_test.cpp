// probe() and `lvrl video probe` against ffprobe on every file of the codec/container matrix:
// decoder, displayed and coded size, rotation, start and duration (within one frame of ffprobe's
// frames), frame rate, pixel format and the keyframe count (ffprobe's K-flagged packets).
#include "video/probe.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "tests/support/run_process.h"
#include "tests/video/test_videos.h"

namespace {
namespace tv = lvrl::testing_video;
using lvrl::video::VideoInfo;

std::vector<std::string> matrix_names() {
  std::vector<std::string> names;
  for (const tv::VideoSpec& spec : tv::video_matrix()) names.push_back(spec.name);
  return names;
}

std::string expected_decoder(const std::string& encoder) {
  if (encoder == "libx264") return "h264";
  if (encoder == "libx265") return "hevc";
  if (encoder == "libvpx-vp9") return "vp9";
  if (encoder == "libaom-av1") return "libdav1d";  // the built-in av1 decoder needs hardware in 5.1
  return encoder;                                  // mpeg4
}

std::string expected_demuxer(const std::string& container) {
  if (container == "mp4" || container == "mov") return "mov,mp4,m4a,3gp,3g2,mj2";
  if (container == "mkv" || container == "webm") return "matroska,webm";
  if (container == "ts") return "mpegts";
  return container;  // avi
}

class ProbeMatrix : public ::testing::TestWithParam<std::string> {};

TEST_P(ProbeMatrix, AgreesWithFfprobe) {
  const tv::VideoSpec& spec = tv::matrix_spec(GetParam());
  const std::string path = tv::make_video(spec);
  const tv::ReferenceFrames& reference = tv::reference_frames(path);
  VideoInfo info = lvrl::video::probe(path);
  SCOPED_TRACE(spec.describe() + " " + path);

  EXPECT_EQ(info.path, path);
  EXPECT_EQ(info.container, expected_demuxer(spec.container));
  EXPECT_EQ(info.codec, expected_decoder(spec.codec));
  EXPECT_EQ(info.width, spec.display_width());
  EXPECT_EQ(info.height, spec.display_height());
  EXPECT_EQ(info.coded_width, spec.width);
  EXPECT_EQ(info.coded_height, spec.height);
  EXPECT_EQ(info.rotation, spec.rotation);
  EXPECT_EQ(info.pixel_format, spec.pix_fmt);

  // Start: the first frame's pts; duration: first frame to the end of the last one (which lasts one
  // nominal period, also in our VFR files), within one frame.
  const double period = 1 / spec.fps();
  EXPECT_NEAR(info.start_s, reference.start_s, 1e-3);
  const double reference_end = reference.times.back() + period;
  EXPECT_NEAR(info.duration_s, reference_end, period + 1e-3)
      << "ffprobe's last frame at " << reference.times.back();
  if (spec.vfr) {
    EXPECT_NEAR(info.frame_rate, spec.frames / reference_end, 0.05 * spec.frames / reference_end);
  } else {
    EXPECT_NEAR(info.frame_rate, spec.fps(), 0.005 * spec.fps());
  }
  if (spec.container == "mp4" || spec.container == "mov") {
    EXPECT_EQ(info.frame_count, spec.frames) << "MP4/MOV sample tables count frames";
  }

  // Keyframes: the count of K-flagged packets, each at the time of one of ffprobe's frames.
  EXPECT_EQ(info.keyframe_count, tv::key_packet_count(path));
  ASSERT_EQ(static_cast<int64_t>(info.keyframe_times.size()), info.keyframe_count);
  // AVI packets carry no pts with B-frames: its index times are decode times (documented in probe.h).
  // MP4/MOV indexes hold decode times shifted by the first keyframe's reorder delay, which VFR
  // retiming changes along the stream: only the count is exact there.
  const bool exact_times =
      spec.container != "avi" && !((spec.container == "mp4" || spec.container == "mov") && spec.vfr);
  for (size_t i = 0; exact_times && i < info.keyframe_times.size(); ++i) {
    if (i > 0) {
      EXPECT_GT(info.keyframe_times[i], info.keyframe_times[i - 1]);
    }
    const int64_t frame = tv::frame_at_time(reference.times, info.keyframe_times[i]);
    ASSERT_GE(frame, 0) << "keyframe " << i << " at " << info.keyframe_times[i] << " s is no frame's time";
    EXPECT_TRUE(reference.key[frame] || spec.open_gop) << "keyframe " << i << " is frame " << frame;
  }
}

INSTANTIATE_TEST_SUITE_P(Matrix, ProbeMatrix, ::testing::ValuesIn(matrix_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// ---- `lvrl video probe FILE` --------------------------------------------------------------------------

TEST(ProbeCli, PrintsJsonWithTheProbedFields) {
  for (const char* name : {"hevc10_mkv_bframes", "h264_mp4_rotate90"}) {
    const tv::VideoSpec& spec = tv::matrix_spec(name);
    const std::string path = tv::make_video(spec);
    lvrl::test::ProcessResult run = lvrl::test::run_lvrl({"video", "probe", path});
    ASSERT_EQ(run.exit_code, 0) << run.output;
    nlohmann::json printed;
    ASSERT_NO_THROW(printed = nlohmann::json::parse(run.output)) << run.output;
    VideoInfo info = lvrl::video::probe(path);
    for (const char* key : {"path", "container", "codec", "width", "height", "coded_width", "coded_height",
                            "rotation", "start", "duration", "frame_rate", "frame_count", "keyframe_count",
                            "pixel_format", "color_matrix", "color_range"}) {
      EXPECT_TRUE(printed.contains(key)) << key << " missing from " << run.output;
    }
    EXPECT_EQ(printed.value("path", ""), path);
    EXPECT_EQ(printed.value("codec", ""), info.codec);
    EXPECT_EQ(printed.value("width", 0), spec.display_width());
    EXPECT_EQ(printed.value("height", 0), spec.display_height());
    EXPECT_EQ(printed.value("rotation", -1), spec.rotation);
    EXPECT_EQ(printed.value("pixel_format", ""), spec.pix_fmt);
    EXPECT_EQ(printed.value("keyframe_count", -1), tv::key_packet_count(path));
    EXPECT_NEAR(printed.value("duration", 0.0), info.duration_s, 1e-6);
    EXPECT_FALSE(printed.contains("keyframe_times")) << "the list stays out of the CLI's JSON";
  }
}

TEST(ProbeCli, BadFileFailsNamingIt) {
  const std::string path = tv::video_dir() + "/no-such-video.mp4";
  lvrl::test::ProcessResult run = lvrl::test::run_lvrl({"video", "probe", path});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find(path), std::string::npos) << run.output;
}

}  // namespace
