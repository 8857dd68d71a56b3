// Frame-exact sampling over the codec/container matrix (tests/video/test_videos.cpp): for uniform,
// fps and explicit plans, every returned frame must show the index of the last frame whose pts <= its
// target, by ffprobe's timestamps, and carry that frame's timestamp. The generator itself is checked
// first against the ffmpeg CLI (TestVideos.*), independently of our sampler.
#include "video/sampling.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tests/video/test_videos.h"
#include "video/qwen_preprocess.h"

namespace {
namespace tv = lvrl::testing_video;
using lvrl::video::OutputSize;
using lvrl::video::SampledFrames;
using lvrl::video::SamplingPlan;

std::vector<std::string> matrix_names() {
  std::vector<std::string> names;
  for (const tv::VideoSpec& spec : tv::video_matrix()) names.push_back(spec.name);
  return names;
}

std::string param_name(const ::testing::TestParamInfo<std::string>& info) {
  return info.param;
}

OutputSize display_size(const tv::VideoSpec& spec) {
  OutputSize size;
  size.width = spec.display_width();
  size.height = spec.display_height();
  return size;
}

// ---- The generator, checked against the ffmpeg CLI ---------------------------------------------------

// Draws the pattern in memory exactly as the geq expression does, on a coded picture, then turns it
// `rotation` degrees clockwise, as a display would.
std::vector<uint8_t> synthetic_frame(int index, int width, int height, int rotation, int* shown_width,
                                     int* shown_height) {
  const int check = ((index & 15) + ((index >> 4) & 15) + ((index >> 8) & 15) + 5) & 15;
  const int bits = index | (check << tv::kIndexBits);
  const bool swap = rotation % 180 != 0;
  *shown_width = swap ? height : width;
  *shown_height = swap ? width : height;
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < *shown_height; ++y) {
    for (int x = 0; x < *shown_width; ++x) {
      // Displayed pixel → coded pixel (inverse of a clockwise turn).
      int cx = x, cy = y;
      if (rotation == 90) cx = y, cy = height - 1 - x;
      if (rotation == 180) cx = width - 1 - x, cy = height - 1 - y;
      if (rotation == 270) cx = width - 1 - y, cy = x;
      const int block = cx * tv::kGrid / width + tv::kGrid * (cy * tv::kGrid / height);
      const uint8_t level = (bits >> block) & 1 ? 235 : 20;
      uint8_t* pixel = &rgb[(static_cast<size_t>(y) * *shown_width + x) * 3];
      pixel[0] = pixel[1] = pixel[2] = level;
    }
  }
  return rgb;
}

TEST(TestVideos, DecoderReadsThePatternInEveryOrientation) {
  for (int rotation : {0, 90, 180, 270}) {
    for (int index : {0, 1, 7, 255, 1234, 4095}) {
      int w = 0, h = 0;
      std::vector<uint8_t> rgb = synthetic_frame(index, 638, 358, rotation, &w, &h);
      EXPECT_EQ(tv::decode_frame_index(rgb.data(), w, h, rotation), index) << "rotation " << rotation;
      if (rotation != 0) {
        // Read with the wrong orientation: the checksum must reject it (or, for symmetric patterns,
        // at least not invent a different frame).
        int wrong = tv::decode_frame_index(rgb.data(), w, h, (rotation + 90) % 360);
        EXPECT_TRUE(wrong == -1 || wrong == index) << "rotation " << rotation << " index " << index;
      }
    }
  }
  std::vector<uint8_t> grey(64 * 48 * 3, 128);
  EXPECT_EQ(tv::decode_frame_index(grey.data(), 64, 48), -1) << "mid-grey is not a frame";
  std::vector<uint8_t> black(64 * 48 * 3, 0);
  EXPECT_EQ(tv::decode_frame_index(black.data(), 64, 48), -1) << "black fails the checksum (frame 0 has one)";
}

class GeneratedVideo : public ::testing::TestWithParam<std::string> {};

