// Token sampling: device work batched over rows (mask, temperature, top-k, cumsum), the small
// truncated candidate lists handled per row on the CPU in float64.
//
// Rows take one of three paths: greedy (argmax), candidates (top-k and/or top-p: a sorted partial
// top-k copied to the CPU, then top-p, min-p and the draw there), or full (temperature with at most
// min-p: inverse CDF over the ids in their natural order, so no sort at all).
#include "rollout/sampler.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/DistributionsHelper.h>
#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <map>
#include <mutex>

#include "core/config.h"
#include "core/error.h"
#include "core/tensor_format.h"
#include "model/token_logprobs.h"

namespace lvrl::rollout {

namespace {

// Top-p without top-k starts from this many candidates and doubles until their mass reaches p.
constexpr int64_t kFirstTopPCandidates = 64;

double draw_uniform(at::Generator& generator) {  // [0, 1)
  auto* impl = at::check_generator<at::CPUGeneratorImpl>(generator);
  std::lock_guard<std::mutex> lock(generator.mutex());
  at::uniform_real_distribution<double> uniform(0.0, 1.0);
  return uniform(impl);
}

void check_range(bool ok, const char* key, const std::string& value, const char* expected) {
  if (!ok) throw InputError({"", 0, std::string("rollout.") + key, value}, expected);
}

struct RowChoice {
  int64_t token = 0;
  double sampled_logprob = 0;
};

// The first index whose cumulative weight exceeds u · total (weights ≥ 0, total > 0): a zero weight is
// never chosen.
size_t inverse_cdf(const std::vector<double>& weights, size_t count, double total, double u) {
  const double target = u * total;
  double cumulative = 0;
  size_t last_positive = 0;
  for (size_t i = 0; i < count; ++i) {
    cumulative += weights[i];
    if (weights[i] > 0) last_positive = i;
    if (cumulative > target) return i;
  }
  return last_positive;  // u · total rounded up to the sum
}

// z [n] (logits/T of the candidates, descending; −inf for masked ids), ids [n]. `mass_lse`: log of the
// mass top-p measures against — logsumexp of the candidates after top-k, of all allowed ids otherwise.
RowChoice pick_from_candidates(const std::vector<double>& z, const std::vector<int64_t>& ids, double mass_lse,
                               const SamplingParams& params, double u) {
  LVRL_ASSERT(!z.empty() && std::isfinite(z[0]), "no allowed id has a finite logit");
  size_t kept = z.size();
  if (params.top_p < 1.0) {
    double cumulative = 0;
    for (size_t i = 0; i < z.size(); ++i) {
      cumulative += std::exp(z[i] - mass_lse);
      if (cumulative >= params.top_p) {
        kept = i + 1;  // the token that crosses p stays
        break;
      }
    }
  }
  std::vector<double> weights(kept);  // relative to the most likely candidate
  for (size_t i = 0; i < kept; ++i) weights[i] = std::exp(z[i] - z[0]);
  if (params.min_p > 0.0) {
    size_t above = 0;
    while (above < kept && weights[above] >= params.min_p) ++above;
    kept = above;
  }
  double total = 0;
  for (size_t i = 0; i < kept; ++i) total += weights[i];
  const size_t chosen = inverse_cdf(weights, kept, total, u);
  return {ids[chosen], (z[chosen] - z[0]) - std::log(total)};
}

std::vector<double> to_doubles(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU, at::kDouble).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

std::vector<int64_t> to_longs(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU, at::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

at::Tensor index_tensor(const std::vector<int64_t>& rows, const at::Device& device) {
  return at::tensor(rows, at::kLong).to(device);
}

}  // namespace

SamplingParams SamplingParams::from_config(const Config& config) {
  SamplingParams params;
  params.temperature = config.get<double>("rollout.temperature");
  params.top_k = config.get<int64_t>("rollout.top_k");
  params.top_p = config.get<double>("rollout.top_p");
  params.min_p = config.get<double>("rollout.min_p");
  params.max_new_tokens = config.get<int64_t>("rollout.max_new_tokens");
  params.seed = static_cast<uint64_t>(config.get<int64_t>("rollout.seed"));
  params.stop = config.get<std::vector<std::string>>("rollout.stop");
  try {
    params.check();
  } catch (const InputError& e) {
    throw InputError({config.source_of(e.key()), 0, e.key(), e.value()}, e.problem());
  }
  return params;
}

void SamplingParams::check() const {
  check_range(std::isfinite(temperature) && temperature >= 0, "temperature", fmt::format("{}", temperature),
              "expected a finite temperature ≥ 0 (0 = greedy)");
  check_range(top_k >= 0, "top_k", std::to_string(top_k), "expected top_k ≥ 0 (0 = off)");
  check_range(top_p > 0 && top_p <= 1, "top_p", fmt::format("{}", top_p),
              "expected 0 < top_p ≤ 1 (1 = off); top_p 0 would keep only the most likely token: use "
              "temperature 0");
  check_range(min_p >= 0 && min_p <= 1, "min_p", fmt::format("{}", min_p),
              "expected 0 ≤ min_p ≤ 1 (0 = off)");
  check_range(max_new_tokens >= 1, "max_new_tokens", std::to_string(max_new_tokens),
              "expected at least one new token");
  for (size_t i = 0; i < stop.size(); ++i) {
    check_range(!stop[i].empty(), "stop", fmt::format("[{}] \"\"", i),
                "an empty stop string would end every answer");
  }
}

at::Generator row_generator(uint64_t seed) {
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

SampledTokens sample_tokens(const at::Tensor& logits, const std::vector<const SamplingParams*>& params,
                            std::vector<at::Generator>& generators, const at::Tensor& allowed) {
  const auto rows = static_cast<int64_t>(params.size());
  LVRL_ASSERT(logits.dim() == 2 && logits.scalar_type() == at::kFloat && logits.size(0) == rows &&
                  generators.size() == params.size() && allowed.dim() == 1 &&
                  allowed.scalar_type() == at::kBool && allowed.size(0) == logits.size(1),
              fmt::format("sample_tokens(logits {} {}, {} params, {} generators, allowed {} {})",
                          logits.sizes(), logits.scalar_type(), params.size(), generators.size(),
                          allowed.sizes(), allowed.scalar_type()));
  const int64_t vocab_rows = logits.size(1);
  const at::Device device = logits.device();

  std::vector<double> uniforms(rows), temperatures(rows);  // temperature 1 for greedy rows
  std::vector<int64_t> greedy_rows, full_rows;
  std::map<int64_t, std::vector<int64_t>> candidate_rows;  // first top-k size → rows
  bool need_full_lse = false;
  for (int64_t b = 0; b < rows; ++b) {
    const SamplingParams& p = *params[b];
    uniforms[b] = draw_uniform(generators[b]);  // one draw per row and step, greedy or not
    temperatures[b] = p.greedy() ? 1.0 : p.temperature;
    if (p.greedy()) {
      greedy_rows.push_back(b);
    } else if (p.top_k > 0) {
      candidate_rows[std::min(p.top_k, vocab_rows)].push_back(b);
    } else if (p.top_p < 1.0) {
      candidate_rows[std::min(kFirstTopPCandidates, vocab_rows)].push_back(b);
      need_full_lse = true;
    } else {
      full_rows.push_back(b);
    }
  }

  // [B, V] float32: logits/T of the allowed ids, −inf elsewhere.
  at::Tensor z =
      logits.masked_fill(allowed.to(device).logical_not(), -std::numeric_limits<float>::infinity());
  z.div_(at::tensor(temperatures, at::kDouble).to(device, at::kFloat).unsqueeze(1));

  std::vector<int64_t> tokens(rows, 0);
  std::vector<double> sampled_logprobs(rows, 0.0);

  if (!greedy_rows.empty()) {
    auto [best, best_ids] = z.index_select(0, index_tensor(greedy_rows, device)).max(1);  // [G]
    std::vector<double> best_z = to_doubles(best);
    std::vector<int64_t> ids = to_longs(best_ids);
    for (size_t i = 0; i < greedy_rows.size(); ++i) {
      LVRL_ASSERT(std::isfinite(best_z[i]),
                  fmt::format("row {}: no allowed id has a finite logit", greedy_rows[i]));
      tokens[greedy_rows[i]] = ids[i];
    }
  }

  std::vector<double> full_lse;  // [B] logsumexp of z: the mass top-p measures against without top-k
  if (need_full_lse) full_lse = to_doubles(at::logsumexp(z, 1));
  for (const auto& [first_k, group] : candidate_rows) {
    auto [values, ids] = z.index_select(0, index_tensor(group, device)).topk(first_k, 1);  // [R, k] sorted
    const auto k = static_cast<size_t>(first_k);
    std::vector<double> all_z = to_doubles(values);
    std::vector<int64_t> all_ids = to_longs(ids);
    for (size_t i = 0; i < group.size(); ++i) {
      const int64_t b = group[i];
      const SamplingParams& p = *params[b];
      std::vector<double> row_z(all_z.begin() + i * k, all_z.begin() + (i + 1) * k);
      std::vector<int64_t> row_ids(all_ids.begin() + i * k, all_ids.begin() + (i + 1) * k);
      double mass_lse = 0;
      if (p.top_k > 0) {
        const double top = row_z[0];
        double sum = 0;
        for (double v : row_z) sum += std::exp(v - top);
        mass_lse = top + std::log(sum);
      } else {
        mass_lse = full_lse[b];
        // Grow the partial top-k until its mass reaches p, all of V is in, or the rest is masked.
        for (int64_t size = first_k;;) {
          double mass = 0;
          for (double v : row_z) mass += std::exp(v - mass_lse);
          if (mass >= p.top_p || size == vocab_rows || std::isinf(row_z.back())) break;
          size = std::min(size * 2, vocab_rows);
          auto [more, more_ids] = z[b].topk(size);
          row_z = to_doubles(more);
          row_ids = to_longs(more_ids);
        }
      }
      RowChoice choice = pick_from_candidates(row_z, row_ids, mass_lse, p, uniforms[b]);
      tokens[b] = choice.token;
      sampled_logprobs[b] = choice.sampled_logprob;
    }
  }

  if (!full_rows.empty()) {
    const at::Tensor index = index_tensor(full_rows, device);
    std::vector<double> min_ps, us;
    for (int64_t b : full_rows) {
      min_ps.push_back(params[b]->min_p);
      us.push_back(uniforms[b]);
    }
    at::Tensor rows_z = z.index_select(0, index);                 // [R, V]
    at::Tensor weights = (rows_z - rows_z.amax(1, true)).exp_();  // [R, V] relative to the best
    weights.masked_fill_(weights < at::tensor(min_ps, at::kDouble).to(device, at::kFloat).unsqueeze(1), 0.0f);
    at::Tensor cumulative = weights.to(at::kDouble).cumsum(1);  // [R, V]
    at::Tensor total = cumulative.select(1, vocab_rows - 1);    // [R]
    at::Tensor target =
        at::minimum(at::tensor(us, at::kDouble).to(device) * total,
                    at::nextafter(total, at::zeros_like(total)));  // < total: a positive weight
    at::Tensor chosen =
        at::searchsorted(cumulative, target.unsqueeze(1), false, true);  // [R, 1] first cum > target
    std::vector<int64_t> ids = to_longs(chosen);
    std::vector<double> chosen_weight = to_doubles(weights.gather(1, chosen));
    std::vector<double> totals = to_doubles(total);
    for (size_t i = 0; i < full_rows.size(); ++i) {
      LVRL_ASSERT(totals[i] > 0 && std::isfinite(totals[i]),
                  fmt::format("row {}: no allowed id has a finite logit", full_rows[i]));
      tokens[full_rows[i]] = ids[i];
      sampled_logprobs[full_rows[i]] = std::log(chosen_weight[i]) - std::log(totals[i]);
    }
  }

  SampledTokens out;
  out.tokens = at::tensor(tokens, at::kLong);
  out.sampled_logprobs = at::tensor(sampled_logprobs, at::kDouble).to(at::kFloat);
  // The behaviour log-prob: the trainer's own function on the raw logits, per temperature.
  out.logprobs = at::empty({rows}, at::kFloat);
  std::map<double, std::vector<int64_t>> rows_by_temperature;
  for (int64_t b = 0; b < rows; ++b) rows_by_temperature[temperatures[b]].push_back(b);
  const at::Tensor tokens_on_device = out.tokens.to(device);
  for (const auto& [temperature, group] : rows_by_temperature) {
    if (static_cast<int64_t>(group.size()) == rows) {
      out.logprobs.copy_(model::logprobs_from_logits(logits, tokens_on_device, temperature));
    } else {
      const at::Tensor index = index_tensor(group, device);
      at::Tensor part = model::logprobs_from_logits(logits.index_select(0, index),
                                                    tokens_on_device.index_select(0, index), temperature);
      out.logprobs.index_copy_(0, at::tensor(group, at::kLong), part.to(at::kCPU, at::kFloat));
    }
  }
  return out;
}

}  // namespace lvrl::rollout
