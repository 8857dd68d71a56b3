// The sampler against a float64 reference written here (sort, truncate in the documented order,
// renormalise): sample histograms by a chi-square test, the log-probs to 1e-6, hand examples for the
// truncation order, per-row seeds, the vocabulary mask; and StopChecker on a small synthetic tokenizer.
#include "rollout/sampler.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "core/config.h"
#include "model/bpe.h"
#include "model/pretokenizer.h"
#include "model/token_logprobs.h"
#include "rollout/stop_checker.h"
#include "rollout/token_mask.h"
#include "tests/support/expect_error.h"

namespace lvrl::rollout {
namespace {

// ---- the float64 reference ------------------------------------------------------------------------

// The distribution sample_tokens should draw from: mask → temperature → top-k → top-p over the
// renormalised top-k (crossing token kept) → min-p relative to the best → renormalise. [V] probabilities.
std::vector<double> reference_distribution(const std::vector<float>& logits, const std::vector<bool>& allowed,
                                           const SamplingParams& p) {
  const size_t v = logits.size();
  std::vector<size_t> order;
  for (size_t i = 0; i < v; ++i) {
    if (allowed[i]) order.push_back(i);
  }
  std::vector<double> z(v);
  const double temperature = p.temperature == 0 ? 1.0 : p.temperature;
  for (size_t i = 0; i < v; ++i) z[i] = static_cast<double>(logits[i]) / temperature;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return z[a] > z[b]; });
  if (p.temperature == 0) order.resize(1);
  if (p.top_k > 0 && order.size() > static_cast<size_t>(p.top_k)) order.resize(static_cast<size_t>(p.top_k));
  auto normalised = [&] {
    std::vector<double> prob(order.size());
    double sum = 0;
    for (size_t i = 0; i < order.size(); ++i) sum += prob[i] = std::exp(z[order[i]] - z[order[0]]);
    for (double& q : prob) q /= sum;
    return prob;
  };
  if (p.top_p < 1) {
    std::vector<double> prob = normalised();
    double cumulative = 0;
    size_t kept = order.size();
    for (size_t i = 0; i < order.size(); ++i) {
      cumulative += prob[i];
      if (cumulative >= p.top_p) {
        kept = i + 1;
        break;
      }
    }
    order.resize(kept);
  }
  if (p.min_p > 0) {
    std::vector<double> prob = normalised();
    size_t kept = 0;
    while (kept < order.size() && prob[kept] >= p.min_p * prob[0]) ++kept;
    order.resize(kept);
  }
  std::vector<double> result(v, 0.0);
  std::vector<double> prob = normalised();
  for (size_t i = 0; i < order.size(); ++i) result[order[i]] = prob[i];
  return result;
}

double log_softmax_at(const std::vector<float>& logits, double temperature, int64_t id) {
  double top = -INFINITY;
  for (float l : logits) top = std::max(top, l / temperature);
  double sum = 0;
  for (float l : logits) sum += std::exp(l / temperature - top);
  return logits[id] / temperature - top - std::log(sum);
}

