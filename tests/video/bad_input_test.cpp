// Bad input never hangs or crashes. Unusable files give lvrl::InputError naming the file; partially
// damaged files give the frames that decode plus warnings, and never a frame that is not the one at
// its reported timestamp (checked against ffprobe of the undamaged original, frame by frame).
// Every call runs under a deadline: a hang fails the binary instead of stalling ctest.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "tests/support/expect_error.h"
#include "tests/support/files.h"
#include "tests/video/test_videos.h"
#include "video/probe.h"
#include "video/sampling.h"

namespace {
namespace tv = lvrl::testing_video;
using lvrl::video::OutputSize;
using lvrl::video::SampledFrames;
using lvrl::video::SamplingPlan;

constexpr double kDeadline = 20;  // seconds; every case here takes well under one

OutputSize size_of(const tv::VideoSpec& spec) {
  OutputSize size;
  size.width = spec.display_width();
  size.height = spec.display_height();
  return size;
}

// Both probe() and sample_frames() must throw InputError whose file is `path` and whose message
// names it.
void expect_unusable_file(const std::string& path, const std::string& what) {
  auto check = [&](const char* call, auto&& invoke) {
    const lvrl::InputError e = tv::run_with_deadline(kDeadline, what + " " + call,
                                                     [&] { return lvrl::test::expect_input_error(invoke); });
    EXPECT_EQ(e.file(), path) << what << ": " << call << "(" << path << "): " << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos)
        << what << ": " << call << "(" << path << "): InputError not naming the file: " << e.what();
  };
  check("probe", [&] { lvrl::video::probe(path); });
  check("sample_frames", [&] {
    OutputSize size;
    size.width = 64;
    size.height = 48;
    lvrl::video::sample_frames(path, SamplingPlan::uniform(4), size);
  });
}

// ---- Unusable files ------------------------------------------------------------------------------------

TEST(BadInput, MissingFile) {
  expect_unusable_file(tv::video_dir() + "/does-not-exist.mp4", "missing file");
}

TEST(BadInput, TextFileNamedMp4) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "this is a plain text file, not a video\n";
  expect_unusable_file(tv::write_file("not-a-video.mp4", text), "text renamed .mp4");
}

TEST(BadInput, ZeroLengthFile) {
  expect_unusable_file(tv::write_file("zero-length.mp4", ""), "zero-length file");
}

TEST(BadInput, AudioOnlyFile) {
  const std::string path = tv::video_dir() + "/audio-only.m4a";
  lvrl::test::ProcessResult run =
      tv::run_tool({"ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1", "-c:a", "aac", path});
  ASSERT_EQ(run.exit_code, 0) << run.error_output;
  expect_unusable_file(path, "audio-only file");
}

// YUV4MPEG2 headers state the size in plain text. 60000×60000 is refused by FFmpeg itself at open;
// 65000×64 opens (FFmpeg's own size check passes) and must be refused by us. Both carry far too
// little data for even one frame.
TEST(BadInput, AbsurdDimensions) {
  const std::string tail = "FRAME\n" + std::string(1000, '\x10');
  expect_unusable_file(
      tv::write_file("absurd-60000x60000.y4m", "YUV4MPEG2 W60000 H60000 F30:1 Ip A1:1 C420jpeg\n" + tail),
      "60000x60000 y4m");
  expect_unusable_file(
      tv::write_file("absurd-65000x64.y4m", "YUV4MPEG2 W65000 H64 F30:1 Ip A1:1 C420jpeg\n" + tail),
      "65000x64 y4m");
}

// ---- Partially damaged files ---------------------------------------------------------------------------

tv::VideoSpec damage_source(const std::string& name, const std::string& container, bool faststart) {
  tv::VideoSpec spec;
  spec.name = name;
  spec.container = container;
  spec.frames = 150;
  spec.gop = 50;
  spec.bframes = 2;
  spec.faststart = faststart;
  return spec;
}