// Every frame, decoded by the ffmpeg CLI (with its autorotate), shows 0, 1, 2, ... in order; ffprobe
// sees the frame count, B-frames, keyframes, VFR spacing, pixel format and rotation the spec asks for.
TEST_P(GeneratedVideo, EveryFrameShowsItsIndexAndTheSpecHolds) {
  const tv::VideoSpec& spec = tv::matrix_spec(GetParam());
  const std::string path = tv::make_video(spec);
  std::string error;
  std::vector<int> indices =
      tv::cli_frame_indices(path, spec.display_width(), spec.display_height(), spec.rotation, &error);
  ASSERT_EQ(static_cast<int>(indices.size()), spec.frames) << spec.describe() << "\n" << error;
  for (int i = 0; i < spec.frames; ++i) {
    ASSERT_EQ(indices[i], i) << spec.describe() << ": CLI frame " << i << " of " << path;
  }
  const tv::ReferenceFrames& reference = tv::reference_frames(path);
  ASSERT_EQ(static_cast<int>(reference.times.size()), spec.frames) << path;
  EXPECT_EQ(reference.times.front(), 0.0);
  for (size_t i = 1; i < reference.times.size(); ++i) {
    ASSERT_GT(reference.times[i], reference.times[i - 1]) << path << " frame " << i;
  }
  if (spec.bframes > 0) {
    EXPECT_NE(std::count(reference.pict_type.begin(), reference.pict_type.end(), 'B'), 0)
        << spec.describe() << ": no B-frames were produced";
  }
  // Keyframes exactly every `gop` frames (scene cuts are off); the MPEG-4 encoder also makes the
  // last frame an I-frame when a B-frame run has no future reference left.
  const int64_t keyframes = std::count(reference.key.begin(), reference.key.end(), true);
  for (int i = 0; i < spec.frames; i += spec.gop)
    EXPECT_TRUE(reference.key[i]) << spec.describe() << " frame " << i;
  EXPECT_GE(keyframes, (spec.frames + spec.gop - 1) / spec.gop) << spec.describe();
  EXPECT_LE(keyframes, (spec.frames + spec.gop - 1) / spec.gop + (spec.codec == "mpeg4" ? 1 : 0))
      << spec.describe();
  EXPECT_EQ(tv::probe_stream_value(path, "pix_fmt"), spec.pix_fmt) << path;
  const double period = 1 / spec.fps();
  double shortest = 1e9, longest = 0;
  for (size_t i = 1; i < reference.times.size(); ++i) {
    shortest = std::min(shortest, reference.times[i] - reference.times[i - 1]);
    longest = std::max(longest, reference.times[i] - reference.times[i - 1]);
  }
  if (spec.vfr) {
    EXPECT_NEAR(shortest, period, 2e-3) << path;
    EXPECT_NEAR(longest, 4 * period, 2e-3) << path << ": VFR spacing should be irregular";
  } else {
    EXPECT_NEAR(longest, shortest, 2e-3) << path << ": CFR spacing should be regular";
  }
  if (spec.rotation != 0) {
    // av_display_rotation_get is counter-clockwise: the clockwise display turn is its negation.
    const std::string rotation = tv::probe_stream_value(path, "rotation");
    ASSERT_FALSE(rotation.empty()) << path << ": no display matrix";
    EXPECT_EQ(((-std::stoi(rotation)) % 360 + 360) % 360, spec.rotation) << path;
  }
}

INSTANTIATE_TEST_SUITE_P(Matrix, GeneratedVideo, ::testing::ValuesIn(matrix_names()), param_name);

// ---- Plans: documented properties, independent of any file -----------------------------------------

