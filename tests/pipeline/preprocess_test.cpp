// `lvrl preprocess` end to end: the real binary over a private redis-server, a tiny Qwen2.5-VL
// checkpoint and synthetic videos, plus the inputs it must report and skip (missing, truncated,
// too short). Checks the summary, that the cache holds exactly the keys of the good videos, that a
// cached embedding is what the model computes in-process from the same frames, and that a run
// killed after its first commit resumes to the same key set, skipping what was committed. Under
// `lvrl sp launch --nproc 2` the same dataset gives the same keys and rows (frames split over the
// ranks), one summary, and a rank-0 failure stops both ranks.
#include "pipeline/preprocess.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cache/content_key.h"
#include "cache/embedding_cache.h"
#include "core/config.h"
#include "core/hash.h"
#include "core/tensor_compare.h"
#include "model/qwen_vl.h"
#include "model/weights.h"
#include "tests/cache/redis_test_support.h"
#include "tests/support/files.h"
#include "tests/support/run_process.h"
#include "tests/video/test_videos.h"

namespace lvrl::pipeline {
namespace {
using cache::EmbeddingCache;
namespace tv = testing_video;

struct Invocation {
  int exit_code = -1;  // 128 + signal when killed by one; -1 when stopped at the time limit
  std::string out, err;
  nlohmann::json summary;  // the last stdout line, when it is JSON
};

// `lvrl ARGS...` started now, stdout and stderr apart. One still running after 120 s is stopped, so
// a deadlocked run fails its test instead of hanging it.
std::unique_ptr<test::Process> start_lvrl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {test::lvrl_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  test::ProcessOptions options;
  options.separate_stderr = true;
  options.timeout_s = 120;
  return std::make_unique<test::Process>(argv, options);
}

Invocation collect(test::Process& process) {
  const test::ProcessResult result = process.wait();
  Invocation run;
  run.exit_code = result.exit_code;
  run.out = result.output;
  run.err = result.error_output;
  size_t end = run.out.find_last_not_of('\n');
  if (end != std::string::npos) {
    size_t begin = run.out.rfind('\n', end);
    std::string last = run.out.substr(begin == std::string::npos ? 0 : begin + 1,
                                      end + 1 - (begin == std::string::npos ? 0 : begin + 1));
    run.summary = nlohmann::json::parse(last, nullptr, /*allow_exceptions=*/false);
  }
  return run;
}

class PreprocessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The checkpoint: a tiny model, weights from a fixed seed. Tokenizer files are not needed.
    model::QwenVL model(model::QwenConfig::preset("tiny"));
    model::init_weights(*model, 7);
    model_dir_ = work_.file("model");
    model::save_model(*model, model_dir_);

    // Four good videos (distinct bytes), one named by two records, and three that must fail.
    for (tv::VideoSpec spec :
         {tv::VideoSpec{"pre_a"}, tv::VideoSpec{"pre_b"}, tv::VideoSpec{"pre_c"}, tv::VideoSpec{"pre_d"}}) {
      if (spec.name == "pre_b") spec.frames = 90, spec.width = 176, spec.height = 112;
      if (spec.name == "pre_c") spec.frames = 48, spec.rate = "24";
      if (spec.name == "pre_d") spec.frames = 75, spec.width = 128, spec.height = 128, spec.gop = 10;
      good_.push_back(tv::make_video(spec));
    }
    tv::VideoSpec short_spec{"pre_short"};
    short_spec.frames = 1;
    short_ = tv::make_video(short_spec);
    std::string bytes = test::read_file(good_[0]);
    truncated_ = tv::write_file("pre_truncated.mp4", bytes.substr(0, bytes.size() * 2 / 5));
    missing_ = tv::video_dir() + "/pre_missing.mp4";

