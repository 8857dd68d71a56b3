// get_or_encode (pipeline/video_rows.h) over a private redis-server with a tiny Qwen2.5-VL vision
// tower and synthetic videos: a miss encodes and stores, a hit returns the same rows, grid and frame
// times, both equal to the encoder run directly on prepare_video's patches (frame times against
// ffprobe's); `lvrl preprocess` and get_or_encode find each other's entries; a missing video is an
// InputError naming it; on two real Gloo ranks both ranks return the rows one rank computes.
#include "pipeline/video_rows.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "cache/embedding_cache.h"
#include "core/config.h"
#include "core/error.h"
#include "core/temp_dir.h"
#include "model/qwen_vl.h"
#include "model/weights.h"
#include "pipeline/preprocess.h"
#include "pipeline/sharded_encoder.h"
#include "sp/mesh.h"
#include "tests/cache/redis_test_support.h"
#include "tests/support/multi_rank.h"
#include "tests/support/run_process.h"
#include "tests/video/test_videos.h"

namespace lvrl::pipeline {
namespace {
namespace tv = testing_video;

// The tower every test (and every rank) builds: the tiny preset's, weights from a fixed seed.
VisionEncoder tiny_encoder() {
  model::QwenVL model(model::QwenConfig::preset("tiny"));
  model::init_weights(*model, 7);
  return VisionEncoder(model->visual, at::kFloat, at::kCPU);
}

// Small frames, so the tower runs in a fraction of a second: 84×140 for the default 160×96 clip.
VideoRecipe small_recipe() {
  VideoRecipe recipe;
  recipe.min_pixels = 3136;
  recipe.max_pixels = 12544;
  return recipe;
}

data::Sample sample_of(const std::string& video) {
  data::Sample sample;
  sample.id = "q1";
  sample.video = video;
  return sample;
}

double relative_difference(const at::Tensor& got, const at::Tensor& expected) {
  const at::Tensor a = got.to(at::kDouble), b = expected.to(at::kDouble);
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

cache::EmbeddingCache cache_for(const cache::RedisEndpoint& endpoint, const std::string& ns) {
  cache::EmbeddingCacheOptions options;
  options.ns = ns;
  return cache::EmbeddingCache(endpoint, options, cache::testing::quick_options());
}

std::set<std::string> keys_of(cache::EmbeddingCache& cache) {
  std::set<std::string> out;
  for (const cache::CacheEntry& entry : cache.list()) out.insert(entry.key);
  return out;
}

class VideoRowsTest : public ::testing::Test {
 protected:
  cache::testing::TestServer server_;
};

TEST_F(VideoRowsTest, AMissThenAHitGiveTheEncodersRowsGridAndFrameTimes) {
  const std::string video = tv::make_video(tv::VideoSpec{"rows_a"});  // 60 frames at 30 fps, 160×96
  VisionEncoder encoder = tiny_encoder();
  cache::EmbeddingCache cache = cache_for(server_.endpoint(), "miss_hit");
  const VideoRecipe recipe = small_recipe();

  VideoRows miss = get_or_encode(sample_of(video), recipe, encoder, cache);
  VideoRows hit = get_or_encode(sample_of(video), recipe, encoder, cache);
  EXPECT_FALSE(miss.hit);
  EXPECT_TRUE(hit.hit);
  EXPECT_EQ(keys_of(cache), std::set<std::string>{miss.key});
  EXPECT_EQ(hit.key, miss.key);

  // The reference: the encoder on prepare_video's patches, in this process.
  VideoRecipe direct_recipe = recipe;
  direct_recipe.vision = encoder.vision_params();
  const PreparedVideo prepared = prepare_video(video, direct_recipe);
  const at::Tensor expected = encoder.encode(prepared.patches);
  for (const VideoRows* rows : {&miss, &hit}) {
    SCOPED_TRACE(rows->hit ? "hit" : "miss");
    ASSERT_EQ(rows->rows.sizes(), expected.sizes());
    EXPECT_EQ(rows->rows.scalar_type(), at::kFloat);
    EXPECT_TRUE(rows->rows.device().is_cpu());
    EXPECT_LE(relative_difference(rows->rows, expected), 1e-6);
    EXPECT_EQ(rows->grid_thw, (model::GridTHW{2, 6, 10}));  // 4 frames of 84×140 (smart_resize)
    // qwen-vl-utils on 60 frames at 30 fps, fps 2: n = 4, round(linspace(0, 59, 4)) = 0, 20, 39, 59;
    // their real times from ffprobe.
    const std::vector<double> reference = tv::frame_times(video);
    const std::vector<double> expected_times = {reference[0], reference[20], reference[39], reference[59]};
    ASSERT_EQ(rows->frame_timestamps.size(), expected_times.size());
    for (size_t i = 0; i < expected_times.size(); ++i)
      EXPECT_NEAR(rows->frame_timestamps[i], expected_times[i], 1e-6) << i;
    EXPECT_EQ(rows->second_per_grid_t, 1.0);  // temporal patch 2 / sample fps 2
  }
  // The hit is the stored miss, bit for bit.
  EXPECT_TRUE(hit.rows.equal(miss.rows));
  EXPECT_EQ(hit.grid_thw, miss.grid_thw);
  EXPECT_EQ(hit.frame_timestamps, miss.frame_timestamps);
  EXPECT_EQ(hit.second_per_grid_t, miss.second_per_grid_t);
}

// On variable-rate video the frames' real times differ from the times qwen-vl-utils' indices ask
// for: the rows come with the real ones, on a miss and on a hit.
TEST_F(VideoRowsTest, FrameTimesAreTheSampledFramesRealTimes) {
  tv::VideoSpec spec{"rows_vfr"};
  spec.vfr = true;  // every 7th frame interval is 4 periods long
  const std::string video = tv::make_video(spec);
  VisionEncoder encoder = tiny_encoder();
  cache::EmbeddingCache cache = cache_for(server_.endpoint(), "vfr");
  VideoRows miss = get_or_encode(sample_of(video), small_recipe(), encoder, cache);
  VideoRows hit = get_or_encode(sample_of(video), small_recipe(), encoder, cache);
  ASSERT_TRUE(hit.hit);
  EXPECT_EQ(hit.frame_timestamps, miss.frame_timestamps);
  const std::vector<double> reference = tv::frame_times(video);  // ffprobe
  VideoRecipe recipe = small_recipe();
  recipe.vision = encoder.vision_params();
  const std::vector<double> targets = prepare_video(video, recipe).pick.times;
  ASSERT_EQ(hit.frame_timestamps.size(), targets.size());
  int differ = 0;
  for (size_t i = 0; i < targets.size(); ++i) {
    // The frame for target t is the last whose pts <= t.
    const double expected = reference[tv::expected_frame(reference, targets[i])];
    EXPECT_NEAR(hit.frame_timestamps[i], expected, 1e-6) << "frame " << i << " target " << targets[i];
    differ += std::abs(expected - targets[i]) > 1e-3;
  }
  EXPECT_GT(differ, 0) << "no sampled frame's time differs from its target: the check above checks nothing";
}

TEST_F(VideoRowsTest, AMissingVideoIsAnInputErrorNamingIt) {
  VisionEncoder encoder = tiny_encoder();
  cache::EmbeddingCache cache = cache_for(server_.endpoint(), "missing");
  const std::string missing = tv::video_dir() + "/rows_missing.mp4";
  try {
    get_or_encode(sample_of(missing), small_recipe(), encoder, cache);
    ADD_FAILURE() << "no error for a missing video";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), missing) << e.what();
  }
  EXPECT_TRUE(keys_of(cache).empty());
}

// `lvrl preprocess` (the binary) and get_or_encode: one key derivation, one metadata layout.
TEST_F(VideoRowsTest, PreprocessAndGetOrEncodeServeEachOther) {
  TempDir work("lvrl_video_rows");
  model::QwenVL model(model::QwenConfig::preset("tiny"));
  model::init_weights(*model, 7);
  const std::string model_dir = work.file("model");
  model::save_model(*model, model_dir);
  tv::VideoSpec second{"rows_b"};
  second.frames = 48, second.rate = "24";
  const std::string first_video = tv::make_video(tv::VideoSpec{"rows_a"}),
                    second_video = tv::make_video(second);
  auto name = [](const std::string& path) { return path.substr(path.rfind('/') + 1); };
  std::ofstream dataset(work.file("dataset.jsonl"));
  for (const auto& [id, video] : {std::pair{"a", first_video}, std::pair{"b", second_video}}) {
    dataset
        << nlohmann::json{{"id", id}, {"video", name(video)}, {"question", "What?"}, {"answer", "A"}}.dump()
        << "\n";
  }
  dataset.close();
  const std::string config_path = work.file("preprocess.yaml");
  std::ofstream(config_path) << "log:\n  level: warn\ndata:\n  path: " << work.file("dataset.jsonl")
                             << "\n  video_dir: " << tv::video_dir() << "\nmodel:\n  path: " << model_dir
                             << "\nredis:\n  cache_url: \"" << server_.endpoint().url()
                             << "\"\n  namespace: both\n"
                             << "preprocess:\n  min_pixels: 3136\n  max_pixels: 12544\n  threads: 1\n";
  const VideoRecipe recipe = preprocess_options_from(Config::load(config_path)).recipe;
  VisionEncoder encoder = VisionEncoder::load(model_dir, at::kFloat, at::kCPU);
  cache::EmbeddingCache cache = cache_for(server_.endpoint(), "both");

  // The second video first, through get_or_encode: preprocess must then skip it.
  VideoRows second_rows = get_or_encode(sample_of(second_video), recipe, encoder, cache);
  EXPECT_FALSE(second_rows.hit);
  test::ProcessOptions options;
  options.separate_stderr = true;
  test::ProcessResult run = test::run_lvrl({"preprocess", "--config", config_path}, options);
  ASSERT_EQ(run.exit_code, 0) << run.output << run.error_output;
  const std::string out = run.output.substr(0, run.output.find_last_not_of('\n') + 1);
  const nlohmann::json summary = nlohmann::json::parse(out.substr(out.rfind('\n') + 1));  // the last line
  EXPECT_EQ(summary["cached"], 1) << run.output;
  EXPECT_EQ(summary["skipped"], 1) << run.output;

  // The first video preprocess stored: a hit under the key preprocess chose.
  std::set<std::string> preprocess_keys = keys_of(cache);
  ASSERT_EQ(preprocess_keys.size(), 2u);
  preprocess_keys.erase(second_rows.key);
  ASSERT_EQ(preprocess_keys.size(), 1u);
  VideoRows first_rows = get_or_encode(sample_of(first_video), recipe, encoder, cache);
  EXPECT_TRUE(first_rows.hit);
  EXPECT_EQ(first_rows.key, *preprocess_keys.begin());
  EXPECT_EQ(first_rows.grid_thw, (model::GridTHW{2, 6, 10}));
  EXPECT_EQ(first_rows.frame_timestamps.size(), 4u);
  EXPECT_EQ(first_rows.second_per_grid_t, 1.0);
  const PreparedVideo prepared = prepare_video(first_video, recipe);
  EXPECT_LE(relative_difference(first_rows.rows, encoder.encode(prepared.patches)), 1e-6);
}

// ---- Two ranks ------------------------------------------------------------------------------------

TEST(VideoRowsWorker, EveryRankGetsTheRows) {
  LVRL_RANK_WORKER_ONLY();
  const sp::DistributedEnv env = sp::DistributedEnv::from_environment();
  auto mesh = sp::Mesh::create(env, {env.world_size, 0, 0}, c10::kCPU);
  VisionEncoder encoder = tiny_encoder();
  agree_on_setup(*mesh, encoder.fingerprint(), nullptr);
  cache::EmbeddingCache cache =
      cache_for(cache::RedisEndpoint::parse(test::worker_env("CACHE_URL")), "two_ranks");
  const std::string video = test::worker_env("VIDEO");
  const VideoRecipe recipe = small_recipe();

  VideoRows miss = get_or_encode(sample_of(video), recipe, encoder, cache, mesh.get());
  VideoRows hit = get_or_encode(sample_of(video), recipe, encoder, cache, mesh.get());
  EXPECT_FALSE(miss.hit);
  EXPECT_TRUE(hit.hit);
  EXPECT_EQ(hit.key, miss.key);
  EXPECT_TRUE(hit.rows.equal(miss.rows));
  EXPECT_EQ(hit.grid_thw, (model::GridTHW{2, 6, 10}));
  EXPECT_EQ(hit.frame_timestamps, miss.frame_timestamps);
  EXPECT_EQ(hit.second_per_grid_t, 1.0);
  VideoRecipe direct_recipe = recipe;
  direct_recipe.vision = encoder.vision_params();
  const at::Tensor expected = encoder.encode(prepare_video(video, direct_recipe).patches);
  ASSERT_EQ(miss.rows.sizes(), expected.sizes());
  const double relative = relative_difference(miss.rows, expected);
  EXPECT_LE(relative, 1e-5);  // float32; only the matmuls' row blocking differs from one rank's encode

  // A missing video: an InputError naming it on both ranks, and both ready for the next call.
  const std::string missing = tv::video_dir() + "/rows_missing.mp4";
  try {
    get_or_encode(sample_of(missing), recipe, encoder, cache, mesh.get());
    ADD_FAILURE() << "no error for a missing video";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  EXPECT_TRUE(get_or_encode(sample_of(video), recipe, encoder, cache, mesh.get()).hit);
  test::write_result(fmt::format("{} {:.3g}", miss.key, relative));
}

TEST_F(VideoRowsTest, TwoRanksReturnWhatOneRankComputes) {
  const std::string video = tv::make_video(tv::VideoSpec{"rows_a"});
  test::RankRun run = test::run_ranks(2, "VideoRowsWorker.EveryRankGetsTheRows",
                                      {{"CACHE_URL", server_.endpoint().url()}, {"VIDEO", video}});
  ASSERT_TRUE(test::ranks_succeeded(run));
  std::cout << "rank 0: " << run.results[0] << "\nrank 1: " << run.results[1] << "\n";
  // The entry the ranks stored is the one a single process finds: the key does not name the ranks.
  cache::EmbeddingCache cache = cache_for(server_.endpoint(), "two_ranks");
  VisionEncoder encoder = tiny_encoder();
  VideoRows alone = get_or_encode(sample_of(video), small_recipe(), encoder, cache);
  EXPECT_TRUE(alone.hit);
  EXPECT_EQ(run.results[0].substr(0, alone.key.size()), alone.key);
  EXPECT_EQ(run.results[1].substr(0, alone.key.size()), alone.key);
}

}  // namespace
}  // namespace lvrl::pipeline