TEST(SamplingPlan, UniformTargetsAreIncreasingInsideTheDuration) {
  for (int64_t n : {1, 2, 16, 1000}) {
    std::vector<double> targets = SamplingPlan::uniform(n).targets(10.0);
    ASSERT_EQ(static_cast<int64_t>(targets.size()), n);
    for (size_t i = 0; i < targets.size(); ++i) {
      EXPECT_GE(targets[i], 0.0);
      EXPECT_LT(targets[i], 10.0);
      if (i > 0) {
        EXPECT_GT(targets[i], targets[i - 1]);
      }
    }
    EXPECT_NEAR(targets.front(), 0.5 * 10.0 / n, 1e-9) << "centres of N equal spans";
  }
  EXPECT_EQ(SamplingPlan::uniform(16).describe(), "uniform 16");
}

TEST(SamplingPlan, FpsSpacingAndCap) {
  std::vector<double> targets = SamplingPlan::at_fps(2).targets(10.0);
  ASSERT_EQ(targets.size(), 20u);
  EXPECT_DOUBLE_EQ(targets.front(), 0.0);
  for (size_t i = 1; i < targets.size(); ++i) EXPECT_NEAR(targets[i] - targets[i - 1], 0.5, 1e-9);
  EXPECT_LT(targets.back(), 10.0);
  // Under the cap: the cap changes nothing.
  EXPECT_EQ(SamplingPlan::at_fps(2, 20).targets(10.0), targets);
  // Over the cap: exactly max_frames targets, uniform.
  std::vector<double> capped = SamplingPlan::at_fps(10, 8).targets(10.0);
  EXPECT_EQ(capped, SamplingPlan::uniform(8).targets(10.0));
  EXPECT_EQ(capped.size(), 8u);
}

TEST(SamplingPlan, ExplicitTimesKeepTheCallersOrder) {
  std::vector<double> times = {3.0, 1.0, 1.0, -2.0, 100.0, 0.0};
  EXPECT_EQ(SamplingPlan::at_times(times).targets(10.0), times);
  EXPECT_EQ(SamplingPlan::at_times(times).targets(1.0), times) << "the duration does not clip explicit times";
}

// ---- Sampling the matrix -----------------------------------------------------------------------------

class SampleExact : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    spec_ = tv::matrix_spec(GetParam());
    path_ = tv::make_video(spec_);
    reference_ = &tv::reference_frames(path_);
  }
  SampledFrames sample(const SamplingPlan& plan) {
    return lvrl::video::sample_frames(path_, plan, display_size(spec_));
  }
  void expect_exact(const SampledFrames& got, const SamplingPlan& plan) {
    EXPECT_EQ(got.frames.size(1), spec_.display_height()) << path_;
    EXPECT_EQ(got.frames.size(2), spec_.display_width()) << path_;
    std::string report = tv::exactness_report(got, path_, spec_.rotation, plan.describe());
    EXPECT_TRUE(report.empty()) << spec_.describe() << "\n" << report;
  }
  tv::VideoSpec spec_;
  std::string path_;
  const tv::ReferenceFrames* reference_ = nullptr;
};

// One process per video and family of plans (ctest runs each TEST in its own process, and each
// start loads LibTorch): the failure messages name the plan.
TEST_P(SampleExact, UniformAndFpsPlans) {
  {
    SamplingPlan plan = SamplingPlan::uniform(16);
    SampledFrames got = sample(plan);
    ASSERT_EQ(got.targets.size(), 16u);
    EXPECT_EQ(got.targets, plan.targets(got.info.duration_s));
    expect_exact(got, plan);
    // Each frame decoded about once: visiting targets in order never re-decodes from the start.
    EXPECT_LE(got.stats.frames_decoded, 2 * static_cast<int64_t>(reference_->times.size()) + 16) << path_;
  }
  {
    SamplingPlan plan = SamplingPlan::at_fps(2, 1000);  // under the cap
    SampledFrames got = sample(plan);
    ASSERT_GE(got.targets.size(), 2u);
    for (size_t i = 1; i < got.targets.size(); ++i)
      EXPECT_NEAR(got.targets[i] - got.targets[i - 1], 0.5, 1e-9);
    EXPECT_EQ(got.targets, plan.targets(got.info.duration_s));
    expect_exact(got, plan);
  }
  {
    SamplingPlan plan = SamplingPlan::at_fps(10, 7);  // over the cap: 7 uniform targets
    SampledFrames got = sample(plan);
    ASSERT_EQ(got.targets.size(), 7u) << "fps 10 over " << got.info.duration_s << " s exceeds the cap";
    EXPECT_EQ(got.targets, SamplingPlan::uniform(7).targets(got.info.duration_s));
    expect_exact(got, plan);
  }
}