    auto name = [](const std::string& path) { return path.substr(path.rfind('/') + 1); };
    std::ofstream dataset(work_.file("dataset.jsonl"));
    const std::vector<std::pair<std::string, std::string>> records = {
        {"a", name(good_[0])},           {"missing", "pre_missing.mp4"}, {"b", name(good_[1])},
        {"truncated", name(truncated_)}, {"c", name(good_[2])},          {"a2", name(good_[0])},
        {"short", name(short_)},         {"d", name(good_[3])}};
    for (const auto& [id, video] : records) {
      dataset << nlohmann::json{{"id", id}, {"video", video}, {"question", "What is shown?"}, {"answer", "A"}}
                     .dump()
              << "\n";
    }
    dataset.close();
    config_path_ = work_.file("preprocess.yaml");
    std::ofstream(config_path_) << "log:\n  level: warn\n"
                                << "data:\n  path: " << work_.file("dataset.jsonl")
                                << "\n  video_dir: " << tv::video_dir() << "\nmodel:\n  path: " << model_dir_
                                << "\n"
                                << "redis:\n  cache_url: \"" << server_.endpoint().url() << "\"\n"
                                << "preprocess:\n  min_pixels: 3136\n  max_pixels: 12544\n  threads: 1\n";
  }

  std::vector<std::string> args(const std::string& ns) const {
    return {"preprocess", "--config", config_path_, "redis.namespace=" + ns};
  }

  Invocation preprocess(const std::string& ns) { return collect(*start_lvrl(args(ns))); }

  // `lvrl sp launch --nproc N -- lvrl preprocess ...`, with `overrides` after the namespace.
  Invocation preprocess_on_ranks(const std::string& ns, int nproc,
                                 const std::vector<std::string>& overrides = {}) {
    std::vector<std::string> launch = {"sp", "launch",           "--nproc", std::to_string(nproc),
                                       "--", test::lvrl_binary()};
    for (const std::string& arg : args(ns)) launch.push_back(arg);
    launch.insert(launch.end(), overrides.begin(), overrides.end());
    return collect(*start_lvrl(launch));
  }

  EmbeddingCache cache(const std::string& ns) {
    cache::EmbeddingCacheOptions options;
    options.ns = ns;
    return EmbeddingCache(server_.endpoint(), options, cache::testing::quick_options());
  }

  std::set<std::string> keys(const std::string& ns) {
    std::set<std::string> out;
    for (const cache::CacheEntry& entry : cache(ns).list()) {
      EXPECT_EQ(entry.problem, "") << entry.key;
      out.insert(entry.key);
    }
    return out;
  }

  // The recipe exactly as the binary resolves it from the same config.
  VideoRecipe recipe() const { return preprocess_options_from(Config::load(config_path_)).recipe; }

  std::string fingerprint_of(model::QwenVLImpl& model) const {
    std::map<std::string, at::Tensor> visual;
    for (const auto& [name, tensor] : model::state_dict(model)) {
      if (name.rfind("visual.", 0) == 0) visual.emplace(name, tensor);
    }
    return cache::encoder_fingerprint(visual);
  }

  std::set<std::string> expected_keys(const std::string& fingerprint) const {
    std::set<std::string> out;
    for (const std::string& path : good_)
      out.insert(video_embedding_key(hash_file(path), recipe(), fingerprint));
    return out;
  }

  static void expect_failures(const nlohmann::json& summary) {
    std::map<std::string, std::string> reasons;  // first record id → reason
    for (const auto& failure : summary["failures"]) reasons[failure["records"][0]] = failure["reason"];
    ASSERT_EQ(reasons.size(), 3u) << summary.dump(2);
    EXPECT_EQ(reasons["missing"], "no such file");
    EXPECT_NE(reasons["truncated"].find("cannot open as a media file"), std::string::npos)
        << reasons["truncated"];
    EXPECT_NE(reasons["short"].find("too short"), std::string::npos) << reasons["short"];
  }

  TempDir work_{"lvrl-preprocess"};
  cache::testing::TestServer server_;
  std::string model_dir_, config_path_, short_, truncated_, missing_;
  std::vector<std::string> good_;
};

