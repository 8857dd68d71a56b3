// The RL trainer's loop on a file of rollout groups that the generation engine sampled from the
// same checkpoint (a tiny model, the real Qwen tokenizer, random video rows in a private cache):
//  - the engine's log-probs and the trainer's recompute agree (training/rollout_probs_diff_max
//    ≤ 1e-5), so the first update's ratio is 1 (ppo_kl ≤ 1e-6, nothing clipped);
//  - the step's reward and length scalars are the hand means of the groups it took (the epoch's
//    order from epoch_order), and each optimizer step publishes a weight version;
//  - KL to the reference is 0 at the first mini-batch (the policy is the reference) and grows after;
//    ppo_epochs × ppo_mini_batches optimizer steps per batch; `lvrl plot` draws its 7 PNGs;
//  - the entropy bonus logs an entropy within (0, ln V];
//  - dynamic sampling never trains an all-equal group;
//  - from the rollout stream: a SIGKILLed trainer resumed trains every group exactly once (the
//    ledger), all acknowledged in the end; stale groups are dropped and counted; groups a resumed
//    checkpoint holds are acknowledged, not trained again;
//  - every advantage estimator trains; `lvrl train` on 2 ranks (DP 2, and SP 2) gives the 1-rank
//    losses within 1e-6 relative.
#include "trainer/rl_run.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cache/rollout_file.h"
#include "cache/rollout_stream.h"
#include "cache/weight_channel.h"
#include "core/config.h"
#include "core/temp_dir.h"
#include "model/weights.h"
#include "rollout/engine.h"
#include "rollout/rollout_group.h"
#include "sp/mesh.h"
#include "tests/cache/redis_test_support.h"
#include "tests/rollout/engine_support.h"
#include "tests/support/run_process.h"
#include "tests/trainer/png_check.h"
#include "trainer/data_order.h"
#include "trainer/ledger.h"
#include "trainer/metrics.h"
#include "trainer/rollout_source.h"
#include "trainer/rollout_stream_source.h"

namespace lvrl::trainer {
namespace {

namespace fs = std::filesystem;

constexpr int kGroups = 3, kAnswers = 4;
const char* const kVideoKey = "rl-test-video";

// Answer i of group g earns kReward[g][i]; group 2 is all-equal (no signal).
constexpr double kReward[kGroups][kAnswers] = {{1, 0, 0, 1}, {0, 0, 1, 0}, {1, 1, 1, 1}};

class RlRun : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work_ = new TempDir("lvrl-rl");
    server_ = new cache::testing::TestServer();
    model_dir_ = work_->file("model");
    model::QwenVL model = testing_rollout::preset_model("tiny", 31);
    model->eval();
    model::save_model(*model, model_dir_);
    for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
      fs::copy_file(fs::path(testing_model::qwen_model_dir()) / name, fs::path(model_dir_) / name);
    }
    at::NoGradGuard no_grad;
    std::vector<rollout::GenerationRequest> requests;
    const char* questions[kGroups] = {"What moves first?", "Which colour is last?", "Is it a square?"};
    for (int g = 0; g < kGroups; ++g) {
      rollout::GenerationRequest request;
      request.id = "r" + std::to_string(g);
      request.prompt = testing_rollout::video_question(*model, questions[g], 2, 5);  // one video for all
      request.prompt.second_per_grid_ts = {1.0};
      request.n = kAnswers;
      request.sampling.temperature = 1.0;
      request.sampling.max_new_tokens = 6;
      request.sampling.seed = 100 + 10 * g;
      requests.push_back(request);
    }
    cache::EmbeddingCache cache(server_->endpoint());
    cache.put(kVideoKey, requests[0].prompt.video_embeds);
    rollout::Engine engine(model, testing_rollout::tokenizer(), rollout::EngineOptions{});
    const std::vector<rollout::GenerationResult> results = engine.generate(requests);
    for (int g = 0; g < kGroups; ++g) {
      const rollout::GroupContext context{"g" + std::to_string(g), "p" + std::to_string(g), 0, kVideoKey, {}};
      cache::RolloutGroup group =
          rollout::to_rollout_group(requests[g], results[g], model->config(), context);
      for (int i = 0; i < kAnswers; ++i) {
        group.samples[i].reward = kReward[g][i];
        group.samples[i].rewards = {{"accuracy", kReward[g][i]}};
      }
      groups_.push_back(group);
    }
    cache::write_rollout_file(work_->file("rollouts.bin"), groups_);
  }
  static void TearDownTestSuite() {
    delete server_;
    delete work_;
  }

  static std::vector<std::string> base_overrides(const std::string& run_dir) {
    return {"run.dir=" + run_dir,
            "model.path=" + model_dir_,
            "redis.cache_url=" + server_->endpoint().url(),
            "log.level=warn",
            "trainer.rollout_batch=2",
            "trainer.steps=2",
            "trainer.lr=1e-3",
            "trainer.save_every=0",
            "trainer.kl.coef=0",
            "trainer.micro_batch_tokens=256"};
  }
  // run_rl in this process, one rank.
  static RlRunSummary train(const std::string& run_dir, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> overrides = base_overrides(run_dir);
    overrides.insert(overrides.end(), extra.begin(), extra.end());
    const Config config = Config::load("", overrides);
    cache::EmbeddingCache cache(server_->endpoint());
    RolloutFileSource source(work_->file("rollouts.bin"), cache);
    auto mesh = sp::Mesh::create(sp::DistributedEnv{}, {}, c10::kCPU);
    return run_rl(config, mesh, source);
  }
  static std::vector<MetricsRow> metrics(const std::string& run_dir) {
    return read_metrics_jsonl(run_dir + "/metrics.jsonl");
  }

  static TempDir* work_;
  static cache::testing::TestServer* server_;
  static std::string model_dir_;
  static std::vector<cache::RolloutGroup> groups_;
};
TempDir* RlRun::work_ = nullptr;
cache::testing::TestServer* RlRun::server_ = nullptr;
std::string RlRun::model_dir_;
std::vector<cache::RolloutGroup> RlRun::groups_;

