// The policy-gradient loss per token (docs/trainer.md#policy-loss): PPO-clip with clip-higher and
// dual-clip, or GSPO's sequence-level ratio; truncated importance sampling against the behaviour
// log-probs; KL to the reference as a loss term; an entropy bonus. It returns per-token terms — the
// step's loss is loss_aggregation.h's aggregate_loss of them, which owns the normalisation.
//
// Per answer token t of row b (all masked tokens are 0 and get no gradient):
//   token ratio:    log ρ_t = log π_θ,t − log π_old,t
//   sequence ratio (GSPO-token): log ρ_t = log π_θ,t − sg(log π_θ,t) + sg(m_b),
//                   m_b = mean over the answer's tokens of (log π_θ − log π_old)   (sg = detached)
//     — its value is GSPO's s_b = exp(m_b) on every token, its gradient s_b·∇log π_θ,t, so with
//       seq_mean_token_mean aggregation the gradient is exactly GSPO's.
//   log ρ is clamped to [−20, 20] before exp.
//   pg_t  = max(−Â·ρ, −Â·clip(ρ, 1 − ε_low, 1 + ε_high))
//   dual-clip (c > 1, Â < 0): pg_t = min(pg_t, −c·Â)
//   TIS (cap > 0): w_t = min(exp(log π_old,t − log μ_t), cap), detached, μ the behaviour
//                  (truncated, sampled-from) distribution; pg_t ← w_t·pg_t
//   loss_t = pg_t + β·kl_t (kl.h, when KL is a loss) − entropy_coef·H_t
// Gradient of pg_t w.r.t. log π_θ,t (token ratio): −Â·ρ·w where unclipped, 0 where clipped or
// dual-clipped.
#pragma once

#include <ATen/Tensor.h>

#include "trainer/kl.h"

namespace lvrl {
class Config;
}

namespace lvrl::trainer {

enum class RatioLevel { Token, Sequence };

struct PolicyLossOptions {
  RatioLevel ratio = RatioLevel::Token;
  double clip_low = 0.2;      // ε_low: ρ ≥ 1 − ε_low
  double clip_high = 0.3;     // ε_high: ρ ≤ 1 + ε_high (DAPO's clip-higher: 0.28)
  double dual_clip = 3.0;     // c; 0 = off, else > 1
  double entropy_coef = 0.0;  // 0 = no entropy term
  double tis_cap = 0.0;       // 0 = no truncated importance sampling
  KlOptions kl;               // a loss term only when kl.as_loss()

  // trainer.{ratio, clip_low, clip_high, dual_clip, entropy_coef, tis_cap} and trainer.kl.*;
  // InputError naming trainer.dual_clip when it is in (0, 1].
  static PolicyLossOptions from_config(const Config& config);
};

struct PolicyLossInputs {
  at::Tensor logprobs;            // [B, T] float: log π_θ of the sampled tokens, differentiable
  at::Tensor old_logprobs;        // [B, T] float: log π_old
  at::Tensor advantages;          // [B, T] float, or [B] (broadcast over the row's tokens)
  at::Tensor mask;                // [B, T] bool: answer tokens
  at::Tensor behaviour_logprobs;  // [B, T] float: the rollout's sampled (truncated) log-probs; for TIS
  at::Tensor ref_logprobs;        // [B, T] float: log π_ref; for KL as a loss
  at::Tensor entropy;             // [B, T] float, differentiable; for the entropy bonus
  // GSPO with an answer split over ranks (SP): m_b [B] float, the mean log-ratio over the whole
  // answer, all-reduced by the caller. Undefined: computed from these rows.
  at::Tensor sequence_log_ratio;
};

// Sums over answer tokens (float64), so ranks and micro-batches add them up; the means divide by
// `tokens`.
struct PolicyLossStats {
  double tokens = 0;
  double clipped_low = 0;   // Â < 0 and ρ < 1 − ε_low (clip active, no gradient)
  double clipped_high = 0;  // Â > 0 and ρ > 1 + ε_high (clip active, no gradient)
  double dual_clipped = 0;  // Â < 0 and the dual clip bound the loss
  double tis_capped = 0;    // TIS weight hit the cap
  double pg_loss_sum = 0;   // Σ pg_t (after TIS)
  double ratio_sum = 0;     // Σ ρ_t
  double ppo_kl_sum = 0;    // Σ (log π_old − log π_θ)
  double kl_sum = 0;        // Σ kl_t to the reference (0 when KL is not a loss)
  double entropy_sum = 0;   // Σ H_t (0 when no entropy given)

  static constexpr int kFields = 10;
  PolicyLossStats& operator+=(const PolicyLossStats& other);
  at::Tensor packed() const;                                  // [kFields] float64, for one all-reduce
  static PolicyLossStats unpacked(const at::Tensor& packed);  // inverse of packed()
  double mean(double sum) const { return tokens > 0 ? sum / tokens : 0.0; }
};

struct PolicyLossTerms {
  at::Tensor per_token;  // [B, T] float: loss_t, 0 where masked (what aggregate_loss takes)
  at::Tensor pg;         // [B, T] float: pg_t (after TIS), 0 where masked
  at::Tensor kl;         // [B, T] float: kl_t; undefined unless KL is a loss
  PolicyLossStats stats;
};

PolicyLossTerms policy_loss(const PolicyLossOptions& options, const PolicyLossInputs& inputs);

}  // namespace lvrl::trainer