std::vector<double> every_frame_and_beyond(const std::vector<double>& times) {
  std::vector<double> targets(times.begin(), times.end());
  targets.push_back(times.back() + 1.0);
  return targets;
}

// Cut at 60% of the bytes: mid-GOP, mid-packet. Targets before the cut come back exact; later ones
// give earlier frames that really are the frames at their timestamps, plus a warning.
void check_truncated(const tv::VideoSpec& spec) {
  const std::string original = tv::make_video(spec);
  const std::string bytes = lvrl::test::read_file(original);
  const std::string path =
      tv::write_file(spec.name + "-truncated." + spec.container, bytes.substr(0, bytes.size() * 6 / 10));
  const tv::ReferenceFrames& reference = tv::reference_frames(original);

  // What the ffmpeg CLI still decodes from the cut file: the exact region is the leading run of
  // correct frames, less a margin for the B-frames and references around the cut.
  std::string cli_log;
  std::vector<int> cli = tv::cli_frame_indices(path, spec.width, spec.height, 0, &cli_log);
  int good_prefix = 0;
  while (good_prefix < static_cast<int>(cli.size()) && cli[good_prefix] == good_prefix) ++good_prefix;
  ASSERT_GT(good_prefix, spec.frames / 4) << cli_log;
  ASSERT_LT(good_prefix, spec.frames * 9 / 10) << cli_log;
  const int exact_below = good_prefix - (spec.bframes + 2);

  SamplingPlan plan = SamplingPlan::at_times(every_frame_and_beyond(reference.times));
  SampledFrames got = tv::run_with_deadline(
      kDeadline, "sampling " + path, [&] { return lvrl::video::sample_frames(path, plan, size_of(spec)); });
  std::string report = tv::consistency_report(got, original, 0, "truncated, every frame");
  EXPECT_TRUE(report.empty()) << report;
  const double* timestamps = got.timestamps.data_ptr<double>();
  for (size_t i = 0; i < got.targets.size(); ++i) {
    const int64_t expected = tv::expected_frame(reference.times, got.targets[i]);
    if (expected < exact_below) {
      EXPECT_EQ(tv::frame_index(got.frames, i), expected) << path << " target " << got.targets[i];
    } else {
      EXPECT_LE(timestamps[i], got.targets[i] + 1e-9)
          << path << ": a frame from after target " << got.targets[i];
    }
  }
  EXPECT_FALSE(got.warnings.empty()) << path << ": targets past the cut (" << reference.times[good_prefix]
                                     << " s) need a warning naming the truncation";
  for (const std::string& warning : got.warnings) std::printf("  warning: %s\n", warning.c_str());
}

TEST(BadInput, TruncatedMkvMidGop) {
  check_truncated(damage_source("h264_mkv_for_truncation", "mkv", false));
}

TEST(BadInput, TruncatedMp4MidGop) {
  check_truncated(damage_source("h264_mp4_faststart_for_truncation", "mp4", true));
}

// A truncated MP4 whose index (moov) sits at the end has no index at all: a clear error.
TEST(BadInput, TruncatedMp4WithoutIndex) {
  const std::string original = tv::make_video(damage_source("h264_mp4_for_truncation", "mp4", false));
  const std::string bytes = lvrl::test::read_file(original);
  expect_unusable_file(tv::write_file("h264_mp4_moov_lost.mp4", bytes.substr(0, bytes.size() * 6 / 10)),
                       "MP4 cut before its moov");
}

