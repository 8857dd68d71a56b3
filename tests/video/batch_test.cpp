// sample_many: 8 videos of mixed codecs and containers decoded concurrently give bit-identical
// frames and timestamps to one-at-a-time sample_frames, each frame-exact; a missing file in the
// batch fails alone, with an error naming it.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/video/test_videos.h"
#include "video/sampling.h"

namespace {
namespace tv = lvrl::testing_video;
using lvrl::video::BatchResult;
using lvrl::video::OutputSize;
using lvrl::video::SampledFrames;
using lvrl::video::SamplingPlan;

const std::vector<std::string> kBatch = {"h264_mp4_bframes_gop250", "h264_mkv_open_gop", "hevc_mp4_bframes",
                                         "hevc10_mkv_bframes",      "vp9_webm_altref",   "av1_mp4",
                                         "mpeg4_avi_bframes",       "h264_mp4_rotate90"};

std::vector<std::string> batch_paths() {
  std::vector<std::string> paths;
  for (const std::string& name : kBatch) paths.push_back(tv::make_video(tv::matrix_spec(name)));
  return paths;
}

OutputSize fixed_size() {
  OutputSize size;
  size.width = 112;
  size.height = 84;
  return size;
}

TEST(SampleMany, ConcurrentEqualsSequentialBitForBit) {
  const std::vector<std::string> paths = batch_paths();
  const SamplingPlan plan = SamplingPlan::uniform(12);
  std::vector<BatchResult> batch = tv::run_with_deadline(
      120, "sample_many of 8 videos", [&] { return lvrl::video::sample_many(paths, plan, fixed_size(), 4); });
  ASSERT_EQ(batch.size(), paths.size());
  for (size_t i = 0; i < paths.size(); ++i) {
    const tv::VideoSpec& spec = tv::matrix_spec(kBatch[i]);
    SCOPED_TRACE(spec.describe());
    EXPECT_EQ(batch[i].path, paths[i]) << "results come back in input order";
    ASSERT_TRUE(batch[i].ok) << batch[i].error;
    SampledFrames alone = lvrl::video::sample_frames(paths[i], plan, fixed_size());
    ASSERT_EQ(batch[i].sampled.frames.sizes(), alone.frames.sizes());
    EXPECT_TRUE(at::equal(batch[i].sampled.frames, alone.frames))
        << paths[i] << ": frames differ from sequential";
    EXPECT_TRUE(at::equal(batch[i].sampled.timestamps, alone.timestamps)) << paths[i];
    EXPECT_EQ(batch[i].sampled.targets, alone.targets);
    std::string report = tv::exactness_report(batch[i].sampled, paths[i], spec.rotation, "batch uniform 12");
    EXPECT_TRUE(report.empty()) << report;
  }
}

TEST(SampleMany, MissingFileFailsAloneAndIsNamed) {
  std::vector<std::string> paths = batch_paths();
  const std::string missing = tv::video_dir() + "/batch-missing-video.mp4";
  paths.insert(paths.begin() + 3, missing);
  const SamplingPlan plan = SamplingPlan::at_fps(2, 6);
  std::vector<BatchResult> batch = tv::run_with_deadline(120, "sample_many with a missing file", [&] {
    return lvrl::video::sample_many(paths, plan, fixed_size(), 8);
  });
  ASSERT_EQ(batch.size(), paths.size());
  for (size_t i = 0; i < paths.size(); ++i) {
    EXPECT_EQ(batch[i].path, paths[i]);
    if (paths[i] == missing) {
      EXPECT_FALSE(batch[i].ok);
      EXPECT_NE(batch[i].error.find(missing), std::string::npos) << batch[i].error;
      continue;
    }
    ASSERT_TRUE(batch[i].ok) << paths[i] << ": " << batch[i].error;
    const int rotation = tv::matrix_spec(kBatch[i < 3 ? i : i - 1]).rotation;
    std::string report = tv::exactness_report(batch[i].sampled, paths[i], rotation, plan.describe());
    EXPECT_TRUE(report.empty()) << report;
  }
}

}  // namespace
