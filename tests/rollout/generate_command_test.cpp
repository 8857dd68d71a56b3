// `lvrl generate` as a user runs it: a tiny checkpoint with the real Qwen tokenizer, a synthetic video,
// the embedding cache filled by `lvrl preprocess` on a private redis-server. Checked: the output's
// shape and seeds; the video file and its cache entry (the key derived here independently) give the
// same greedy answer; two sequence-parallel ranks give one rank's greedy answer and log-probs
// (within 1e-5); a long prompt shows prefill progress; bad flags name themselves.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/hash.h"
#include "core/temp_dir.h"
#include "model/weights.h"
#include "pipeline/preprocess.h"
#include "pipeline/video_entry.h"
#include "pipeline/vision_encoder.h"
#include "tests/cache/redis_test_support.h"
#include "tests/rollout/engine_support.h"
#include "tests/support/run_process.h"
#include "tests/video/test_videos.h"

namespace lvrl::rollout {
namespace {

namespace fs = std::filesystem;
namespace tv = testing_video;

std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(nlohmann::json::parse(text.substr(start, end - start)));
    start = end + 1;
  }
  return out;
}

class GenerateCommand : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work_ = new TempDir("lvrl-generate");
    model_dir_ = work_->file("model");
    model::QwenVL model = testing_rollout::preset_model("tiny", 21);
    model::save_model(*model, model_dir_);
    for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
      fs::copy_file(fs::path(testing_model::qwen_model_dir()) / name, fs::path(model_dir_) / name);
    }
    video_ = tv::make_video(tv::VideoSpec{"generate_a"});
    config_ = work_->file("run.yaml");
    std::ofstream(config_) << "log:\n  level: warn\n"
                           << "preprocess:\n  min_pixels: 3136\n  max_pixels: 12544\n"
                           << "rollout:\n  prefill_chunk: 16\n";
  }
  static void TearDownTestSuite() {
    delete work_;
    work_ = nullptr;
  }

  static std::vector<std::string> base(const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"generate",    "--model",    model_dir_,    "--config",
                                     config_,       "--question", "What moves?", "--option",
                                     "A. a square", "--option",   "B. nothing"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  static TempDir* work_;
  static std::string model_dir_, video_, config_;
};
TempDir* GenerateCommand::work_ = nullptr;
std::string GenerateCommand::model_dir_, GenerateCommand::video_, GenerateCommand::config_;

TEST_F(GenerateCommand, PrintsOneLinePerAnswerWithItsSeed) {
  const test::ProcessResult run = test::run_lvrl(
      base({"--video", video_, "--n", "3", "--temperature", "0.8", "--max-new-tokens", "5", "--seed", "40"}));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const std::vector<nlohmann::json> lines = json_lines(run.output.substr(run.output.find('{')));
  ASSERT_EQ(lines.size(), 3u) << run.output;
  for (size_t i = 0; i < lines.size(); ++i) {
    const nlohmann::json& line = lines[i];
    EXPECT_EQ(line["seed"].get<uint64_t>(), 40 + i);
    const auto ids = line["token_ids"].get<std::vector<int64_t>>();
    EXPECT_GE(ids.size(), 1u);
    EXPECT_LE(ids.size(), 5u);
    EXPECT_EQ(line["logprobs"].size(), ids.size());
    for (double logprob : line["logprobs"]) EXPECT_LE(logprob, 0.0);
    const std::string finish = line["finish_reason"];
    EXPECT_TRUE(finish == "length" ? ids.size() == 5 : finish == "stop") << line.dump();
    EXPECT_TRUE(line["text"].is_string());
  }
  EXPECT_NE(run.output.find("prefill"), std::string::npos) << "a progress line while the prompt prefills";
}

