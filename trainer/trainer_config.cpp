// The config sections of training (docs/trainer.md): `trainer.*` (the algorithm, the step, the
// optimizer, the schedule, checkpoints), `trainer.kl`, `trainer.dynamic_sampling`, `trainer.overlong`,
// and `sp.*` (the trainer ranks' sequence-parallel layout). Defaults follow Long-RL's for Qwen2.5-VL
// video where it has one (docs/trainer.md#defaults).
#include "core/config.h"

namespace lvrl::trainer {
namespace {
const RegisterConfigSection trainer_section(
    {"trainer",
     "Policy optimisation: advantages, loss, optimizer, schedule, micro-batches, checkpoints",
     {
         ConfigKey::string("advantage", "grpo", "advantage estimator")
             .choices({"grpo", "rloo", "reinforce_pp", "reinforce_baseline"}),
         ConfigKey::boolean("advantage_std", true, "GRPO: divide by the group's std (false: Dr. GRPO)"),
         ConfigKey::string("ratio", "token", "importance ratio per token (PPO) or per sequence (GSPO)")
             .choices({"token", "sequence"}),
         ConfigKey::number("clip_low", 0.2, "PPO clip ε_low: ratio ≥ 1 − ε_low").range(0, 1),
         ConfigKey::number("clip_high", 0.3, "PPO clip ε_high (clip-higher): ratio ≤ 1 + ε_high")
             .range(0, 100),
         ConfigKey::number("dual_clip", 3.0, "dual-clip c for negative advantages (0 = off; else > 1)")
             .range(0, 1e6),
         ConfigKey::number("entropy_coef", 0.0, "entropy bonus coefficient").range(0, 100),
         ConfigKey::string("loss_agg", "token_mean", "how token losses become the step's loss")
             .choices({"token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "constant"}),
         ConfigKey::number("loss_agg_constant", 1024, "the normaliser of loss_agg=constant (tokens)")
             .range(1e-9, 1e12),
         ConfigKey::number("tis_cap", 0.0,
                           "truncated importance sampling against the behaviour (sampled) log-probs: "
                           "cap of the weight (0 = off)")
             .range(0, 1e6),
         ConfigKey::integer("ppo_epochs", 1, "passes over a rollout batch").range(1, 1000),
         ConfigKey::integer("ppo_mini_batches", 1, "mini-batches per rollout batch (one optimizer step each)")
             .range(1, 1e6),
         ConfigKey::string(
             "old_logprobs", "behaviour",
             "π_old: the record's behaviour log-probs, or a recompute pass before the first update")
             .choices({"behaviour", "recompute"}),
         ConfigKey::integer("rollout_batch", 8, "prompts per step (each with rollout.n answers)")
             .range(1, 1e6),
         ConfigKey::integer("micro_batch_tokens", 16384, "tokens per forward/backward (gradients accumulate)")
             .range(1, 1e12),
         ConfigKey::boolean("recompute", true, "recompute each decoder layer's activations in backward"),
         ConfigKey::number("lr", 1e-6, "AdamW learning rate (peak)").range(0, 10),
         ConfigKey::number("weight_decay", 1e-2, "AdamW weight decay").range(0, 10),
         ConfigKey::number_list("betas", {0.9, 0.999}, "AdamW β1, β2").range(0, 1),
         ConfigKey::number("eps", 1e-8, "AdamW ε").range(0, 1),
         ConfigKey::string("schedule", "constant", "learning-rate schedule after warmup")
             .choices({"constant", "cosine"}),
         ConfigKey::integer("warmup_steps", 0, "linear warmup steps").range(0, 1e9),
         ConfigKey::number("min_lr_ratio", 0.0, "cosine: final lr / peak lr").range(0, 1),
         ConfigKey::number("grad_clip", 1.0, "global gradient-norm clip (0 = off)").range(0, 1e9),
         ConfigKey::integer("steps", 100, "optimizer steps (0: from epochs)").range(0, 1e12),
         ConfigKey::integer("epochs", 0, "passes over the dataset when steps is 0").range(0, 1e9),
         ConfigKey::integer("save_every", 50, "checkpoint every N steps (0 = only on stop and at the end)")
             .range(0, 1e12),
         ConfigKey::integer("keep_checkpoints", 3, "newest checkpoints kept").range(1, 1e6),
         ConfigKey::string("resume", "auto",
                           "auto (the newest valid checkpoint of run.dir), never, or a PATH"),
         ConfigKey::integer("val_every", 0, "evaluate every N steps (0 = never)").range(0, 1e12),
     }});

const RegisterConfigSection kl_section(
    {"trainer.kl",
     "KL to the reference model (a frozen copy of the initial policy, loaded only when coef > 0)",
     {
         ConfigKey::number("coef", 1e-2, "β").range(0, 100),
         ConfigKey::string("estimator", "k3", "k1 (log-ratio), k2 (½ log-ratio²), k3 (low variance, clamped)")
             .choices({"k1", "k2", "k3"}),
         ConfigKey::string("mode", "loss", "a loss term, or subtracted from the reward")
             .choices({"loss", "reward"}),
     }});

const RegisterConfigSection dynamic_sampling_section(
    {"trainer.dynamic_sampling",
     "DAPO dynamic sampling: groups whose rewards are all equal carry no signal",
     {
         ConfigKey::boolean("enabled", false, "drop all-equal groups and wait for more"),
         ConfigKey::integer("max_rounds", 3,
                            "rounds of waiting for more groups before training on what is there")
             .range(1, 1e6),
     }});

const RegisterConfigSection overlong_section(
    {"trainer.overlong",
     "DAPO overlong shaping: a penalty growing over the last `buffer` tokens before max_new_tokens",
     {
         ConfigKey::integer("buffer", 0, "tokens (0 = off)").range(0, 1e9),
         ConfigKey::number("penalty", 1.0, "penalty at max_new_tokens").range(0, 1e6),
     }});

const RegisterConfigSection sp_section(
    {"sp",
     "The trainer ranks' sequence parallelism: WORLD_SIZE = DP × size",
     {
         ConfigKey::integer("size", 1, "SP ranks per data-parallel group").range(1, 1e6),
         ConfigKey::integer("ulysses", 0, "U (0: size, or size / ring)").range(0, 1e6),
         ConfigKey::integer("ring", 0, "R (0: size / ulysses)").range(0, 1e6),
         ConfigKey::string("mode", "ulysses", "attention across the SP ranks")
             .choices({"ulysses", "ring", "zigzag", "hybrid"}),
     }});
}  // namespace
}  // namespace lvrl::trainer