// Q(a, x), the regularized upper incomplete gamma: the chi-square p-value is Q(dof / 2, χ² / 2).
double upper_incomplete_gamma(double a, double x) {
  if (x <= 0) return 1.0;
  const double log_prefactor = -x + a * std::log(x) - std::lgamma(a);
  if (x < a + 1) {  // series for P
    double term = 1.0 / a, sum = term;
    for (int n = 1; n < 10000 && std::abs(term) > std::abs(sum) * 1e-15; ++n) {
      term *= x / (a + n);
      sum += term;
    }
    return 1.0 - sum * std::exp(log_prefactor);
  }
  // Continued fraction for Q (modified Lentz).
  const double tiny = 1e-300;
  double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (int i = 1; i < 10000; ++i) {
    const double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (std::abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1 / d;
    const double delta = d * c;
    h *= delta;
    if (std::abs(delta - 1) < 1e-15) break;
  }
  return std::exp(log_prefactor) * h;
}

TEST(ChiSquare, IncompleteGammaMatchesTableValues) {
  // χ² critical values at p = 0.05 and 0.001 (standard tables).
  EXPECT_NEAR(upper_incomplete_gamma(1 / 2.0, 3.841 / 2), 0.05, 1e-4);
  EXPECT_NEAR(upper_incomplete_gamma(4 / 2.0, 9.488 / 2), 0.05, 1e-4);
  EXPECT_NEAR(upper_incomplete_gamma(10 / 2.0, 29.588 / 2), 0.001, 1e-5);
  EXPECT_NEAR(upper_incomplete_gamma(100 / 2.0, 124.342 / 2), 0.05, 1e-4);
}

// ---- drawing many samples -------------------------------------------------------------------------

struct Draws {
  std::vector<int64_t> tokens;
  std::vector<double> logprobs, sampled_logprobs;
};

// `rows` rows of the same logits, each with its own seed, for `steps` steps.
Draws draw(const std::vector<float>& logits, const std::vector<bool>& allowed, const SamplingParams& params,
           int64_t rows, int64_t steps, uint64_t seed) {
  const auto v = static_cast<int64_t>(logits.size());
  at::Tensor row = at::tensor(logits, at::kFloat);
  at::Tensor batch = row.unsqueeze(0).expand({rows, v}).contiguous();
  at::Tensor mask = at::zeros({v}, at::kBool);
  for (int64_t i = 0; i < v; ++i) mask.data_ptr<bool>()[i] = allowed[i];
  std::vector<const SamplingParams*> row_params(rows, &params);
  std::vector<at::Generator> generators;
  for (int64_t b = 0; b < rows; ++b) generators.push_back(row_generator(seed + b));
  Draws out;
  for (int64_t s = 0; s < steps; ++s) {
    SampledTokens sampled = sample_tokens(batch, row_params, generators, mask);
    EXPECT_EQ(sampled.tokens.size(0), rows);
    EXPECT_EQ(sampled.tokens.scalar_type(), at::kLong);
    EXPECT_EQ(sampled.logprobs.scalar_type(), at::kFloat);
    EXPECT_EQ(sampled.sampled_logprobs.scalar_type(), at::kFloat);
    auto tokens = sampled.tokens.accessor<int64_t, 1>();
    auto logprobs = sampled.logprobs.accessor<float, 1>();
    auto sampled_logprobs = sampled.sampled_logprobs.accessor<float, 1>();
    for (int64_t b = 0; b < rows; ++b) {
      out.tokens.push_back(tokens[b]);
      out.logprobs.push_back(logprobs[b]);
      out.sampled_logprobs.push_back(sampled_logprobs[b]);
    }
  }
  return out;
}

// Every draw inside the support, log-probs to 1e-6, and the histogram passing χ² at p ≥ 0.001.
void expect_matches_reference(const std::vector<float>& logits, const std::vector<bool>& allowed,
                              const SamplingParams& params, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "T " << params.temperature << " top_k " << params.top_k << " top_p "
                                  << params.top_p << " min_p " << params.min_p << " seed " << seed);
  const std::vector<double> expected = reference_distribution(logits, allowed, params);
  Draws draws = draw(logits, allowed, params, 400, 50, seed);  // 20k samples
  std::vector<int64_t> counts(logits.size(), 0);
  const double temperature = params.temperature == 0 ? 1.0 : params.temperature;
  int bad_logprobs = 0;
  for (size_t i = 0; i < draws.tokens.size(); ++i) {
    const int64_t id = draws.tokens[i];
    ASSERT_TRUE(id >= 0 && id < static_cast<int64_t>(logits.size()) && expected[id] > 0)
        << "sampled id " << id << " outside the support";
    ++counts[id];
    bad_logprobs += std::abs(draws.logprobs[i] - log_softmax_at(logits, temperature, id)) > 1e-6;
    bad_logprobs += std::abs(draws.sampled_logprobs[i] - std::log(expected[id])) > 1e-6;
  }
  EXPECT_EQ(bad_logprobs, 0);
  double chi_square = 0;
  int support = 0;
  for (size_t id = 0; id < logits.size(); ++id) {
    if (expected[id] == 0) continue;
    ++support;
    const double e = expected[id] * static_cast<double>(draws.tokens.size());
    chi_square += (counts[id] - e) * (counts[id] - e) / e;
  }
  ASSERT_GE(support, 2) << "a degenerate case";
  const double p_value = upper_incomplete_gamma((support - 1) / 2.0, chi_square / 2);
  EXPECT_GE(p_value, 0.001) << "χ² " << chi_square << " on " << support - 1 << " dof";
}