// Unsorted, duplicated, before the first frame, past the end, exactly on a pts and between two; then
// the strongest check: every frame asked for at its own pts, and again between it and the next.
TEST_P(SampleExact, ExplicitTimesAndEveryFrame) {
  const std::vector<double>& times = reference_->times;
  const size_t n = times.size();
  std::vector<double> requested = {
      times[n / 2] + 0.25 * (times[n / 2 + 1] - times[n / 2]),  // between two frames
      times[3],                                                 // exactly on a pts
      -1.0,                                                     // before the first frame → frame 0
      times[n - 1] + 5.0,                                       // past the end → the last frame
      times[1] * 0.5,
      times[3],      // duplicate
      times[n - 1],  // the last pts exactly
      times[n / 3],
      0.0,
  };
  SamplingPlan plan = SamplingPlan::at_times(requested);
  SampledFrames got = sample(plan);
  ASSERT_EQ(got.targets, requested) << "frames come back in the caller's order";
  expect_exact(got, plan);
  ASSERT_EQ(got.frames.size(0), static_cast<int64_t>(requested.size()));
  EXPECT_EQ(tv::frame_index(got.frames, 2, spec_.rotation), 0) << path_ << ": t < 0 gives the first frame";
  EXPECT_EQ(tv::frame_index(got.frames, 3, spec_.rotation), static_cast<int>(n - 1))
      << path_ << ": t past the end gives the last frame";
  EXPECT_TRUE(at::equal(got.frames[1], got.frames[5]))
      << path_ << ": a duplicate target gives the same frame";

  std::vector<double> on_pts(times.begin(), times.end());
  SamplingPlan exact = SamplingPlan::at_times(on_pts);
  expect_exact(sample(exact), exact);
  std::vector<double> between;
  for (size_t i = 0; i + 1 < times.size(); ++i) between.push_back(0.5 * (times[i] + times[i + 1]));
  SamplingPlan middle = SamplingPlan::at_times(between);
  expect_exact(sample(middle), middle);
}

INSTANTIATE_TEST_SUITE_P(Matrix, SampleExact, ::testing::ValuesIn(matrix_names()), param_name);

// ---- Output size, rotation, keyframe accuracy --------------------------------------------------------

TEST(SampleFrames, ExplicitSizeResizesAndKeepsTheIndex) {
  const tv::VideoSpec& spec = tv::matrix_spec("h264_mp4_638x358");
  const std::string path = tv::make_video(spec);
  OutputSize size;
  size.width = 64;
  size.height = 48;
  SamplingPlan plan = SamplingPlan::uniform(6);
  SampledFrames got = lvrl::video::sample_frames(path, plan, size);
  ASSERT_EQ(got.frames.sizes(), (std::vector<int64_t>{6, 48, 64, 3}));
  std::string report = tv::exactness_report(got, path, spec.rotation, plan.describe());
  EXPECT_TRUE(report.empty()) << report;
}

