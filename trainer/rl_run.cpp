#include "trainer/rl_run.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <map>

#include "core/clock.h"
#include "core/error.h"
#include "core/log.h"
#include "trainer/group_filter.h"
#include "trainer/ledger.h"
#include "trainer/metric_names.h"
#include "trainer/optimizer.h"
#include "trainer/policy_model.h"
#include "trainer/rl_step.h"
#include "trainer/training_run.h"
#include "trainer/weight_publisher.h"

namespace lvrl::trainer {

namespace {

// The groups of one step: DAPO's dynamic sampling over as many rounds as it allows.
struct GatheredBatch {
  RolloutBatch batch;
  int64_t dropped = 0;
  bool short_of_groups = false;
  double wait_s = 0;
};

GatheredBatch gather_groups(RolloutSource& source, DataCursor& cursor, int64_t wanted,
                            const DynamicSamplingOptions& options, const SourceContext& context) {
  GatheredBatch out;
  const auto start = SteadyClock::now();
  DynamicSamplingFilter filter(options, wanted);
  do {
    RolloutBatch round = source.next(wanted - filter.kept(), cursor, context);
    std::vector<std::vector<double>> rewards;
    for (const auto& group : round.groups) {
      std::vector<double>& values = rewards.emplace_back();
      for (const auto& sample : group.samples) values.push_back(sample.reward);
    }
    const DynamicSamplingFilter::Round kept = filter.offer(rewards);
    for (size_t index : kept.kept) {
      out.batch.groups.push_back(std::move(round.groups[index]));
      out.batch.video_rows.push_back(round.video_rows[index]);
    }
    out.batch.cache_hits += round.cache_hits;
    out.batch.cache_lookups += round.cache_lookups;
    out.batch.stale_dropped += round.stale_dropped;
    if (round.groups.empty() && context.stop_requested && context.stop_requested()) break;
  } while (filter.wait_for_more());
  out.dropped = filter.dropped();
  out.short_of_groups = filter.trained_short();
  out.wait_s = seconds_since(start);
  return out;
}

}  // namespace

RlRunSummary run_rl(const Config& config, const std::shared_ptr<sp::Mesh>& mesh, RolloutSource& source,
                    const std::shared_ptr<cache::WeightChannel>& channel) {
  const RlStepOptions step_options = RlStepOptions::from_config(config);
  const DynamicSamplingOptions sampling = DynamicSamplingOptions::from_config(config);
  const int64_t batch_groups = config.get<int64_t>("trainer.rollout_batch");

  PolicyModel policy = load_policy(config);
  model::QwenVL reference{nullptr};
  if (step_options.loss.kl.enabled()) reference = load_reference(config);
  const int64_t steps_per_batch =
      step_options.ppo_epochs * std::min<int64_t>(step_options.ppo_mini_batches, batch_groups);
  if (source.size() < 0 && config.get<int64_t>("trainer.steps") == 0) {
    throw InputError({config.source_of("trainer.steps"), 0, "trainer.steps", "0"},
                     "a rollout stream has no epochs: give the run's length in optimizer steps");
  }
  const int64_t steps = total_steps(config, source.size(), batch_groups, steps_per_batch);
  OptimizerOptions optimizer_options = OptimizerOptions::from_config(config);
  optimizer_options.steps = steps;
  optimizer_options.check();
  AdamW optimizer(policy.trained, optimizer_options);
  TrainingRun run(config, *policy.model, optimizer, mesh, "train");
  run.set_total_steps(steps);

  std::unique_ptr<WeightPublisher> publisher;
  if (run.writer()) {
    publisher = std::make_unique<WeightPublisher>(config.get<std::string>("run.dir") + "/weights", channel,
                                                  config.get<int64_t>("rollout.max_staleness") + 2);
  }
  std::unique_ptr<Ledger> ledger;
  if (run.writer()) ledger = std::make_unique<Ledger>(config.get<std::string>("run.dir"), run.state().step);
  RlTrainer trainer(*policy.model, reference ? reference.get() : nullptr, optimizer, mesh, step_options,
                    publisher.get(), ledger.get());
  // The rollouts a checkpoint holds are acknowledged once it is durable; those a resumed checkpoint
  // holds were trained on already.
  source.already_trained(run.state().unacknowledged_ids);
  run.set_after_save([&] {
    source.acknowledge(run.state().unacknowledged_ids);
    run.state().unacknowledged_ids.clear();
  });
  SourceContext context;
  context.stop_requested = [&] { return run.stop_requested(); };

  RlRunSummary summary;
  int64_t empty_in_a_row = 0;
  while (run.state().step < steps) {
    if (run.stop_requested()) {
      summary.stopped = true;
      break;
    }
    context.policy_version = run.state().step;
    GatheredBatch gathered = gather_groups(source, run.state().data, batch_groups, sampling, context);
    if (gathered.batch.groups.empty() && run.stop_requested()) {
      summary.stopped = true;
      break;
    }
    summary.groups_dropped += gathered.dropped;
    if (gathered.batch.groups.empty()) {
      // Every group offered had equal rewards. A whole pass like that means the data cannot teach
      // this policy anything under dynamic sampling: say so rather than loop forever.
      empty_in_a_row += batch_groups;
      if (source.size() >= 0 && empty_in_a_row > source.size()) {
        throw Error(
            fmt::format("step {}: every group of a whole pass over the {} rollout groups had equal "
                        "rewards; dynamic sampling leaves nothing to train on",
                        run.state().step + 1, source.size()));
      }
      LVRL_WARN("step {}: all {} groups had equal rewards after {} rounds; waiting for more",
                run.state().step + 1, gathered.dropped, sampling.max_rounds);
      continue;
    }
    empty_in_a_row = 0;
    std::map<std::string, double> extra = {
        {metric::kWaitRollouts, gathered.wait_s},
        {metric::kCacheHitRate, gathered.batch.cache_lookups > 0
                                    ? static_cast<double>(gathered.batch.cache_hits) /
                                          static_cast<double>(gathered.batch.cache_lookups)
                                    : 1.0},
        {metric::kGroupsDropped, static_cast<double>(gathered.dropped)},
        {metric::kShortSteps, gathered.short_of_groups ? 1.0 : 0.0},
        {metric::kStaleRecordsDropped, static_cast<double>(gathered.batch.stale_dropped)}};
    summary.steps += trainer.train(gathered.batch, run, extra);
  }
  run.finish();
  summary.final_step = run.state().step;
  return summary;
}

}  // namespace lvrl::trainer