// Garbage over the middle half of one P-frame's data (fixed seed): that frame, the B-frames before
// it and every frame up to the next keyframe are damaged. Everything else comes back exact; nothing
// damaged comes back as if it were fine.
TEST(BadInput, CorruptedPacketNeverGivesASubstitutedFrame) {
  const tv::VideoSpec spec = damage_source("h264_mp4_for_corruption", "mp4", false);
  const std::string original = tv::make_video(spec);
  const tv::ReferenceFrames& reference = tv::reference_frames(original);
  int damaged = 70;
  while (reference.pict_type[damaged] != 'P') ++damaged;
  int next_key = damaged + 1;
  while (next_key < spec.frames && !reference.key[next_key]) ++next_key;
  tv::PacketInfo victim;
  for (const tv::PacketInfo& packet : tv::packets(original)) {
    if (packet.pts == reference.ticks[damaged]) victim = packet;
  }
  ASSERT_GT(victim.size, 16) << "no packet for frame " << damaged;
  std::string bytes = lvrl::test::read_file(original);
  tv::overwrite_random(bytes, victim.pos + victim.size / 4, victim.pos + victim.size * 3 / 4, 20240601);
  const std::string path = tv::write_file(spec.name + "-corrupted.mp4", bytes);
  const int first_damaged = damaged - spec.bframes;

  SamplingPlan plan = SamplingPlan::at_times(every_frame_and_beyond(reference.times));
  SampledFrames got = tv::run_with_deadline(
      kDeadline, "sampling " + path, [&] { return lvrl::video::sample_frames(path, plan, size_of(spec)); });
  std::string report =
      tv::consistency_report(got, original, 0, "corrupted P-frame " + std::to_string(damaged));
  EXPECT_TRUE(report.empty()) << "damaged frames " << first_damaged << ".." << next_key - 1 << "\n" << report;
  // The decoder reports the error (AV_EF_EXPLODE) together with the frame it would have handed out
  // at that call and drops that frame: a good frame within the reorder delay before the damage may be
  // lost. Its target then gets an earlier frame under that frame's own timestamp (the consistency
  // report above checks the honesty); frames further away must be exact.
  const int collateral_from = first_damaged - spec.bframes - 1;
  for (size_t i = 0; i < got.targets.size(); ++i) {
    const int64_t expected = tv::expected_frame(reference.times, got.targets[i]);
    if (expected < collateral_from || expected >= next_key) {
      EXPECT_EQ(tv::frame_index(got.frames, i), expected) << path << " target " << got.targets[i];
    } else if (expected < first_damaged) {
      EXPECT_LE(tv::frame_index(got.frames, i), expected) << path << " target " << got.targets[i];
    }
  }
  EXPECT_FALSE(got.warnings.empty()) << path << ": frames " << first_damaged << ".." << next_key - 1
                                     << " are damaged; a warning must name the span";
  for (const std::string& warning : got.warnings) std::printf("  warning: %s\n", warning.c_str());
}

// Garbage over 48 bytes at 30%, 55% and 80% of a Matroska file (fixed seeds): block headers (with their
// timestamps), cluster structure and frame data break, and the demuxer has to resynchronize.
// Whatever comes back must be the frames at their timestamps, with warnings.
TEST(BadInput, CorruptedMkvStructureNeverGivesASubstitutedFrame) {
  const tv::VideoSpec spec = damage_source("h264_mkv_for_truncation", "mkv", false);
  const std::string original = tv::make_video(spec);
  const tv::ReferenceFrames& reference = tv::reference_frames(original);
  std::string bytes = lvrl::test::read_file(original);
  for (int percent : {30, 55, 80}) {
    const int64_t at = static_cast<int64_t>(bytes.size()) * percent / 100;
    tv::overwrite_random(bytes, at, at + 48, 7 + percent);
  }
  const std::string path = tv::write_file(spec.name + "-corrupted.mkv", bytes);

  for (const SamplingPlan& plan :
       {SamplingPlan::at_times(every_frame_and_beyond(reference.times)), SamplingPlan::uniform(16)}) {
    SampledFrames got;
    std::string error = tv::run_with_deadline(kDeadline, "sampling " + path, [&]() -> std::string {
      try {
        got = lvrl::video::sample_frames(path, plan, size_of(spec));
        return "";
      } catch (const lvrl::InputError& e) {
        return e.file() == path ? "" : std::string("InputError for another file: ") + e.what();
      }
    });
    EXPECT_EQ(error, "");
    if (!got.frames.defined()) continue;  // refused with a clear error: allowed
    std::string report = tv::consistency_report(got, original, 0, "corrupted MKV, " + plan.describe());
    EXPECT_TRUE(report.empty()) << report;
    // Every-frame sampling decodes the damage, so it must warn. A sparse plan may resolve its last
    // target before the damaged frame's error leaves the frame-thread pipeline: no warning owed.
    if (plan.describe().rfind("timestamps", 0) == 0) {
      EXPECT_FALSE(got.warnings.empty()) << path << " [" << plan.describe() << "]: damage needs a warning";
    }
  }
}

