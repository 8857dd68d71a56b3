#include "trainer/rl_step.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/clock.h"
#include "core/error.h"
#include "sp/comm.h"
#include "trainer/kl.h"
#include "trainer/metric_names.h"
#include "trainer/policy_model.h"
#include "trainer/response_logprobs.h"
#include "trainer/step_flops.h"

namespace lvrl::trainer {

RlStepOptions RlStepOptions::from_config(const Config& config) {
  RlStepOptions options;
  options.advantage = AdvantageOptions::from_config(config);
  options.loss = PolicyLossOptions::from_config(config);
  options.overlong = OverlongOptions::from_config(config);
  options.gradient = GradientOptions::from_config(config);
  options.ppo_epochs = config.get<int64_t>("trainer.ppo_epochs");
  options.ppo_mini_batches = config.get<int64_t>("trainer.ppo_mini_batches");
  options.recompute_old_logprobs = config.get<std::string>("trainer.old_logprobs") == "recompute";
  options.gradient.entropy = options.loss.entropy_coef > 0;
  return options;
}

namespace {

// Sequences [begin, end) of `batch` (every video kept; dp_share keeps only the used ones).
TrainBatch slice(const TrainBatch& batch, int64_t begin, int64_t end) {
  TrainBatch out;
  out.temperature = batch.temperature;
  out.videos = batch.videos;
  out.sequences.assign(batch.sequences.begin() + begin, batch.sequences.begin() + end);
  return out;
}

struct MiniBatch {
  TrainBatch local;                        // this DP rank's share
  std::vector<int64_t> owned;              // local.sequences[k] is sequence owned[k] of the whole batch
  int64_t tokens = 0;                      // prompt + response tokens of the whole mini-batch (all ranks)
  double flops = 0;                        // its forward + backward model FLOPs (step_flops.h)
  int64_t first_group = 0, end_group = 0;  // its groups
};

double extra_value(const std::map<std::string, double>& scalars, const char* name) {
  const auto found = scalars.find(name);
  return found == scalars.end() ? 0.0 : found->second;
}

double mean_of(const std::vector<double>& values) {
  double sum = 0;
  for (double v : values) sum += v;
  return values.empty() ? 0.0 : sum / static_cast<double>(values.size());
}

}  // namespace

RlTrainer::RlTrainer(model::QwenVLImpl& policy, model::QwenVLImpl* reference, AdamW& optimizer,
                     std::shared_ptr<sp::Mesh> mesh, RlStepOptions options, WeightPublisher* publisher,
                     Ledger* ledger)
    : policy_(policy),
      reference_(reference),
      optimizer_(optimizer),
      mesh_(std::move(mesh)),
      options_(options),
      publisher_(publisher),
      ledger_(ledger) {
  for (const auto& item : optimizer_.parameters()) trained_.push_back(item.second);
  LVRL_ASSERT(!options_.loss.kl.enabled() || reference_ != nullptr,
              "KL to the reference needs a reference model");
}

int64_t RlTrainer::train(const RolloutBatch& batch, TrainingRun& run,
                         const std::map<std::string, double>& extra) {
  const auto& groups = batch.groups;
  const auto group_count = static_cast<int64_t>(groups.size());
  LVRL_ASSERT(group_count > 0, "a rollout batch without groups");
  auto step_clock = SteadyClock::now();  // the first step also carries the batch's preparation
  const sp::SpMode mode = options_.gradient.sp_mode;
  const int64_t budget = options_.gradient.micro_batch_tokens;

  // --- Rewards, lengths, the whole batch ---------------------------------------------------------
  std::vector<double> rewards, lengths, shaped_rewards;
  std::vector<int64_t> group_index, group_begin;
  std::vector<bool> truncated;
  std::map<std::string, std::vector<double>> components;
  for (int64_t g = 0; g < group_count; ++g) {
    group_begin.push_back(static_cast<int64_t>(rewards.size()));
    for (const cache::RolloutSample& sample : groups[g].samples) {
      rewards.push_back(sample.reward);
      lengths.push_back(static_cast<double>(sample.response_ids.size()));
      truncated.push_back(sample.finish_reason == "length");
      group_index.push_back(g);
      for (const auto& [name, value] : sample.rewards) components[name].push_back(value);
    }
  }
  group_begin.push_back(static_cast<int64_t>(rewards.size()));
  const auto answers = static_cast<int64_t>(rewards.size());
  at::Tensor reward_tensor = at::tensor(rewards, at::kDouble);
  if (options_.overlong.enabled()) {
    at::Tensor truncated_tensor = at::zeros({answers}, at::kBool);
    for (int64_t i = 0; i < answers; ++i) truncated_tensor[i] = static_cast<bool>(truncated[i]);
    reward_tensor = apply_overlong_shaping(options_.overlong, reward_tensor,
                                           at::tensor(lengths, at::kDouble).to(at::kLong), truncated_tensor);
  }
  std::vector<std::vector<double>> zero_advantages;
  for (const auto& group : groups) zero_advantages.emplace_back(group.samples.size(), 0.0);
  TrainBatch whole = batch_from_groups(groups, batch.video_rows, zero_advantages);

  // Mini-batches: contiguous runs of groups, each shared out over the DP ranks.
  const int64_t mini_batch_count = std::min(options_.ppo_mini_batches, group_count);
  std::vector<MiniBatch> minis(mini_batch_count);
  for (int64_t m = 0; m < mini_batch_count; ++m) {
    minis[m].first_group = group_count * m / mini_batch_count;
    minis[m].end_group = group_count * (m + 1) / mini_batch_count;
    const int64_t begin = group_begin[minis[m].first_group];
    const int64_t end = group_begin[minis[m].end_group];
    minis[m].local = dp_share(slice(whole, begin, end), mesh_->dp_rank(), mesh_->dp_size());
    for (int64_t i = begin + mesh_->dp_rank(); i < end; i += mesh_->dp_size()) minis[m].owned.push_back(i);
    for (int64_t i = begin; i < end; ++i) minis[m].tokens += whole.sequences[i].length();
    minis[m].flops = step_flops(policy_.config().text, slice(whole, begin, end)).total();
  }

  // --- π_old and the reference, before any update -------------------------------------------------
  std::map<std::string, double> scalars = extra;
  auto timed = SteadyClock::now();
  if (options_.recompute_old_logprobs) {
    at::Tensor drift = at::zeros({3}, at::kDouble);  // max, sum, tokens
    for (MiniBatch& mini : minis) {
      std::vector<std::vector<float>> behaviour;
      for (const TrainSequence& sequence : mini.local.sequences) behaviour.push_back(sequence.old_logprobs);
      const auto recomputed = response_logprobs(policy_, mini.local, mesh_, mode, budget);
      const ProbabilityDrift d = probability_drift(recomputed, behaviour);
      drift[0] = std::max(drift[0].item<double>(), d.max);
      drift[1] += d.sum;
      drift[2] += d.tokens;
      for (size_t k = 0; k < recomputed.size(); ++k) mini.local.sequences[k].old_logprobs = recomputed[k];
    }
    at::Tensor max = drift.narrow(0, 0, 1).clone();
    at::Tensor sums = drift.narrow(0, 1, 2).clone();
    // max over ranks: all-reduce of a one-hot spread is overkill; gather then take the max.
    const at::Tensor maxima = sp::all_gather_cat(mesh_->world(), max, 0);
    sp::all_reduce_sum(mesh_->dp(), sums);
    scalars[metric::kRolloutProbsDiffMax] = maxima.max().item<double>();
    scalars[metric::kRolloutProbsDiffMean] = sums[0].item<double>() / std::max(1.0, sums[1].item<double>());
  }
  scalars[metric::kTimingOldLogProbs] = seconds_since(timed);
  timed = SteadyClock::now();
  const KlOptions& kl = options_.loss.kl;
  if (kl.enabled()) {
    for (MiniBatch& mini : minis) {
      const auto reference = response_logprobs(*reference_, mini.local, mesh_, mode, budget);
      for (size_t k = 0; k < reference.size(); ++k) mini.local.sequences[k].ref_logprobs = reference[k];
    }
  }
  scalars[metric::kTimingReferenceLogProbs] = seconds_since(timed);

  // --- Advantages ----------------------------------------------------------------------------------
  timed = SteadyClock::now();
  // Per-token KL of π_old to the reference for one sequence, [1, T].
  auto sequence_kl = [&](const TrainSequence& sequence) {
    const at::Tensor old = at::tensor(sequence.old_logprobs, at::kDouble).unsqueeze(0);
    const at::Tensor ref = at::tensor(sequence.ref_logprobs, at::kDouble).unsqueeze(0);
    return kl_per_token(kl.estimator, old, ref, at::ones_like(old, at::kBool));
  };
  at::Tensor advantages_all;  // [answers] per-answer advantages (not Reinforce++)
  if (!options_.advantage.per_token()) {
    at::Tensor used = reward_tensor;
    if (kl.in_reward()) {
      at::Tensor kl_sums = at::zeros({answers}, at::kDouble);
      for (const MiniBatch& mini : minis) {
        for (size_t k = 0; k < mini.owned.size(); ++k) {
          kl_sums[mini.owned[k]] = sequence_kl(mini.local.sequences[k]).sum();
        }
      }
      sp::all_reduce_sum(mesh_->dp(), kl_sums);
      used = rewards_with_kl_penalty(used, kl_sums.unsqueeze(1), kl.coef);
    }
    advantages_all = sequence_advantages(options_.advantage, used, at::tensor(group_index, at::kLong));
    for (MiniBatch& mini : minis) {
      for (size_t k = 0; k < mini.owned.size(); ++k) {
        mini.local.sequences[k].advantage = advantages_all[mini.owned[k]].item<double>();
      }
    }
  } else {
    // Reinforce++: returns per token, whitened with moments over every answer token of the batch.
    std::vector<std::vector<at::Tensor>> returns(minis.size());
    MaskedMoments moments;
    for (size_t m = 0; m < minis.size(); ++m) {
      for (size_t k = 0; k < minis[m].owned.size(); ++k) {
        const TrainSequence& sequence = minis[m].local.sequences[k];
        const at::Tensor reward = reward_tensor.narrow(0, minis[m].owned[k], 1);
        const at::Tensor mask = at::ones({1, sequence.response_tokens()}, at::kBool);
        const at::Tensor kl_tokens = kl.in_reward() ? sequence_kl(sequence) : at::Tensor();
        returns[m].push_back(reinforce_pp_returns(reward, kl_tokens, mask, kl.in_reward() ? kl.coef : 0.0));
        moments += masked_moments(returns[m].back());
      }
    }
    at::Tensor packed = at::tensor({moments.sum, moments.sum_squares, moments.count}, at::kDouble);
    sp::all_reduce_sum(mesh_->dp(), packed);
    const MaskedMoments total{packed[0].item<double>(), packed[1].item<double>(), packed[2].item<double>()};
    for (size_t m = 0; m < minis.size(); ++m) {
      for (size_t k = 0; k < minis[m].owned.size(); ++k) {
        const at::Tensor whitened = whiten(returns[m][k], total).reshape(-1).contiguous();
        minis[m].local.sequences[k].token_advantages.assign(whitened.data_ptr<double>(),
                                                            whitened.data_ptr<double>() + whitened.numel());
      }
    }
  }
  scalars[metric::kTimingAdvantages] = seconds_since(timed);

  // --- The batch's own scalars ----------------------------------------------------------------------
  scalars[metric::kRewardOverall] = mean_of(rewards);
  if (components.count("accuracy")) scalars[metric::kRewardAccuracy] = mean_of(components["accuracy"]);
  if (components.count("format")) scalars[metric::kRewardFormat] = mean_of(components["format"]);
  scalars[metric::kResponseLengthMean] = mean_of(lengths);
  scalars[metric::kResponseLengthMax] = *std::max_element(lengths.begin(), lengths.end());
  scalars[metric::kResponseLengthMin] = *std::min_element(lengths.begin(), lengths.end());
  scalars[metric::kResponseLengthClipRatio] =
      static_cast<double>(std::count(truncated.begin(), truncated.end(), true)) /
      static_cast<double>(answers);
  if (advantages_all.defined()) {
    scalars[metric::kAdvantagesMean] = advantages_all.mean().item<double>();
    scalars[metric::kAdvantagesMax] = advantages_all.max().item<double>();
    scalars[metric::kAdvantagesMin] = advantages_all.min().item<double>();
  }
  for (const auto& group : groups) run.state().unacknowledged_ids.push_back(group.group_id);

  // --- Updates ---------------------------------------------------------------------------------------
  const bool sequence_ratio_over_ranks = options_.loss.ratio == RatioLevel::Sequence && mesh_->sp_size() > 1;
  int64_t steps = 0;
  for (int64_t epoch = 0; epoch < options_.ppo_epochs; ++epoch) {
    for (MiniBatch& mini : minis) {
      const auto update_start = SteadyClock::now();
      optimizer_.zero_grad();
      PolicyLossStats stats;
      const TokenLoss loss = [&](const TokenBatch& tokens) {
        PolicyLossInputs inputs;
        inputs.logprobs = tokens.logprobs;
        inputs.old_logprobs = tokens.old_logprobs;
        inputs.advantages = tokens.advantages;
        inputs.mask = tokens.mask;
        inputs.behaviour_logprobs = tokens.sampled_logprobs;
        inputs.ref_logprobs = tokens.ref_logprobs;
        inputs.entropy = tokens.entropy;
        if (sequence_ratio_over_ranks) {
          // GSPO's mean log-ratio over the whole answer, split over the SP ranks: the value is the
          // all-reduced sum, the gradient flows through this rank's tokens (the others' is theirs).
          const at::Tensor mask = tokens.mask.to(tokens.logprobs.scalar_type());
          const at::Tensor local = ((tokens.logprobs - tokens.old_logprobs) * mask).sum(1);  // [B]
          at::Tensor sums = at::stack({local.detach(), mask.sum(1)}).to(at::kCPU, at::kDouble).contiguous();
          sp::all_reduce_sum(mesh_->sp(), sums);
          const at::Tensor global = sums[0].to(local.options()),
                           count = sums[1].clamp_min(1).to(local.options());
          inputs.sequence_log_ratio = (local + (global - local.detach())) / count;
        }
        PolicyLossTerms terms = policy_loss(options_.loss, inputs);
        stats += terms.stats;
        return terms.per_token;
      };
      const GradientResult result = accumulate_gradients(policy_, mini.local, mesh_, options_.gradient, loss);
      at::Tensor packed = stats.packed();
      sp::all_reduce_sum(mesh_->world(), packed);
      stats = PolicyLossStats::unpacked(packed);
      const double forward_backward_s = seconds_since(update_start);
      const auto optimizer_start = SteadyClock::now();
      const double grad_norm = clip_grad_norm(trained_, optimizer_.options().grad_clip, nullptr);
      run.check_finite(result.loss, grad_norm);
      const double lr = optimizer_.step();
      std::map<std::string, double> step_scalars = scalars;
      step_scalars[metric::kPgLoss] = stats.mean(stats.pg_loss_sum);
      step_scalars[metric::kPgClipfracHigher] = stats.mean(stats.clipped_high);
      step_scalars[metric::kPgClipfracLower] = stats.mean(stats.clipped_low);
      step_scalars[metric::kPpoKl] = stats.mean(stats.ppo_kl_sum);
      if (kl.as_loss()) step_scalars[metric::kKlLoss] = stats.mean(stats.kl_sum);
      if (options_.gradient.entropy) step_scalars[metric::kEntropyLoss] = stats.mean(stats.entropy_sum);
      step_scalars[metric::kGradNorm] = grad_norm;
      step_scalars[metric::kLearningRate] = lr;
      step_scalars[metric::kForwardBackward] = forward_backward_s;
      step_scalars[metric::kOptimizer] = seconds_since(optimizer_start);
      step_scalars[metric::kTimingUpdateActor] = seconds_since(update_start);
      step_scalars[metric::kActorLoss] = result.loss;
      step_scalars[metric::kTokensPerSecond] =
          static_cast<double>(mini.tokens) / std::max(1e-9, step_scalars[metric::kTimingUpdateActor]);
      step_scalars[metric::kAchievedFlops] = mini.flops / std::max(1e-9, forward_backward_s);
      step_scalars[metric::kPeakHostMemoryGb] = peak_host_memory_gb();
      if (publisher_ != nullptr) {
        const auto publish_start = SteadyClock::now();
        publisher_->publish(policy_, run.state().step + 1);
        step_scalars[metric::kPublishWeights] = seconds_since(publish_start);
      }
      step_scalars[metric::kTimePerStep] =
          seconds_since(step_clock) + (steps == 0 ? extra_value(extra, metric::kWaitRollouts) : 0.0);
      if (ledger_ != nullptr) {
        ledger_->record(run.state().step + 1,
                        std::vector<cache::RolloutGroup>(groups.begin() + mini.first_group,
                                                         groups.begin() + mini.end_group));
      }
      run.complete_step(step_scalars);
      step_clock = SteadyClock::now();
      ++steps;
    }
  }
  return steps;
}

}  // namespace lvrl::trainer
