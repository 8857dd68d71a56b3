// Advantages: how good each answer was relative to what the policy usually does
// (docs/trainer.md#advantages). Rewards arrive one per answer, grouped by prompt through
// group_index [N] (answers of one prompt share an index in [0, K); any order, any group sizes).
// Per-answer estimators return one advantage per answer [N]; the caller broadcasts it over the
// answer's tokens. Reinforce++ returns one per token [N, T] (its KL penalty is per token).
//
// Per answer i of group g with G_g answers, r̄_g the group mean, s_g the group's unbiased std:
//   grpo (std on):        Â_i = (r_i − r̄_g) / (s_g + 1e-6)
//   grpo (std off, Dr. GRPO): Â_i = r_i − r̄_g
//   rloo:                 Â_i = r_i − mean_{j≠i} r_j = G_g/(G_g − 1)·(r_i − r̄_g)
//   reinforce_baseline:   x_i = r_i − r̄_g, then whitened over the batch's answers (see whiten below)
// A group whose rewards are all equal, and a group of one answer, gives exactly 0 (no signal, no NaN).
//
// Reinforce++ (no groups): per-token reward c_t = −β·kl_t, plus r_i on the answer's last token;
// return R_t = Σ_{s ≥ t} c_s over the answer's tokens (γ = 1); advantages = R whitened over every
// answer token of the batch.
//
// Whitening over a set of values x (answers, or answer tokens) with n members:
//   μ = Σx / n, σ² = (Σx² − n·μ²) / (n − 1) (unbiased), x̂ = (x − μ) / sqrt(σ² + 1e-8); n ≤ 1 → 0.
// The sums are MaskedMoments, so a caller whose batch is spread over ranks all-reduces the three sums
// and whitens with the totals: the result equals the single-device one. All arithmetic is float64;
// results come back in float64 (the caller casts).
#pragma once

#include <ATen/Tensor.h>

namespace lvrl {
class Config;
}

namespace lvrl::trainer {

enum class AdvantageEstimator { Grpo, Rloo, ReinforcePlusPlus, ReinforceBaseline };

struct AdvantageOptions {
  AdvantageEstimator estimator = AdvantageEstimator::Grpo;
  bool divide_by_std = true;  // GRPO only; false = Dr. GRPO

  // trainer.advantage, trainer.advantage_std (trainer/trainer_config.cpp).
  static AdvantageOptions from_config(const Config& config);
  bool per_token() const { return estimator == AdvantageEstimator::ReinforcePlusPlus; }
};

inline constexpr double kGrpoStdEpsilon = 1e-6;
inline constexpr double kWhitenEpsilon = 1e-8;

// rewards [N] float, group_index [N] int (values in [0, K)) → [N] float64. Grpo, Rloo or
// ReinforceBaseline (Reinforce++ is per token: reinforce_pp_advantages).
at::Tensor sequence_advantages(const AdvantageOptions& options, const at::Tensor& rewards,
                               const at::Tensor& group_index);

at::Tensor grpo_advantages(const at::Tensor& rewards, const at::Tensor& group_index, bool divide_by_std);
at::Tensor rloo_advantages(const at::Tensor& rewards, const at::Tensor& group_index);
at::Tensor reinforce_baseline_advantages(const at::Tensor& rewards, const at::Tensor& group_index);

// Σx, Σx², n over the selected values, float64 — all-reduce them (sum) across ranks before whiten().
struct MaskedMoments {
  double sum = 0;
  double sum_squares = 0;
  double count = 0;
  MaskedMoments& operator+=(const MaskedMoments& other);
};
// values [...] float, mask [...] bool of the same shape (undefined = all).
MaskedMoments masked_moments(const at::Tensor& values, const at::Tensor& mask = {});
// (values − μ) / sqrt(σ² + 1e-8) from the given (global) moments, 0 where masked; float64.
at::Tensor whiten(const at::Tensor& values, const MaskedMoments& moments, const at::Tensor& mask = {});

// Reinforce++'s returns before whitening. rewards [N] float (the answer's final reward), kl [N, T]
// float (per-token KL to the reference, e.g. kl_per_token(K1, ...); undefined or kl_coef 0 = none),
// mask [N, T] bool (answer tokens; every row has at least one) → [N, T] float64, 0 where masked.
at::Tensor reinforce_pp_returns(const at::Tensor& rewards, const at::Tensor& kl, const at::Tensor& mask,
                                double kl_coef);
// The single-device whole: whiten(returns, masked_moments(returns, mask), mask).
at::Tensor reinforce_pp_advantages(const at::Tensor& rewards, const at::Tensor& kl, const at::Tensor& mask,
                                   double kl_coef);

}  // namespace lvrl::trainer
