// `lvrl sft` as a user runs it, on a memorisable toy set: a tiny checkpoint (`lvrl model init`, the
// real Qwen tokenizer), two synthetic videos with reasoning rows (`lvrl dataset synth`), the cache a
// private redis-server. One uninterrupted run is the reference every other run is held to:
//  - the loss falls (a memorisable set);
//  - SIGKILL mid-run, then the same command: every step's loss equals the uninterrupted run's bit
//    for bit (CPU, one thread per process, same layout);
//  - its step-4 checkpoint resumed on two SP ranks: steps 5..8 within 1e-6 relative;
//  - SIGTERM: the step in flight finishes, its checkpoint is written, exit 0;
//  - a truncated newest checkpoint is skipped for the previous one, with a warning naming it;
//  - a non-finite loss stops the run naming the step, exit 3, the last good checkpoint the newest.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "core/dataset.h"
#include "core/temp_dir.h"
#include "model/tokenizer.h"
#include "model/weights.h"
#include "tests/cache/redis_test_support.h"
#include "tests/model/qwen_reference.h"
#include "tests/support/run_process.h"
#include "trainer/data_order.h"
#include "trainer/metrics.h"

namespace lvrl::trainer {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kSteps = 8;

class SftCommand : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work_ = new TempDir("lvrl-sft");
    const test::ProcessResult init =
        test::run_lvrl({"model", "init", "--preset", "tiny", "--out", work_->file("model"), "--tokenizer",
                        testing_model::qwen_model_dir(), "--seed", "3"});
    ASSERT_EQ(init.exit_code, 0) << init.output;
    const test::ProcessResult synth =
        test::run_lvrl({"dataset", "synth", "--out", work_->file("data"), "--videos", "2", "--seed", "1",
                        "--size", "64x48", "--test-fraction", "0.5"});
    ASSERT_EQ(synth.exit_code, 0) << synth.output;
    std::ofstream(work_->file("sft.yaml"))
        << "log: {level: info}\n"
        << "model: {path: " << work_->file("model") << "}\n"
        << "data: {path: " << work_->file("data/sft.jsonl") << ", video_dir: " << work_->file("data/videos")
        << ", max_samples: 2}\n"
        << "preprocess: {frames: 4, min_pixels: 3136, max_pixels: 12544}\n"
        << "trainer: {steps: " << kSteps
        << ", rollout_batch: 2, lr: 1.0e-2, save_every: 1, keep_checkpoints: 10, micro_batch_tokens: 4096}\n";
    straight_ = new test::ProcessResult(sft(work_->file("straight")));
  }
  static void TearDownTestSuite() {
    delete straight_;
    delete work_;
  }

  static std::vector<std::string> args(const std::string& run_dir,
                                       const std::vector<std::string>& extra = {}) {
    std::vector<std::string> out = {"sft", "--config", work_->file("sft.yaml"), "run.dir=" + run_dir};
    out.insert(out.end(), extra.begin(), extra.end());
    return out;
  }
  static test::ProcessOptions options() {
    test::ProcessOptions options;
    options.env = {{"OMP_NUM_THREADS", "1"}};
    options.timeout_s = 240;
    return options;
  }
  static test::ProcessResult sft(const std::string& run_dir, const std::vector<std::string>& extra = {}) {
    return test::run_lvrl(args(run_dir, extra), options());
  }
  // step → sft/loss of a run's metrics.jsonl.
  static std::map<int64_t, double> losses(const std::string& run_dir) {
    std::map<int64_t, double> out;
    for (const MetricsRow& row : read_metrics_jsonl(run_dir + "/metrics.jsonl"))
      out[row.step] = row.scalars.at("sft/loss");
    return out;
  }

  static TempDir* work_;
  static test::ProcessResult* straight_;
};
TempDir* SftCommand::work_ = nullptr;
test::ProcessResult* SftCommand::straight_ = nullptr;