TEST_F(GenerateCommand, AVideoAndItsCacheEntryGiveTheSameAnswer) {
  cache::testing::TestServer server;
  const std::string dataset = work_->file("one.jsonl");
  std::ofstream(dataset) << nlohmann::json{{"id", "a"},
                                           {"video", fs::path(video_).filename().string()},
                                           {"question", "What moves?"},
                                           {"answer", "A"}}
                                .dump()
                         << "\n";
  const std::string url = server.endpoint().url();
  const test::ProcessResult pre = test::run_lvrl({"preprocess", "--config", config_, "data.path=" + dataset,
                                                  "data.video_dir=" + tv::video_dir(),
                                                  "model.path=" + model_dir_, "redis.cache_url=" + url});
  ASSERT_EQ(pre.exit_code, 0) << pre.output;
  // The key derived independently of the command: the video's bytes, the recipe, the tower's weights.
  const Config config = Config::load(config_);
  pipeline::VisionEncoder encoder = pipeline::VisionEncoder::load(model_dir_, at::kFloat, at::kCPU);
  pipeline::VideoRecipe recipe = pipeline::video_recipe_from(config);
  recipe.vision = encoder.vision_params();
  const std::string key = pipeline::video_embedding_key(hash_file(video_), recipe, encoder.fingerprint());

  const std::vector<std::string> greedy = {"--n", "1", "--temperature", "0", "--max-new-tokens", "8"};
  std::vector<std::string> from_file = base({"--video", video_}),
                           from_cache = base({"--embedding-key", key, "--cache-url", url});
  from_file.insert(from_file.end(), greedy.begin(), greedy.end());
  from_cache.insert(from_cache.end(), greedy.begin(), greedy.end());
  const test::ProcessResult file_run = test::run_lvrl(from_file), cache_run = test::run_lvrl(from_cache);
  ASSERT_EQ(file_run.exit_code, 0) << file_run.output;
  ASSERT_EQ(cache_run.exit_code, 0) << cache_run.output;
  const auto a = json_lines(file_run.output.substr(file_run.output.find('{')));
  const auto b = json_lines(cache_run.output.substr(cache_run.output.find('{')));
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(a[0]["token_ids"], b[0]["token_ids"]);

  const test::ProcessResult missing =
      test::run_lvrl(base({"--embedding-key", key + "x", "--cache-url", url}));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("--embedding-key"), std::string::npos) << missing.output;
}

TEST_F(GenerateCommand, TwoSequenceParallelRanksGiveOneRanksAnswers) {
  const std::vector<std::string> args = {"--video",          video_, "--n", "2", "--temperature", "0",
                                         "--max-new-tokens", "8"};
  const test::ProcessResult one = test::run_lvrl(base(args));
  std::vector<std::string> two_args = base(args);
  two_args.insert(two_args.end(), {"--nproc", "2"});
  test::ProcessOptions options;
  options.timeout_s = 240;
  const test::ProcessResult two = test::run_lvrl(two_args, options);
  ASSERT_EQ(one.exit_code, 0) << one.output;
  ASSERT_EQ(two.exit_code, 0) << two.output;
  const auto a = json_lines(one.output.substr(one.output.find('{')));
  const auto b = json_lines(two.output.substr(two.output.find('{')));
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u) << two.output;
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(a[i]["token_ids"], b[i]["token_ids"]);
    const auto x = a[i]["logprobs"].get<std::vector<double>>(),
               y = b[i]["logprobs"].get<std::vector<double>>();
    ASSERT_EQ(x.size(), y.size());
    for (size_t t = 0; t < x.size(); ++t) EXPECT_NEAR(x[t], y[t], 1e-5) << "answer " << i << " token " << t;
  }
}

TEST_F(GenerateCommand, BadFlagsNameThemselves) {
  const test::ProcessResult neither = test::run_lvrl(base({}));
  EXPECT_EQ(neither.exit_code, 2);
  EXPECT_NE(neither.output.find("--video"), std::string::npos) << neither.output;
  const test::ProcessResult no_url = test::run_lvrl(base({"--embedding-key", "k"}));
  EXPECT_EQ(no_url.exit_code, 2);
  EXPECT_NE(no_url.output.find("--cache-url"), std::string::npos) << no_url.output;
  const test::ProcessResult bad_top_p = test::run_lvrl(base({"--video", video_, "--top-p", "1.5"}));
  EXPECT_EQ(bad_top_p.exit_code, 2);
  EXPECT_NE(bad_top_p.output.find("rollout.top_p"), std::string::npos) << bad_top_p.output;
}

}  // namespace
}  // namespace lvrl::rollout