TEST_F(PreprocessTest, CachesGoodVideosReportsTheRestAndMatchesTheModel) {
  Invocation run = preprocess("full");
  ASSERT_EQ(run.exit_code, 3) << run.out << run.err;  // 3: finished, some videos failed
  const nlohmann::json& s = run.summary;
  ASSERT_TRUE(s.is_object()) << run.out;
  EXPECT_EQ(s["records"], 8);
  EXPECT_EQ(s["videos"], 7);  // "a" and "a2" share a video
  EXPECT_EQ(s["cached"], 4);
  EXPECT_EQ(s["skipped"], 0);
  EXPECT_EQ(s["failed"], 3);
  expect_failures(s);
  EXPECT_NE(run.out.find("failed: " + missing_ + " (record missing): no such file"), std::string::npos)
      << run.out;

  model::QwenVL model = model::load_model(model_dir_, at::kFloat, at::kCPU);
  const std::string fingerprint = fingerprint_of(*model);
  EXPECT_EQ(s["encoder_fingerprint"], fingerprint);
  EXPECT_EQ(keys("full"), expected_keys(fingerprint));

  // The first video's embedding against encode_video on the same frames, computed here.
  const std::string key = video_embedding_key(hash_file(good_[0]), recipe(), fingerprint);
  std::optional<cache::CachedEmbedding> hit = cache("full").get(key);
  ASSERT_TRUE(hit.has_value());
  PreparedVideo prepared = prepare_video(good_[0], recipe());
  at::Tensor expected;
  {
    at::NoGradGuard no_grad;
    expected = model->encode_video(prepared.patches.pixel_values, {prepared.patches.grid_thw});
  }
  ASSERT_EQ(hit->tensor.sizes(), expected.sizes());
  EXPECT_LE(max_relative_difference(hit->tensor, expected), 1e-5);
  const cache::EmbeddingMetadata& metadata = hit->manifest.metadata;
  EXPECT_EQ(metadata.grid_thw, (std::vector<int64_t>{2, 6, 10}));  // 84×140 frames (smart_resize), 4 frames
  EXPECT_EQ(metadata.encoder_fingerprint, fingerprint);
  // qwen-vl-utils on 60 frames at 30 fps, fps 2: n = 4, round(linspace(0, 59, 4)) = 0, 20, 39, 59.
  const std::vector<double> expected_times = {0.0, 20 / 30.0, 39 / 30.0, 59 / 30.0};
  ASSERT_EQ(metadata.frame_timestamps.size(), expected_times.size());
  for (size_t i = 0; i < expected_times.size(); ++i)
    EXPECT_NEAR(metadata.frame_timestamps[i], expected_times[i], 1e-3);
  EXPECT_EQ(metadata.extra.at("sample_fps"), "2");

  // Everything good is cached now: a rerun encodes nothing and still reports the failures.
  Invocation again = preprocess("full");
  EXPECT_EQ(again.exit_code, 3) << again.out << again.err;
  EXPECT_EQ(again.summary["cached"], 0);
  EXPECT_EQ(again.summary["skipped"], 4);
  EXPECT_EQ(again.summary["failed"], 3);
}