TEST_F(RlRun, FirstUpdateSeesTheEnginesLogprobsAndTheStepsScalarsAreTheGroups) {
  const std::string run_dir = work_->file("plain");
  const RlRunSummary summary = train(run_dir, {"trainer.old_logprobs=recompute"});
  EXPECT_EQ(summary.final_step, 2);
  const std::vector<MetricsRow> rows = metrics(run_dir);
  ASSERT_EQ(rows.size(), 2U);
  const auto& first = rows[0].scalars;
  EXPECT_LE(first.at("training/rollout_probs_diff_max"), 1e-5);
  EXPECT_LE(std::abs(first.at("actor/ppo_kl")), 1e-6);
  EXPECT_EQ(first.at("actor/pg_clipfrac_higher"), 0.0);
  EXPECT_EQ(first.at("actor/pg_clipfrac_lower"), 0.0);
  // Step 1 took the epoch's first two groups.
  const std::vector<int64_t> order = epoch_order(kGroups, 1234, 0);
  double reward = 0, length = 0;
  for (int k = 0; k < 2; ++k) {
    for (int i = 0; i < kAnswers; ++i) {
      reward += kReward[order[k]][i];
      length += static_cast<double>(groups_[order[k]].samples[i].response_ids.size());
    }
  }
  EXPECT_DOUBLE_EQ(first.at("reward/overall"), reward / (2 * kAnswers));
  EXPECT_DOUBLE_EQ(first.at("reward/accuracy"), reward / (2 * kAnswers));
  EXPECT_DOUBLE_EQ(first.at("response_length/mean"), length / (2 * kAnswers));
  EXPECT_NEAR(first.at("critic/advantages/mean"), 0.0, 1e-12);  // GRPO centres every group
  for (const char* version : {"v1.safetensors", "v2.safetensors"}) {
    EXPECT_TRUE(fs::exists(run_dir + "/weights/" + version)) << version;
  }
  // The final checkpoint lists every group trained since the last acknowledgement.
  std::ifstream state_file(run_dir + "/checkpoints/step-2/trainer_state/state.json");
  const nlohmann::json state = nlohmann::json::parse(state_file);
  EXPECT_EQ(state.at("unacknowledged_ids").size(), 3U);  // 2 groups, then 1 (the epoch's end)
}