const std::vector<float> kToyLogits = {1.2f, -0.3f, 2.0f, 0.4f,  1.9f, -1.5f,
                                       0.9f, 0.0f,  1.5f, -0.8f, 0.7f, 0.2f};

std::vector<bool> all_allowed(size_t v) {
  return std::vector<bool>(v, true);
}

SamplingParams make_params(double temperature, int64_t top_k, double top_p, double min_p) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

TEST(Sampler, TemperatureTopKTopPMatchesTheReference) {
  const SamplingParams p = make_params(0.7, 5, 0.9, 0.0);
  // The case keeps 4 of the 5 top-k ids: top-p really truncates.
  const std::vector<double> expected = reference_distribution(kToyLogits, all_allowed(12), p);
  EXPECT_EQ(std::count_if(expected.begin(), expected.end(), [](double q) { return q > 0; }), 4);
  expect_matches_reference(kToyLogits, all_allowed(12), p, 1);
}

TEST(Sampler, TopPAloneMatchesTheReference) {
  expect_matches_reference(kToyLogits, all_allowed(12), make_params(1.0, 0, 0.8, 0.0), 2);
}

TEST(Sampler, MinPAloneMatchesTheReference) {
  const SamplingParams p = make_params(1.3, 0, 1.0, 0.3);
  const std::vector<double> expected = reference_distribution(kToyLogits, all_allowed(12), p);
  EXPECT_EQ(std::count_if(expected.begin(), expected.end(), [](double q) { return q > 0; }), 6);
  expect_matches_reference(kToyLogits, all_allowed(12), p, 3);
}

TEST(Sampler, PlainTemperatureMatchesTheReference) {
  expect_matches_reference(kToyLogits, all_allowed(12), make_params(0.8, 0, 1.0, 0.0), 4);
}

TEST(Sampler, TopPGrowsItsCandidatesPastTheFirst64) {
  std::vector<float> logits(300);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = 0.002f * static_cast<float>((i * 37) % 300);
  const SamplingParams p = make_params(1.0, 0, 0.9, 0.0);
  const std::vector<double> expected = reference_distribution(logits, all_allowed(300), p);
  EXPECT_GT(std::count_if(expected.begin(), expected.end(), [](double q) { return q > 0; }), 128);
  expect_matches_reference(logits, all_allowed(300), p, 5);
}

// ---- hand examples: the crossing token, the order of the steps -------------------------------------

// The ids drawn in 2000 samples from logits log(q), and their sampled log-probs (one per id).
std::map<int64_t, double> drawn_support(const std::vector<double>& q, const SamplingParams& params) {
  std::vector<float> logits;
  for (double x : q) logits.push_back(static_cast<float>(std::log(x)));
  Draws draws = draw(logits, all_allowed(q.size()), params, 200, 10, 11);
  std::map<int64_t, double> support;
  for (size_t i = 0; i < draws.tokens.size(); ++i) support[draws.tokens[i]] = draws.sampled_logprobs[i];
  return support;
}

TEST(SamplerOrder, TheTokenThatCrossesTopPIsKept) {
  // 0.5 < 0.7 ≤ 0.5 + 0.3: id 1 crosses p and stays, id 2 goes; id 1 then has 0.3 / 0.8.
  auto support = drawn_support({0.5, 0.3, 0.15, 0.05}, make_params(1.0, 0, 0.7, 0.0));
  ASSERT_EQ(support.size(), 2u);
  EXPECT_NEAR(support.at(0), std::log(0.5 / 0.8), 1e-6);
  EXPECT_NEAR(support.at(1), std::log(0.3 / 0.8), 1e-6);
}

TEST(SamplerOrder, TopPRunsOnTheRenormalisedTopK) {
  // Top-2 renormalised: 0.4/0.7 = 0.571 ≥ 0.5 keeps only id 0 (top-p on the full distribution first
  // would keep ids 0 and 1: 0.4 < 0.5).
  auto support = drawn_support({0.4, 0.3, 0.2, 0.1}, make_params(1.0, 2, 0.5, 0.0));
  ASSERT_EQ(support.size(), 1u);
  EXPECT_NEAR(support.at(0), 0.0, 1e-6);
}

