// The names of the per-step scalars in RUN/metrics.jsonl and RUN/tb/. The first group are the names
// Long-RL / EasyR1 / verl users already chart and grep for, spelled exactly as those frameworks spell
// them; the second group are ours (docs/trainer.md, "Metrics and plots"). One place for the spelling,
// so that the trainer that logs a value and `lvrl plot` that charts it can never disagree.
#pragma once

namespace lvrl::metric {

// --- Names users know --------------------------------------------------------------------------
inline constexpr const char* kRewardOverall = "reward/overall";
inline constexpr const char* kRewardAccuracy = "reward/accuracy";
inline constexpr const char* kRewardFormat = "reward/format";

inline constexpr const char* kAdvantagesMean = "critic/advantages/mean";
inline constexpr const char* kAdvantagesMax = "critic/advantages/max";
inline constexpr const char* kAdvantagesMin = "critic/advantages/min";

inline constexpr const char* kResponseLengthMean = "response_length/mean";
inline constexpr const char* kResponseLengthMax = "response_length/max";
inline constexpr const char* kResponseLengthMin = "response_length/min";
// Fraction of responses cut at rollout.max_new_tokens.
inline constexpr const char* kResponseLengthClipRatio = "response_length/clip_ratio";

inline constexpr const char* kPgLoss = "actor/pg_loss";
inline constexpr const char* kPgClipfracHigher = "actor/pg_clipfrac_higher";
inline constexpr const char* kPgClipfracLower = "actor/pg_clipfrac_lower";
inline constexpr const char* kEntropyLoss = "actor/entropy_loss";
inline constexpr const char* kPpoKl = "actor/ppo_kl";
inline constexpr const char* kKlLoss = "actor/kl_loss";
inline constexpr const char* kGradNorm = "actor/grad_norm";
inline constexpr const char* kLearningRate = "actor/lr";

// Seconds per phase of one step.
inline constexpr const char* kTimingGeneration = "timing_s/gen";
inline constexpr const char* kTimingOldLogProbs = "timing_s/old";
inline constexpr const char* kTimingReferenceLogProbs = "timing_s/ref";
inline constexpr const char* kTimingAdvantages = "timing_s/adv";
inline constexpr const char* kTimingUpdateActor = "timing_s/update_actor";

// Tokens (prompt + response) per second per GPU, as EasyR1 reports it.
inline constexpr const char* kThroughput = "perf/throughput";
inline constexpr const char* kTimePerStep = "perf/time_per_step";
inline constexpr const char* kMaxMemoryAllocatedGb = "perf/max_memory_allocated_gb";

// --- Ours --------------------------------------------------------------------------------------
// Fraction of video rows found in the embedding cache.
inline constexpr const char* kCacheHitRate = "perf/cache_hit_rate";
// Trained tokens per second over all ranks.
inline constexpr const char* kTokensPerSecond = "perf/tokens_per_s";
// Model FLOP/s achieved by the update, summed over ranks.
inline constexpr const char* kAchievedFlops = "perf/achieved_flops";
// Peak host resident memory (GiB), beside the GPU peak above.
inline constexpr const char* kPeakHostMemoryGb = "perf/max_host_memory_gb";

// Seconds the trainer spent in each wait or phase of one step.
inline constexpr const char* kWaitRollouts = "timing_s/wait_rollouts";
inline constexpr const char* kForwardBackward = "timing_s/forward_backward";
inline constexpr const char* kOptimizer = "timing_s/optimizer";
inline constexpr const char* kPublishWeights = "timing_s/publish";

// The RL step's objective as aggregated (trainer.loss_agg), summed over ranks: what backward ran on.
inline constexpr const char* kActorLoss = "actor/loss";

// Seconds getting the step's video rows (cache reads, encodes on a miss).
inline constexpr const char* kTimingVideo = "timing_s/video";

// SFT: the step's mean cross-entropy per target token, and the target tokens of the step.
inline constexpr const char* kSftLoss = "sft/loss";
inline constexpr const char* kSftTokens = "sft/tokens";

// DAPO's dynamic sampling: all-equal groups dropped for the step, and 1 when the step trained on fewer
// groups than trainer.rollout_batch after trainer.dynamic_sampling.max_rounds rounds.
inline constexpr const char* kGroupsDropped = "rollout/groups_dropped";
inline constexpr const char* kShortSteps = "rollout/short_step";

// Rollout records dropped because their policy version was too old.
inline constexpr const char* kStaleRecordsDropped = "rollout/stale_dropped";
// |p_rollout - p_trainer| over response tokens (verl's names): how far the generation engine's
// probabilities drift from the trainer's recomputation.
inline constexpr const char* kRolloutProbsDiffMax = "training/rollout_probs_diff_max";
inline constexpr const char* kRolloutProbsDiffMean = "training/rollout_probs_diff_mean";

// Keys every metrics.jsonl line has besides the scalars; no scalar may use them.
inline constexpr const char* kStepKey = "step";
inline constexpr const char* kWallTimeKey = "wall_time";

}  // namespace lvrl::metric