TEST_F(RlRun, KlToTheReferenceStartsAtZeroAndEpochsTimesMiniBatchesSteps) {
  const std::string run_dir = work_->file("kl");
  train(run_dir, {"trainer.kl.coef=0.05", "trainer.kl.mode=loss", "trainer.ppo_mini_batches=2",
                  "trainer.ppo_epochs=2", "trainer.steps=4", "trainer.lr=1e-2"});
  const std::vector<MetricsRow> rows = metrics(run_dir);
  ASSERT_EQ(rows.size(), 4U);  // one rollout batch: 2 epochs × 2 mini-batches
  EXPECT_NEAR(rows[0].scalars.at("actor/kl_loss"), 0.0, 1e-7);
  EXPECT_GT(rows[3].scalars.at("actor/kl_loss"), 1e-7);
  // The batch's scalars are the same for its four steps; the lr and losses are each step's.
  EXPECT_EQ(rows[0].scalars.at("reward/overall"), rows[3].scalars.at("reward/overall"));
  // This run's curves, drawn.
  const test::ProcessResult plot = test::run_lvrl({"plot", run_dir});
  ASSERT_EQ(plot.exit_code, 0) << plot.output;
  for (const std::string& name : testing_trainer::kPngNames)
    testing_trainer::check_png(run_dir + "/plots/" + name);
}

TEST_F(RlRun, EntropyBonusLogsThePolicysEntropy) {
  const std::string run_dir = work_->file("entropy");
  train(run_dir, {"trainer.entropy_coef=0.01", "trainer.steps=1"});
  const std::vector<MetricsRow> rows = metrics(run_dir);
  ASSERT_EQ(rows.size(), 1U);
  // Mean entropy per answer token: positive and at most ln(vocabulary rows).
  const double entropy = rows[0].scalars.at("actor/entropy_loss");
  EXPECT_GT(entropy, 0.0);
  EXPECT_LE(entropy, std::log(152064.0) + 1e-6);  // the LM head's rows
}

TEST_F(RlRun, DynamicSamplingNeverTrainsAnAllEqualGroup) {
  const std::string run_dir = work_->file("dapo");
  train(run_dir, {"trainer.dynamic_sampling.enabled=true", "trainer.dynamic_sampling.max_rounds=2",
                  "trainer.steps=3"});
  double dropped = 0;
  for (const MetricsRow& row : metrics(run_dir)) dropped += row.scalars.at("rollout/groups_dropped");
  EXPECT_GE(dropped, 1.0);
  std::ifstream state_file(run_dir + "/checkpoints/step-3/trainer_state/state.json");
  const nlohmann::json state = nlohmann::json::parse(state_file);
  for (const auto& id : state.at("unacknowledged_ids")) EXPECT_NE(id.get<std::string>(), "g2");
}

TEST_F(RlRun, EveryAdvantageEstimatorTrains) {
  for (const std::string estimator : {"grpo", "rloo", "reinforce_baseline", "reinforce_pp"}) {
    const std::string run_dir = work_->file("estimator-" + estimator);
    std::vector<std::string> extra = {"trainer.advantage=" + estimator, "trainer.steps=1"};
    if (estimator == "reinforce_pp")
      extra.insert(extra.end(), {"trainer.kl.coef=0.01", "trainer.kl.mode=reward"});
    train(run_dir, extra);
    const std::vector<MetricsRow> rows = metrics(run_dir);
    ASSERT_EQ(rows.size(), 1U) << estimator;
    EXPECT_TRUE(std::isfinite(rows[0].scalars.at("actor/loss"))) << estimator;
    EXPECT_GT(rows[0].scalars.at("actor/grad_norm"), 0.0) << estimator;
    if (estimator != "reinforce_pp") {
      EXPECT_NEAR(rows[0].scalars.at("critic/advantages/mean"), 0.0, 1e-12) << estimator;
    }
  }
}