TEST(SamplerOrder, MinPRunsAfterTopP) {
  // Top-p 0.6 keeps {0, 1} (0.5 < 0.6 ≤ 0.8); min-p 0.5 (≥ 0.25) keeps both. Min-p first would keep
  // {0, 1} renormalised to 0.625 / 0.375 and top-p 0.6 then only {0}.
  auto support = drawn_support({0.5, 0.3, 0.1, 0.1}, make_params(1.0, 0, 0.6, 0.5));
  ASSERT_EQ(support.size(), 2u);
  EXPECT_NEAR(support.at(1), std::log(0.3 / 0.8), 1e-6);
}

TEST(SamplerOrder, TemperatureComesBeforeTopP) {
  // T = 2 flattens 0.6 / 0.3 / 0.1 to √q / Σ√q = 0.473 / 0.334 / 0.193, so top-p 0.5 keeps {0, 1};
  // top-p before the temperature would keep only {0} (0.6 ≥ 0.5).
  auto support = drawn_support({0.6, 0.3, 0.1}, make_params(2.0, 0, 0.5, 0.0));
  ASSERT_EQ(support.size(), 2u);
  EXPECT_NEAR(support.at(0), std::log(std::sqrt(0.6) / (std::sqrt(0.6) + std::sqrt(0.3))), 1e-6);
}

// ---- per-row seeds --------------------------------------------------------------------------------

TEST(Sampler, ASeedReproducesARowAloneOrInABatch) {
  const int64_t v = 500, steps = 40;
  at::Tensor all_logits = at::randn({steps, 6, v}, at::detail::createCPUGenerator(7), at::kFloat) * 2;
  at::Tensor mask = at::ones({v}, at::kBool);
  const std::vector<SamplingParams> others = {make_params(0, 0, 1, 0), make_params(1.0, 3, 1, 0),
                                              make_params(0.5, 0, 0.95, 0.1), make_params(1.5, 0, 1, 0.05),
                                              make_params(0.9, 0, 1, 0)};
  // The row under test takes each path in turn: top-p (with growth), top-k + min-p, plain temperature.
  for (const SamplingParams& mine :
       {make_params(1.0, 0, 0.97, 0), make_params(0.8, 40, 1, 0.02), make_params(1.1, 0, 1, 0)}) {
    std::vector<const SamplingParams*> alone_params = {&mine};
    std::vector<at::Generator> alone_generators = {row_generator(1234)};
    std::vector<const SamplingParams*> batch_params = {&others[0], &others[1], &others[2],
                                                       &mine,      &others[3], &others[4]};
    std::vector<at::Generator> batch_generators;
    for (uint64_t seed : {1ull, 2ull, 3ull, 1234ull, 5ull, 6ull})
      batch_generators.push_back(row_generator(seed));
    std::vector<int64_t> alone, in_batch;
    for (int64_t s = 0; s < steps; ++s) {
      at::Tensor step_logits = all_logits[s];  // [6, V]; row 3 is the row under test
      alone.push_back(
          sample_tokens(step_logits.narrow(0, 3, 1).contiguous(), alone_params, alone_generators, mask)
              .tokens[0]
              .item<int64_t>());
      in_batch.push_back(
          sample_tokens(step_logits, batch_params, batch_generators, mask).tokens[3].item<int64_t>());
    }
    EXPECT_EQ(alone, in_batch) << "top_k " << mine.top_k << " top_p " << mine.top_p;
    EXPECT_GT(std::set<int64_t>(alone.begin(), alone.end()).size(), 5u);  // really sampled
  }
}

// ---- the vocabulary mask, on a synthetic tokenizer ------------------------------------------------

// Bytes 0–255, a merge "N"+"D" → 256, added tokens 257–264 (<|eot|> is eos_token; no <|vision_pad|>).
model::Tokenizer small_tokenizer() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[model::byte_level_encode(std::string(1, static_cast<char>(b)))] = b;
  vocab["ND"] = 256;
  nlohmann::json added = nlohmann::json::array();
  const char* names[] = {"<|endoftext|>",    "<|im_start|>",   "<|im_end|>",    "<|eot|>",
                         "<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|image_pad|>"};
  for (int i = 0; i < 8; ++i) {
    added.push_back({{"id", 257 + i}, {"content", names[i]}, {"special", true}, {"normalized", false}});
  }
  nlohmann::json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  nlohmann::json root = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", model::kQwenSplitPattern}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          byte_level}}}},
      {"post_processor", byte_level},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"vocab", vocab},
        {"merges", {"N D"}}}},
  };
  return model::Tokenizer::from_json(root.dump(), R"({"eos_token": "<|eot|>"})", "small");
}

