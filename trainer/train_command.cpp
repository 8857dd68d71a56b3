// `lvrl train --config F [--rollouts FILE] [k=v ...] [--nproc N]`: the RL trainer (trainer/rl_run.h)
// on the rollout stream at redis.queue_url (world rank 0 its consumer: trainer/rollout_stream_source.h),
// or on the groups of a rollout file (cache/rollout_file.h); the video rows from the embedding cache at
// redis.cache_url. Ranks as for `lvrl sft` (trainer/trainer_ranks.h). Exit status: 0 when the run
// finished or stopped on SIGTERM/SIGINT after saving; 3 when a non-finite loss stopped it.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <optional>

#include "cache/redis_config.h"
#include "core/command.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "trainer/rl_run.h"
#include "trainer/rollout_source.h"
#include "trainer/rollout_stream_source.h"
#include "trainer/trainer_ranks.h"
#include "trainer/training_run.h"

namespace lvrl::trainer {
namespace {

struct TrainArgs {
  std::string config_path, rollouts;
  std::vector<std::string> overrides;
  int nproc = 1;
};

int run_train_command(const TrainArgs& args) {
  std::vector<std::string> rank_args = {"train"};
  if (!args.rollouts.empty()) rank_args.insert(rank_args.end(), {"--rollouts", args.rollouts});
  if (!args.config_path.empty()) rank_args.insert(rank_args.end(), {"--config", args.config_path});
  rank_args.insert(rank_args.end(), args.overrides.begin(), args.overrides.end());
  if (std::optional<int> launched = run_as_local_ranks(args.nproc, rank_args)) return *launched;
  const Config config = Config::load(args.config_path, args.overrides);
  log::apply_config_level(config.get<std::string>("log.level"));
  const std::optional<cache::RedisEndpoint> endpoint = cache::configured_endpoint(config, "redis.cache_url");
  if (!endpoint) {
    throw InputError({config.source_of("redis.cache_url"), 0, "redis.cache_url", ""},
                     "the rollouts' video rows are read from the embedding cache: point it at the server "
                     "they were stored in");
  }
  std::shared_ptr<sp::Mesh> mesh = trainer_mesh(config);
  cache::EmbeddingCache cache(*endpoint, cache::cache_options_from(config),
                              cache::redis_options_from(config));
  std::unique_ptr<RolloutSource> source;
  std::shared_ptr<cache::WeightChannel> channel;  // rank 0 announces versions to the rollout workers
  if (!args.rollouts.empty()) {
    source = std::make_unique<RolloutFileSource>(args.rollouts, cache);
  } else {
    const std::optional<cache::RedisEndpoint> queue = cache::configured_endpoint(config, "redis.queue_url");
    if (!queue) {
      throw InputError(
          {config.source_of("redis.queue_url"), 0, "redis.queue_url", ""},
          "the trainer reads rollout groups from the queue server's stream (or give --rollouts FILE)");
    }
    std::unique_ptr<cache::RolloutConsumer> consumer;
    if (mesh->rank() == 0) {
      channel = std::make_shared<cache::WeightChannel>(*queue, config.get<std::string>("redis.namespace"),
                                                       cache::redis_options_from(config));
      consumer = std::make_unique<cache::RolloutConsumer>(
          *queue, "trainer", cache::stream_options_from(config), cache::redis_options_from(config));
    }
    source = std::make_unique<RolloutStreamSource>(std::move(consumer), cache, mesh,
                                                   config.get<int64_t>("rollout.max_staleness"));
  }
  try {
    const RlRunSummary summary = run_rl(config, mesh, *source, channel);
    if (mesh->rank() == 0) {
      std::cout << fmt::format("train: step {} ({} this run), {} all-equal groups dropped{}\n",
                               summary.final_step, summary.steps, summary.groups_dropped,
                               summary.stopped ? ", stopped by a signal" : "");
    }
  } catch (const NonFiniteLoss& error) {
    LVRL_ERROR("{}", error.what());
    return kNonFiniteLossExit;
  }
  return 0;
}

const RegisterCommand train_command(
    "train", "RL fine-tuning on rollout groups (GRPO family; checkpoints, resume, metrics in run.dir)",
    [](CLI::App& app) {
      auto args = std::make_shared<TrainArgs>();
      app.add_option("--config", args->config_path, "run config (YAML)");
      app.add_option("--rollouts", args->rollouts,
                     "a rollout file (groups with their answers and rewards) instead of the queue's stream; "
                     "with the stream, redis.claim_idle_ms must exceed the time between checkpoints "
                     "(groups are acknowledged only once a checkpoint holds them)");
      app.add_option("--nproc", args->nproc, "local ranks to start (DP × SP with sp.size)")
          ->capture_default_str();
      app.add_option("overrides", args->overrides, "config overrides, key=value");
      return [args] { return run_train_command(*args); };
    });

}  // namespace
}  // namespace lvrl::trainer