TEST_F(RlRun, TwoRanksTrainAsOne) {
  auto command = [&](const std::string& run_dir, const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"train", "--rollouts", work_->file("rollouts.bin")};
    for (const std::string& item : base_overrides(run_dir)) args.push_back(item);
    args.insert(args.end(), extra.begin(), extra.end());
    test::ProcessOptions options;
    options.timeout_s = 240;
    return test::run_lvrl(args, options);
  };
  const test::ProcessResult one = command(work_->file("one"), {"trainer.old_logprobs=recompute"});
  ASSERT_EQ(one.exit_code, 0) << one.output;
  const std::vector<MetricsRow> expected = metrics(work_->file("one"));
  for (const std::string sp_size : {"1", "2"}) {
    const std::string run_dir = work_->file("two-sp" + sp_size);
    const test::ProcessResult two =
        command(run_dir, {"--nproc", "2", "sp.size=" + sp_size, "trainer.old_logprobs=recompute"});
    ASSERT_EQ(two.exit_code, 0) << two.output;
    const std::vector<MetricsRow> got = metrics(run_dir);
    ASSERT_EQ(got.size(), expected.size());
    for (size_t s = 0; s < got.size(); ++s) {
      for (const char* name : {"actor/loss", "actor/pg_loss", "actor/grad_norm"}) {
        const double want = expected[s].scalars.at(name);
        // 1e-6 relative; losses that cancel to ~0 (GRPO's zero-mean advantages at ratio 1) carry
        // float32 rounding of their O(1) terms, hence the 1e-7 floor.
        EXPECT_NEAR(got[s].scalars.at(name), want, 1e-6 * std::abs(want) + 1e-7)
            << "sp.size " << sp_size << ", step " << s + 1 << ", " << name;
      }
    }
  }
}

// A group of the fixture under another id and policy version.
cache::RolloutGroup renamed(const cache::RolloutGroup& group, const std::string& id, int64_t version) {
  cache::RolloutGroup out = group;
  out.group_id = id;
  out.policy_version = version;
  return out;
}

// Group id → the steps that trained it, from a ledger (each answer's line).
std::map<std::string, std::set<int64_t>> steps_by_group(const std::string& run_dir) {
  std::map<std::string, std::set<int64_t>> out;
  for (const LedgerLine& line : read_ledger(run_dir + "/ledger.jsonl")) out[line.group_id].insert(line.step);
  return out;
}