constexpr int64_t kVocabRows = 272;  // the model pads 265 tokenizer ids to 272 embedding rows

TEST(TokenMask, AllowsTextAndEndTokensOnly) {
  model::Tokenizer tokenizer = small_tokenizer();
  ASSERT_EQ(tokenizer.vocab_size(), 265u);
  at::Tensor allowed = sampling_token_mask(tokenizer, kVocabRows);
  ASSERT_EQ(allowed.sizes(), at::IntArrayRef({kVocabRows}));
  ASSERT_EQ(allowed.scalar_type(), at::kBool);
  for (int64_t id = 0; id < kVocabRows; ++id) {
    const bool expected = id <= 260;  // bytes, "ND", endoftext, im_start, im_end, eot; then 4 vision, 7 pads
    EXPECT_EQ(allowed[id].item<bool>(), expected) << "id " << id;
  }
  test::expect_input_error([&] { sampling_token_mask(tokenizer, 200); }, "vocab_size");
}

TEST(TokenMask, MaskedIdsAreNeverSampledEvenWhenTheirLogitsAreLargest) {
  model::Tokenizer tokenizer = small_tokenizer();
  at::Tensor allowed = sampling_token_mask(tokenizer, kVocabRows);
  std::vector<float> logits(kVocabRows);
  for (int64_t id = 0; id < kVocabRows; ++id) logits[id] = -5.0f - 0.01f * static_cast<float>(id);  // no ties
  for (int64_t id = 261; id < kVocabRows; ++id) logits[id] = 20.0f + static_cast<float>(id % 3);    // masked
  logits['a'] = 3.0f;
  logits['b'] = 2.5f;
  logits['c'] = 1.0f;
  std::vector<bool> allowed_ids(kVocabRows);
  for (int64_t id = 0; id < kVocabRows; ++id) allowed_ids[id] = allowed[id].item<bool>();
  at::Tensor batch = at::tensor(logits, at::kFloat).unsqueeze(0).expand({100, kVocabRows}).contiguous();
  for (const SamplingParams& p :
       {make_params(0, 0, 1, 0), make_params(1.0, 0, 1, 0), make_params(1.0, 50, 1, 0),
        make_params(1.5, 0, 0.999, 0), make_params(2.0, 0, 1, 0.01)}) {
    SCOPED_TRACE(testing::Message() << "T " << p.temperature << " top_k " << p.top_k << " top_p " << p.top_p);
    std::vector<const SamplingParams*> row_params(100, &p);
    std::vector<at::Generator> generators;
    for (uint64_t seed = 0; seed < 100; ++seed) generators.push_back(row_generator(seed));
    const std::vector<double> expected = reference_distribution(logits, allowed_ids, p);
    std::set<int64_t> seen;
    for (int step = 0; step < 10; ++step) {
      SampledTokens sampled = sample_tokens(batch, row_params, generators, allowed);
      for (int64_t b = 0; b < 100; ++b) {
        const int64_t id = sampled.tokens[b].item<int64_t>();
        ASSERT_TRUE(allowed_ids[id]) << "sampled masked id " << id;
        ASSERT_GT(expected[id], 0) << "id " << id;
        seen.insert(id);
        // The full-softmax log-prob spans every row, masked ones included: what the trainer scores.
        // 1e-6 relative here: these log-probs reach −30, where a float32 step is 1.9e-6.
        const double reference = log_softmax_at(logits, p.greedy() ? 1.0 : p.temperature, id);
        EXPECT_NEAR(sampled.logprobs[b].item<double>(), reference, 1e-6 * std::max(1.0, std::abs(reference)));
      }
    }
    if (p.greedy()) {
      EXPECT_EQ(seen, std::set<int64_t>{'a'});
    } else {
      EXPECT_TRUE(seen.count('a') && seen.count('b'));
    }
  }
}