TEST_F(PreprocessTest, ResumeAfterKillProducesTheSameKeys) {
  Invocation whole = preprocess("whole");
  ASSERT_EQ(whole.exit_code, 3) << whole.out << whole.err;
  const std::set<std::string> reference = keys("whole");
  ASSERT_EQ(reference.size(), 4u);

  // Kill (SIGKILL) once the first entry is committed and before the last. A run can outpace the
  // polling on a fast machine: then try again in a fresh namespace.
  std::string ns;
  size_t committed = 0;
  int attempt = 0;
  for (; attempt < 5 && committed == 0; ++attempt) {
    ns = "killed" + std::to_string(attempt);
    std::vector<std::string> slow = args(ns);  // one video at a time: more time between commits
    slow.insert(slow.end(), {"preprocess.decode_threads=1", "preprocess.decode_ahead=1"});
    const std::unique_ptr<test::Process> process = start_lvrl(slow);
    EmbeddingCache watcher = cache(ns);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (watcher.list().empty() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ::kill(process->pid(), SIGKILL);
    Invocation killed = collect(*process);
    const size_t present = keys(ns).size();
    if (killed.exit_code == 128 + SIGKILL && present >= 1 && present < reference.size()) committed = present;
  }
  ASSERT_GE(committed, 1u) << "every attempt finished before the kill";
  std::cout << "killed with " << committed << " of " << reference.size() << " entries committed (attempt "
            << attempt << ")\n";

  Invocation resumed = preprocess(ns);
  ASSERT_EQ(resumed.exit_code, 3) << resumed.out << resumed.err;
  EXPECT_EQ(resumed.summary["skipped"], committed) << resumed.out;
  EXPECT_EQ(resumed.summary["cached"], reference.size() - committed) << resumed.out;
  EXPECT_EQ(resumed.summary["failed"], 3);
  expect_failures(resumed.summary);
  EXPECT_EQ(keys(ns), reference);
  // Every entry reads back whole (the killed put left no half entry behind).
  EmbeddingCache reader = cache(ns);
  for (const std::string& key : reference) EXPECT_EQ(reader.verify(key, false), "") << key;
}

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

TEST_F(PreprocessTest, TwoRanksCacheWhatOneRankCaches) {
  Invocation one = preprocess("one_rank");
  ASSERT_EQ(one.exit_code, 3) << one.out << one.err;
  Invocation two = preprocess_on_ranks("two_ranks", 2);
  ASSERT_EQ(two.exit_code, 3) << two.out << two.err;  // rank 0's status, passed on by the launcher
  const nlohmann::json& s = two.summary;
  ASSERT_TRUE(s.is_object()) << two.out;
  EXPECT_EQ(s["records"], 8);
  EXPECT_EQ(s["videos"], 7);
  EXPECT_EQ(s["cached"], 4);
  EXPECT_EQ(s["skipped"], 0);
  EXPECT_EQ(s["failed"], 3);  // decided on rank 0 alone: the other rank never hears of them
  expect_failures(s);
  EXPECT_EQ(s["encoder_fingerprint"], one.summary["encoder_fingerprint"]);
  // One summary for the run, from rank 0.
  EXPECT_EQ(count(two.out, "preprocess: 8 records"), 1u) << two.out;
  EXPECT_EQ(count(two.out, "\"command\":\"preprocess\""), 1u) << two.out;

  // The same keys (the content key does not depend on the rank count), the same rows.
  const std::set<std::string> reference = keys("one_rank");
  ASSERT_EQ(reference.size(), 4u);
  ASSERT_EQ(keys("two_ranks"), reference);
  EmbeddingCache single = cache("one_rank"), sharded = cache("two_ranks");
  double worst = 0;
  for (const std::string& key : reference) {
    std::optional<cache::CachedEmbedding> expected = single.get(key), got = sharded.get(key);
    ASSERT_TRUE(expected.has_value() && got.has_value()) << key;
    ASSERT_EQ(got->tensor.sizes(), expected->tensor.sizes()) << key;
    EXPECT_EQ(got->tensor.scalar_type(), at::kFloat);
    EXPECT_EQ(got->manifest.metadata.grid_thw, expected->manifest.metadata.grid_thw) << key;
    const double relative = max_relative_difference(got->tensor, expected->tensor);
    EXPECT_LE(relative, 1e-5) << key;  // float32; only the matmuls' row blocking differs
    worst = std::max(worst, relative);
  }
  std::cout << "2 ranks vs 1: largest relative difference " << worst << " over " << reference.size()
            << " videos\n";
}

TEST_F(PreprocessTest, TwoRanksStopTogetherWhenRankZeroFails) {
  // The dataset cannot be read: rank 0 fails after the ranks met; the other rank must hear stop
  // and return instead of waiting for a video.
  Invocation run = preprocess_on_ranks("rank0_fails", 2, {"data.path=" + work_.file("no_such.jsonl")});
  EXPECT_EQ(run.exit_code, 2) << run.out << run.err;  // -1 would mean a rank hung
  EXPECT_NE(run.err.find("no_such.jsonl"), std::string::npos) << run.err;
  EXPECT_EQ(run.out, "") << "no summary from a run that did not start";
}

// A video with a damaged GOP: qwen-vl-utils picks frames 0, 20, 39, 59 of its 60; frame 5 is
// flipped, so frames 5..29 do not decode (worked out by hand: no B-frames, keyframes every 30).
// Frame 20's stand-in is frame 4 under `previous` and frame 30 under `nearest` (10 frames away
// against 16); `error` fails the video naming the span; `drop` is refused (exit 2, naming the key).
// Each policy is its own cache key, and the manifest marks the stand-in.
TEST_F(PreprocessTest, DamagedFramesFollowVideoOnDamage) {
  tv::VideoSpec spec{"pre_damaged"};
  spec.gop = 30;
  const tv::DamagedVideo damaged = tv::damage_frames(tv::make_video(spec), {5}, "pre_damaged_gop0.mp4", 99);
  ASSERT_EQ(damaged.spans, (std::vector<std::pair<int, int>>{{5, 30}}));
  const std::string dataset = work_.file("damaged.jsonl");
  std::ofstream(dataset) << nlohmann::json{{"id", "dmg"},
                                           {"video", damaged.path.substr(damaged.path.rfind('/') + 1)},
                                           {"question", "What is shown?"},
                                           {"answer", "A"}}
                                .dump()
                         << "\n";
  auto run = [&](const std::string& policy) {
    std::vector<std::string> argv = args("damage_" + policy);
    argv.insert(argv.end(), {"data.path=" + dataset, "video.on_damage=" + policy});
    return collect(*start_lvrl(argv));
  };
  std::map<std::string, std::string> key_of;
  for (const auto& [policy, stand_in] :
       std::vector<std::pair<std::string, int>>{{"previous", 4}, {"nearest", 30}}) {
    Invocation done = run(policy);
    ASSERT_EQ(done.exit_code, 0) << policy << "\n" << done.out << done.err;
    const std::vector<cache::CacheEntry> entries = cache("damage_" + policy).list();
    ASSERT_EQ(entries.size(), 1u) << policy;
    key_of[policy] = entries[0].key;
    ASSERT_TRUE(entries[0].manifest.has_value()) << policy;
    const cache::EmbeddingMetadata& metadata = entries[0].manifest->metadata;
    const nlohmann::json records = nlohmann::json::parse(metadata.extra.at("frame_records"));
    const std::vector<int> targets = {0, 20, 39, 59}, frames = {0, stand_in, 39, 59};
    ASSERT_EQ(records.size(), targets.size()) << records.dump();
    for (size_t i = 0; i < targets.size(); ++i) {
      EXPECT_NEAR(records[i]["target"].get<double>(), targets[i] / 30.0, 1e-6) << policy << " " << i;
      EXPECT_NEAR(records[i]["time"].get<double>(), frames[i] / 30.0, 1e-3) << policy << " " << i;
      EXPECT_EQ(records[i]["damaged"].get<bool>(), targets[i] == 20) << policy << " " << i;
      EXPECT_NEAR(metadata.frame_timestamps[i], frames[i] / 30.0, 1e-3) << policy << " " << i;
    }
    EXPECT_NE(done.err.find("stand in for frames that do not decode"), std::string::npos) << done.err;
  }
  EXPECT_NE(key_of["previous"], key_of["nearest"]);

  Invocation refused = run("error");
  EXPECT_EQ(refused.exit_code, 3) << refused.out << refused.err;
  ASSERT_EQ(refused.summary["failures"].size(), 1u) << refused.out;
  const std::string reason = refused.summary["failures"][0]["reason"];
  EXPECT_NE(reason.find("0.167 s to 1.000 s"), std::string::npos) << reason;
  EXPECT_NE(refused.out.find(damaged.path), std::string::npos) << refused.out;
  EXPECT_TRUE(keys("damage_error").empty());

  Invocation dropped = run("drop");
  EXPECT_EQ(dropped.exit_code, 2) << dropped.out << dropped.err;
  EXPECT_NE(dropped.err.find("video.on_damage"), std::string::npos) << dropped.err;
}

// The policy is part of the sampling description, hence of every cache key.
TEST(VideoRecipe, OnDamagePolicyIsPartOfTheKey) {
  std::set<std::string> keys, descriptions;
  const Hash128 video_hash = hash_string("some video bytes");
  for (video::OnDamage policy :
       {video::OnDamage::Previous, video::OnDamage::Nearest, video::OnDamage::Error}) {
    VideoRecipe recipe;
    recipe.on_damage = policy;
    descriptions.insert(recipe.sampling_description());
    EXPECT_NE(recipe.sampling_description().find(std::string("on damage ") + video::on_damage_name(policy)),
              std::string::npos)
        << recipe.sampling_description();
    keys.insert(video_embedding_key(video_hash, recipe, "fingerprint"));
  }
  EXPECT_EQ(keys.size(), 3u);
  EXPECT_EQ(descriptions.size(), 3u);
  VideoRecipe drop;
  drop.on_damage = video::OnDamage::Drop;
  try {
    drop.check();
    ADD_FAILURE() << "drop accepted by preprocess";
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), "video.on_damage");
  }
}

}  // namespace
}  // namespace lvrl::pipeline