TEST_F(RlRun, FromTheStreamEveryGroupIsTrainedOnceAcrossAKill) {
  cache::testing::TestServer queue(cache::RedisRole::Queue);
  cache::RolloutProducer producer(queue.endpoint());
  for (int g = 0; g < kGroups; ++g) producer.publish(groups_[g]);
  producer.publish(groups_[0]);  // a repeat (a producer's retry): de-duplicated
  const std::string run_dir = work_->file("stream");
  std::vector<std::string> args = {test::lvrl_binary(), "train"};
  for (const std::string& item : base_overrides(run_dir)) args.push_back(item);
  args.insert(args.end(), {"redis.queue_url=" + queue.endpoint().url(), "trainer.rollout_batch=1",
                           "trainer.steps=4", "trainer.save_every=2", "rollout.max_staleness=100"});
  test::ProcessOptions options;
  options.timeout_s = 240;
  {
    // Steps 1 and 2 are checkpointed (and acknowledged), step 3 is trained, then the trainer waits
    // for a fourth group: killed there, step 3's group was trained but never saved.
    test::Process trainer(args, options);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
    auto trained_step_3 = [&] {
      if (!fs::exists(run_dir + "/ledger.jsonl")) return false;
      for (const LedgerLine& line : read_ledger(run_dir + "/ledger.jsonl")) {
        if (line.step == 3) return true;
      }
      return false;
    };
    while (!trained_step_3() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_TRUE(trained_step_3());
    ::kill(trainer.pid(), SIGKILL);
    EXPECT_EQ(trainer.wait().exit_code, 128 + SIGKILL);
  }
  producer.publish(renamed(groups_[1], "g-late", 0));
  const test::ProcessResult resumed = test::run_process(args, options);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  // Every group once, at consecutive steps 1..4; step 3's group came back to the trainer (it was
  // never acknowledged) and was trained again at step 3, whose earlier lines the resume dropped.
  const std::map<std::string, std::set<int64_t>> steps = steps_by_group(run_dir);
  ASSERT_EQ(steps.size(), 4U) << resumed.output;
  std::set<int64_t> all;
  for (const auto& [group, at] : steps) {
    EXPECT_EQ(at.size(), 1U) << group << " trained at several steps";
    all.insert(at.begin(), at.end());
  }
  EXPECT_EQ(all, (std::set<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(read_ledger(run_dir + "/ledger.jsonl").size(), 4U * kAnswers);
  // Version 3 was announced before the kill: the resumed run keeps that announcement and goes on at 4.
  EXPECT_NE(resumed.output.find("weight version 3 was announced before this run resumed"), std::string::npos)
      << resumed.output;
  cache::WeightChannel channel(queue.endpoint());
  ASSERT_TRUE(channel.latest().has_value());
  EXPECT_EQ(channel.latest()->version, 4);
  // Everything acknowledged: a consumer of the same name finds nothing pending and nothing new.
  cache::RolloutConsumer consumer(queue.endpoint(), "trainer");
  EXPECT_TRUE(consumer.read(10, std::chrono::milliseconds(200)).empty());
}

TEST_F(RlRun, StaleGroupsAreDroppedAndCounted) {
  cache::testing::TestServer queue(cache::RedisRole::Queue);
  cache::RolloutProducer producer(queue.endpoint());
  producer.publish(groups_[0]);                      // version 0: fresh at step 1
  producer.publish(groups_[1]);                      // version 0: one behind at step 2, on-policy drops it
  producer.publish(renamed(groups_[2], "g-v1", 1));  // version 1: fresh at step 2
  const std::string run_dir = work_->file("stale");
  std::vector<std::string> args = {"train"};
  for (const std::string& item : base_overrides(run_dir)) args.push_back(item);
  args.insert(args.end(), {"redis.queue_url=" + queue.endpoint().url(), "trainer.rollout_batch=1",
                           "rollout.max_staleness=0"});
  const test::ProcessResult run = test::run_lvrl(args);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const std::vector<MetricsRow> rows = metrics(run_dir);
  ASSERT_EQ(rows.size(), 2U);
  EXPECT_EQ(rows[0].scalars.at("rollout/stale_dropped"), 0.0);
  EXPECT_EQ(rows[1].scalars.at("rollout/stale_dropped"), 1.0);
  const auto steps = steps_by_group(run_dir);
  EXPECT_EQ(steps.at("g0"), std::set<int64_t>{1});
  EXPECT_EQ(steps.at("g-v1"), std::set<int64_t>{2});
  EXPECT_EQ(steps.count("g1"), 0U);
}

TEST_F(RlRun, GroupsAResumedCheckpointHoldsAreAcknowledgedNotTrainedAgain) {
  cache::testing::TestServer queue(cache::RedisRole::Queue);
  cache::RolloutProducer producer(queue.endpoint());
  producer.publish(groups_[0]);
  producer.publish(groups_[1]);
  cache::EmbeddingCache cache(server_->endpoint());
  auto mesh = sp::Mesh::create(sp::DistributedEnv{}, {}, c10::kCPU);
  {
    RolloutStreamSource source(std::make_unique<cache::RolloutConsumer>(queue.endpoint(), "trainer"), cache,
                               mesh, 0);
    source.already_trained({"g0"});  // saved in the checkpoint, never acknowledged
    DataCursor cursor;
    const RolloutBatch batch = source.next(1, cursor, SourceContext{});
    ASSERT_EQ(batch.groups.size(), 1U);
    EXPECT_EQ(batch.groups[0].group_id, "g1");
    ASSERT_TRUE(batch.video_rows[0].defined());
    EXPECT_EQ(batch.video_rows[0].size(0), 8);  // grid {2, 4, 4}: 2·4·4 / 2² rows
    source.acknowledge({"g1"});
  }
  cache::RolloutConsumer consumer(queue.endpoint(), "trainer");
  EXPECT_TRUE(consumer.read(10, std::chrono::milliseconds(200)).empty());  // g0 and g1 both acknowledged
}

}  // namespace
}  // namespace lvrl::trainer