TEST(Sampler, GreedyIsTheArgmaxWithZeroSampledLogprob) {
  at::Tensor logits = at::tensor({0.1f, 3.0f, -1.0f, 2.9f, 0.0f, 1.0f, 5.0f, 2.0f}, at::kFloat).view({2, 4});
  at::Tensor mask = at::ones({4}, at::kBool);
  const SamplingParams greedy = make_params(0, 0, 1, 0);
  std::vector<const SamplingParams*> params = {&greedy, &greedy};
  std::vector<at::Generator> generators = {row_generator(0), row_generator(1)};
  SampledTokens sampled = sample_tokens(logits, params, generators, mask);
  EXPECT_EQ(sampled.tokens[0].item<int64_t>(), 1);
  EXPECT_EQ(sampled.tokens[1].item<int64_t>(), 2);
  EXPECT_EQ(sampled.sampled_logprobs[0].item<float>(), 0.0f);
  const double lse = std::log(std::exp(0.1) + std::exp(3.0) + std::exp(-1.0) + std::exp(2.9));
  EXPECT_NEAR(sampled.logprobs[0].item<double>(), 3.0 - lse, 1e-6);
}

TEST(Sampler, LogprobsAreTheTrainersTokenLogprobs) {
  // The trainer recomputes log-probs from the final hidden states with model::token_logprobs; the
  // sampler's come from the same arithmetic on the same logits, so they agree exactly on one device.
  at::Generator generator = at::detail::createCPUGenerator(3);
  at::Tensor hidden = at::randn({4, 16}, generator, at::kFloat);    // [B, D]
  at::Tensor weight = at::randn({300, 16}, generator, at::kFloat);  // [V, D] lm_head
  std::vector<at::Tensor>
      rows;  // one row at a time, as the trainer below: a batched matmul may round differently
  for (int64_t b = 0; b < 4; ++b) rows.push_back(at::matmul(hidden.narrow(0, b, 1), weight.t()));
  at::Tensor logits = at::cat(rows);  // [B, V]
  at::Tensor mask = at::ones({300}, at::kBool);
  const SamplingParams hot = make_params(1.3, 0, 0.9, 0), greedy = make_params(0, 0, 1, 0);
  std::vector<const SamplingParams*> params = {&hot, &greedy, &hot, &greedy};
  std::vector<at::Generator> generators = {row_generator(1), row_generator(2), row_generator(3),
                                           row_generator(4)};
  SampledTokens sampled = sample_tokens(logits, params, generators, mask);
  for (int64_t b = 0; b < 4; ++b) {
    model::LogprobOptions options;
    options.temperature = params[b]->greedy() ? 1.0 : params[b]->temperature;
    at::Tensor trainer =
        model::token_logprobs(hidden.narrow(0, b, 1), weight, sampled.tokens.narrow(0, b, 1), options);
    EXPECT_EQ(sampled.logprobs[b].item<float>(), trainer[0].item<float>()) << "row " << b;
  }
}

// ---- SamplingParams -------------------------------------------------------------------------------

TEST(SamplingParams, CheckNamesTheKeyAndValue) {
  auto refused = [](auto change, const std::string& key) {
    SamplingParams p;
    change(p);
    return test::expect_input_error([&] { p.check(); }, key);
  };
  SamplingParams().check();
  refused([](SamplingParams& p) { p.temperature = -0.5; }, "rollout.temperature");
  refused([](SamplingParams& p) { p.top_k = -1; }, "rollout.top_k");
  EXPECT_EQ(refused([](SamplingParams& p) { p.top_p = 0; }, "rollout.top_p").value(), "0");
  refused([](SamplingParams& p) { p.top_p = 1.5; }, "rollout.top_p");
  refused([](SamplingParams& p) { p.min_p = 2; }, "rollout.min_p");
  refused([](SamplingParams& p) { p.max_new_tokens = 0; }, "rollout.max_new_tokens");
  refused([](SamplingParams& p) { p.stop = {"END", ""}; }, "rollout.stop");
}