TEST(SampleFrames, DefaultSizeIsQwenSmartResize) {
  for (const char* name : {"h264_mp4_638x358", "h264_mp4_rotate90"}) {
    const tv::VideoSpec& spec = tv::matrix_spec(name);
    const std::string path = tv::make_video(spec);
    SamplingPlan plan = SamplingPlan::uniform(4);
    SampledFrames got = lvrl::video::sample_frames(path, plan, OutputSize{});
    ASSERT_EQ(got.frames.dim(), 4);
    const int64_t h = got.frames.size(1), w = got.frames.size(2);
    EXPECT_EQ(h % 28, 0) << name << ": " << got.frames.sizes();
    EXPECT_EQ(w % 28, 0) << name << ": " << got.frames.sizes();
    EXPECT_GE(h * w, OutputSize{}.min_pixels) << name;
    EXPECT_LE(h * w, OutputSize{}.max_pixels) << name;
    const OutputSize defaults;
    const auto [qwen_h, qwen_w] =
        lvrl::video::video_frame_size(spec.display_height(), spec.display_width(), 4, defaults.min_pixels,
                                      defaults.max_pixels, defaults.total_pixels);
    EXPECT_EQ(h, qwen_h) << name;
    EXPECT_EQ(w, qwen_w) << name;
    // The displayed aspect ratio survives (within one 28-pixel step each way).
    const double aspect = static_cast<double>(spec.display_width()) / spec.display_height();
    EXPECT_NEAR(static_cast<double>(w) / h, aspect, aspect * (28.0 / w + 28.0 / h)) << name;
    std::string report = tv::exactness_report(got, path, spec.rotation, plan.describe());
    EXPECT_TRUE(report.empty()) << report;
  }
}

TEST(SampleFrames, RotationGivesDisplayedDimensions) {
  const tv::VideoSpec& spec = tv::matrix_spec("h264_mp4_rotate90");
  const std::string path = tv::make_video(spec);
  OutputSize size = display_size(spec);  // 108 wide, 192 tall
  SampledFrames got = lvrl::video::sample_frames(path, SamplingPlan::uniform(5), size);
  EXPECT_EQ(got.info.rotation, 90);
  EXPECT_EQ(got.info.width, spec.height);
  EXPECT_EQ(got.info.height, spec.width);
  EXPECT_EQ(got.info.coded_width, spec.width);
  EXPECT_EQ(got.info.coded_height, spec.height);
  ASSERT_EQ(got.frames.sizes(), (std::vector<int64_t>{5, spec.width, spec.height, 3}));
  // Read knowing the picture was turned 90° clockwise: a transpose, a flip or a turn the other way
  // puts the blocks elsewhere and reads as another index (or none).
  std::string report = tv::exactness_report(got, path, spec.rotation, "uniform 5");
  EXPECT_TRUE(report.empty()) << report;
}

TEST(SampleFrames, KeyframeAccuracyReturnsKeyframesAtOrBeforeTargets) {
  const tv::VideoSpec& spec = tv::matrix_spec("h264_mkv_vfr");
  const std::string path = tv::make_video(spec);
  const tv::ReferenceFrames& reference = tv::reference_frames(path);
  lvrl::video::SampleOptions options;
  options.accuracy = lvrl::video::Accuracy::Keyframe;
  SampledFrames got = lvrl::video::sample_frames(path, SamplingPlan::uniform(6), display_size(spec), options);
  std::string report = tv::consistency_report(got, path, spec.rotation, "uniform 6 keyframe");
  EXPECT_TRUE(report.empty()) << report;
  const double* timestamps = got.timestamps.data_ptr<double>();
  for (size_t i = 0; i < got.targets.size(); ++i) {
    const int64_t frame = tv::frame_at_time(reference.times, timestamps[i]);
    ASSERT_GE(frame, 0) << path << " timestamp " << timestamps[i];
    EXPECT_TRUE(reference.key[frame]) << path << ": frame " << frame << " for target " << got.targets[i];
    EXPECT_LE(timestamps[i], std::max(got.targets[i], 0.0) + 1e-9) << path;
    // The nearest keyframe at or before: no keyframe between it and the target.
    for (int64_t k = frame + 1;
         k < static_cast<int64_t>(reference.times.size()) && reference.times[k] <= got.targets[i]; ++k) {
      EXPECT_FALSE(reference.key[k]) << path << ": keyframe " << k << " is nearer target " << got.targets[i];
    }
  }
}

}  // namespace