// ---- A container that over-reports ----------------------------------------------------------------------

// AVI: the frame counts in the main header (avih.dwTotalFrames) and the stream header
// (strh.dwLength) say 12000 frames, 100× the real 120; ffprobe then reports 400 s.
std::string over_reporting_avi() {
  const std::string original = tv::make_video(tv::matrix_spec("mpeg4_avi_bframes"));
  std::string bytes = lvrl::test::read_file(original);
  auto put_le32 = [&](size_t at, uint32_t value) {
    for (int i = 0; i < 4; ++i) bytes[at + i] = static_cast<char>((value >> (8 * i)) & 0xff);
  };
  const size_t avih = bytes.find("avih"), strh = bytes.find("strh");
  EXPECT_NE(avih, std::string::npos);
  EXPECT_NE(strh, std::string::npos);
  put_le32(avih + 8 + 16, 12000);
  put_le32(strh + 8 + 32, 12000);
  return tv::write_file("mpeg4-over-reported.avi", bytes);
}

// Matroska: the Segment Info Duration (EBML id 0x4489, an 8-byte big-endian float in ms) says
// 400000 ms instead of 4000.
std::string over_reporting_mkv() {
  const std::string original = tv::make_video(tv::matrix_spec("h264_mkv_open_gop"));
  std::string bytes = lvrl::test::read_file(original);
  const size_t duration = bytes.find("\x44\x89\x88");
  EXPECT_NE(duration, std::string::npos);
  double value = 400000.0;
  uint64_t bits;
  std::memcpy(&bits, &value, 8);
  for (int i = 0; i < 8; ++i) bytes[duration + 3 + i] = static_cast<char>((bits >> (56 - 8 * i)) & 0xff);
  return tv::write_file("h264-over-reported.mkv", bytes);
}

TEST(BadInput, OverReportingContainerDoesNotHang) {
  for (const auto& [path, original] :
       {std::make_pair(over_reporting_avi(), tv::make_video(tv::matrix_spec("mpeg4_avi_bframes"))),
        std::make_pair(over_reporting_mkv(), tv::make_video(tv::matrix_spec("h264_mkv_open_gop")))}) {
    lvrl::test::ProcessResult format =
        tv::run_tool({"ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path});
    ASSERT_GT(std::atof(format.output.c_str()), 100.0) << path << ": the patch should make ffprobe see 400 s";
    const tv::ReferenceFrames& reference = tv::reference_frames(original);
    for (const SamplingPlan& plan : {SamplingPlan::uniform(8), SamplingPlan::at_fps(1, 16),
                                     SamplingPlan::at_times({1.0, 50.0, 399.0, 0.5})}) {
      SampledFrames got = tv::run_with_deadline(kDeadline, "sampling " + path + " " + plan.describe(), [&] {
        return lvrl::video::sample_frames(path, plan, OutputSize{160, 96});
      });
      // The frame for a target past the real end is the real last frame.
      std::string report = tv::exactness_report(got, original, 0, plan.describe() + " on " + path);
      EXPECT_TRUE(report.empty()) << report;
      EXPECT_LE(got.stats.packets_read, 10 * static_cast<int64_t>(reference.times.size()) + 10000) << path;
    }
  }
}

}  // namespace