TEST(SamplingParams, FromConfigReadsTheRolloutKeys) {
  Config config = Config::parse(
      "rollout:\n  temperature: 0.6\n  top_k: 20\n  top_p: 0.95\n  min_p: 0.05\n"
      "  max_new_tokens: 64\n  seed: 9\n  stop: [\"</answer>\"]\n",
      "run.yaml");
  SamplingParams p = SamplingParams::from_config(config);
  EXPECT_EQ(p.temperature, 0.6);
  EXPECT_EQ(p.top_k, 20);
  EXPECT_EQ(p.top_p, 0.95);
  EXPECT_EQ(p.min_p, 0.05);
  EXPECT_EQ(p.max_new_tokens, 64);
  EXPECT_EQ(p.seed, 9u);
  EXPECT_EQ(p.stop, std::vector<std::string>{"</answer>"});
  InputError e = test::expect_input_error(
      [] { SamplingParams::from_config(Config::parse("rollout:\n  top_p: 0\n", "run.yaml")); },
      "rollout.top_p");
  EXPECT_NE(e.file().find("run.yaml"), std::string::npos) << e.what();
}

// ---- StopChecker ----------------------------------------------------------------------------------

FinishReason push_all(StopChecker& checker, const std::vector<model::TokenId>& ids) {
  FinishReason reason = FinishReason::None;
  for (model::TokenId id : ids) {
    EXPECT_EQ(reason, FinishReason::None) << "pushed past the end";
    reason = checker.push(id);
  }
  return reason;
}

TEST(StopChecker, AStopStringSpanningTwoTokensEndsAtTheTokenCompletingIt) {
  model::Tokenizer tokenizer = small_tokenizer();
  SamplingParams p;
  p.stop = {"zz", "EN"};
  StopChecker checker(tokenizer, p);
  // "x", "E", "ND": "EN" spans the last two tokens; the answer ends at "ND", which stays (with its "D").
  ASSERT_EQ(tokenizer.encode("xEND"), (std::vector<model::TokenId>{'x', 'E', 256}));
  EXPECT_EQ(checker.push('x'), FinishReason::None);
  EXPECT_EQ(checker.push('E'), FinishReason::None);
  EXPECT_EQ(checker.push(256), FinishReason::Stop);
  EXPECT_EQ(checker.matched_stop(), "EN");
  EXPECT_EQ(checker.text(), "xEND");
  EXPECT_EQ(checker.generated(), 3);
  EXPECT_STREQ(finish_reason_name(checker.finish_reason()), "stop");
}

TEST(StopChecker, EndTokensStop) {
  model::Tokenizer tokenizer = small_tokenizer();
  for (const char* end : {"<|eot|>", "<|im_end|>", "<|endoftext|>"}) {
    StopChecker checker(tokenizer, SamplingParams());
    EXPECT_EQ(push_all(checker, {'h', 'i', tokenizer.id_of(end)}), FinishReason::Stop) << end;
    EXPECT_EQ(checker.generated(), 3);
    EXPECT_EQ(checker.matched_stop(), "");
  }
  StopChecker checker(tokenizer, SamplingParams());  // <|im_start|> is no end
  EXPECT_EQ(checker.push(tokenizer.id_of("<|im_start|>")), FinishReason::None);
}

TEST(StopChecker, MaxNewTokensEndsWithLength) {
  model::Tokenizer tokenizer = small_tokenizer();
  SamplingParams p;
  p.max_new_tokens = 4;
  p.stop = {"never"};
  StopChecker checker(tokenizer, p);
  EXPECT_EQ(push_all(checker, {'a', 'b', 'c', 'd'}), FinishReason::Length);
  EXPECT_STREQ(finish_reason_name(FinishReason::Length), "length");
  // A stop on the last allowed token is a stop.
  StopChecker at_limit(tokenizer, p);
  EXPECT_EQ(push_all(at_limit, {'a', 'b', 'c', tokenizer.id_of("<|im_end|>")}), FinishReason::Stop);
}

TEST(StopChecker, AStopStringInsideAMultiByteCharacterWaitsForTheCharacter) {
  model::Tokenizer tokenizer = small_tokenizer();
  SamplingParams p;
  p.stop = {"\xE4\xBD\xA0"};  // 你, three byte tokens
  StopChecker checker(tokenizer, p);
  EXPECT_EQ(checker.push(0xE4), FinishReason::None);
  EXPECT_EQ(checker.push(0xBD), FinishReason::None);
  EXPECT_EQ(checker.push(0xA0), FinishReason::Stop);
}

}  // namespace
}  // namespace lvrl::rollout