TEST_F(SftCommand, LossFallsOnAMemorisableSet) {
  ASSERT_EQ(straight_->exit_code, 0) << straight_->output;
  const std::map<int64_t, double> loss = losses(work_->file("straight"));
  ASSERT_EQ(loss.size(), static_cast<size_t>(kSteps));
  // The tiny model starts near ln(vocabulary) ≈ 11.9 nats a token; two rows are learnt fast.
  EXPECT_GT(loss.at(1), 10.0);
  EXPECT_LT(loss.at(kSteps), 0.6 * loss.at(1)) << "first " << loss.at(1) << ", last " << loss.at(kSteps);
  for (int64_t step = 2; step <= kSteps; ++step)
    EXPECT_LT(loss.at(step), loss.at(step - 1)) << "step " << step;
  // A checkpoint is a model `lvrl model info` reads.
  const std::string last = work_->file("straight/checkpoints/step-" + std::to_string(kSteps));
  const test::ProcessResult info = test::run_lvrl({"model", "info", last});
  EXPECT_EQ(info.exit_code, 0) << info.output;
  EXPECT_TRUE(fs::exists(last + "/tokenizer.json"));
}

TEST_F(SftCommand, ResumeAfterSigkillRepeatsTheLossesBitForBit) {
  ASSERT_EQ(straight_->exit_code, 0) << straight_->output;
  const std::string run_dir = work_->file("killed");
  {
    std::vector<std::string> argv = {test::lvrl_binary()};
    for (const std::string& arg : args(run_dir)) argv.push_back(arg);
    test::Process process(argv, options());
    const std::string third = run_dir + "/checkpoints/step-3/manifest.json";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
    while (!fs::exists(third) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(fs::exists(third)) << "the run never saved step 3";
    ::kill(process.pid(), SIGKILL);
    const test::ProcessResult killed = process.wait();
    ASSERT_EQ(killed.exit_code, 128 + SIGKILL) << killed.output;
  }
  ASSERT_FALSE(fs::exists(run_dir + "/checkpoints/step-" + std::to_string(kSteps))) << "killed too late";
  const test::ProcessResult resumed = sft(run_dir);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming from " + run_dir + "/checkpoints/step-"), std::string::npos)
      << resumed.output;
  const std::map<int64_t, double> expected = losses(work_->file("straight"));
  const std::map<int64_t, double> got = losses(run_dir);
  ASSERT_EQ(got.size(), expected.size());
  for (const auto& [step, loss] : expected) EXPECT_EQ(got.at(step), loss) << "step " << step;  // bit for bit
}

TEST_F(SftCommand, SigtermFinishesTheStepSavesAndExitsZero) {
  const std::string run_dir = work_->file("terminated");
  std::vector<std::string> argv = {test::lvrl_binary()};
  for (const std::string& arg : args(run_dir, {"trainer.save_every=0"})) argv.push_back(arg);
  test::Process process(argv, options());
  const std::string metrics = run_dir + "/metrics.jsonl";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  while ((!fs::exists(metrics) || fs::file_size(metrics) == 0) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(process.pid(), SIGTERM);
  const test::ProcessResult stopped = process.wait();
  ASSERT_EQ(stopped.exit_code, 0) << stopped.output;
  EXPECT_NE(stopped.output.find("stopped by a signal"), std::string::npos) << stopped.output;
  // The checkpoint of the last finished step, the only one (save_every 0), and the log up to it.
  const std::vector<MetricsRow> rows = read_metrics_jsonl(metrics);
  ASSERT_FALSE(rows.empty());
  ASSERT_LT(rows.back().step, kSteps) << "stopped too late to tell";
  std::vector<std::string> kept;
  for (const auto& entry : fs::directory_iterator(run_dir + "/checkpoints"))
    kept.push_back(entry.path().filename());
  EXPECT_EQ(kept, std::vector<std::string>{"step-" + std::to_string(rows.back().step)});
}

TEST_F(SftCommand, ResumesOnAnotherLayout) {
  ASSERT_EQ(straight_->exit_code, 0) << straight_->output;
  cache::testing::TestServer server;
  const std::string run_dir = work_->file("sp2");
  const test::ProcessResult resumed =
      sft(run_dir, {"--nproc", "2", "sp.size=2", "redis.cache_url=" + server.endpoint().url(),
                    "trainer.resume=" + work_->file("straight/checkpoints/step-4")});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const std::map<int64_t, double> expected = losses(work_->file("straight"));
  const std::map<int64_t, double> got = losses(run_dir);
  ASSERT_EQ(got.size(), static_cast<size_t>(kSteps - 4)) << resumed.output;
  for (int64_t step = 5; step <= kSteps; ++step) {
    EXPECT_NEAR(got.at(step), expected.at(step), 1e-6 * std::abs(expected.at(step))) << "step " << step;
  }
}

TEST_F(SftCommand, SkipsATruncatedCheckpoint) {
  ASSERT_EQ(straight_->exit_code, 0) << straight_->output;
  const std::string run_dir = work_->file("truncated");
  ASSERT_EQ(sft(run_dir, {"trainer.steps=2"}).exit_code, 0);
  const std::string broken = run_dir + "/checkpoints/step-2";
  const fs::path weights = fs::path(broken) / "model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);
  const test::ProcessResult resumed = sft(run_dir, {"trainer.steps=3"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find(broken), std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming from " + run_dir + "/checkpoints/step-1 "), std::string::npos)
      << resumed.output;
  const std::map<int64_t, double> expected = losses(work_->file("straight"));
  const std::map<int64_t, double> got = losses(run_dir);
  for (int64_t step = 1; step <= 3; ++step) EXPECT_EQ(got.at(step), expected.at(step)) << "step " << step;
}

TEST_F(SftCommand, ANonFiniteLossStopsTheRunNamingTheStep) {
  // One row per step. The embedding row of a word only the second step's row holds (an option's
  // colour: row 0 offers cyan, row 1 red) is NaN in the starting checkpoint: step 1 never reads it
  // and trains normally; step 2's forward turns NaN.
  const model::Tokenizer tokenizer = model::Tokenizer::load(testing_model::qwen_model_dir());
  const std::vector<data::Sample> rows =
      data::read_dataset(work_->file("data/sft.jsonl"), work_->file("data/videos"));
  const int64_t second = epoch_order(2, 1234, 0)[1];  // run.seed's default, epoch 0
  const std::string colour = second == 0 ? " cyan" : " red";
  auto text_of = [](const data::Sample& row) {
    std::string text = row.question + " " + row.reasoning;
    for (const std::string& option : row.options) text += " " + option.substr(3);
    return text;
  };
  ASSERT_NE(text_of(rows[second]).find(colour), std::string::npos) << text_of(rows[second]);
  ASSERT_EQ(text_of(rows[1 - second]).find(colour), std::string::npos) << text_of(rows[1 - second]);
  const std::vector<model::TokenId> word = tokenizer.encode(colour);
  ASSERT_EQ(word.size(), 1U);
  const std::string poisoned = work_->file("poisoned");
  {
    // The tiny checkpoint ties the LM head to the embedding (every row would reach the softmax):
    // untie it first, the head a copy of the embedding.
    const model::QwenVL tied = model::load_model(work_->file("model"), at::kFloat, at::kCPU);
    model::QwenConfig config = tied->config();
    config.text.tie_word_embeddings = false;
    model::QwenVL model(config);
    at::NoGradGuard no_grad;
    const auto source = tied->named_parameters();
    for (auto& item : model->named_parameters()) {
      const std::string from = item.key() == "lm_head.weight" ? "model.embed_tokens.weight" : item.key();
      item.value().copy_(source[from]);
    }
    model->model->embed_tokens->weight[word[0]].fill_(std::nan(""));
    model::save_model(*model, poisoned);
    for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
      fs::copy_file(work_->file("model/") + name, poisoned + "/" + name);
    }
  }
  const std::string run_dir = work_->file("diverged");
  const test::ProcessResult run =
      sft(run_dir, {"model.path=" + poisoned, "trainer.rollout_batch=1", "trainer.steps=4"});
  EXPECT_EQ(run.exit_code, 3) << run.output;
  EXPECT_NE(run.output.find("step 2: the loss is "), std::string::npos) << run.output;
  std::vector<std::string> kept;
  for (const auto& entry : fs::directory_iterator(run_dir + "/checkpoints"))
    kept.push_back(entry.path().filename());
  EXPECT_EQ(kept, std::vector<std::string>{"step-1"});
  EXPECT_EQ(read_metrics_jsonl(run_dir + "/metrics.jsonl").size(), 1U);
}

}  // namespace
}  // namespace lvrl::trainer
