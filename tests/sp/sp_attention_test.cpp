// Sequence-parallel attention against a single-process float64 reference, with real Gloo ranks.
//
// The reference itself (sp/reference_attention.h) is first checked against LibTorch's autograd of
// the plain formula softmax(q·kᵀ/√D + mask)·v in float64 (≤ 1e-12), and against what one key alone
// must give (the first causal query sees only key 0: out = v[0]).
//
// Every matrix case runs `lvrl sp check` (P ranks through sp/rank_run.h) and asserts on its JSON line:
//   max |sp − reference| / max |reference| of out, dq, dk, dv ≤ 1e-10 (float64), ≤ 1e-5 (float32);
//   padding rows of dq, dk, dv exactly zero; bytes_sent() of the attention's forward + backward
//   within 1% of expected_bytes() on every rank (the check's own exit code covers the per-rank
//   comparison; the test re-checks the maxima).
// The matrix covers every mode × causal/full × H/H_kv ∈ {8/8, 8/2, 6/1}, P ∈ {1, 2, 3, 4}, hybrid
// U×R ∈ {2×2, 1×4, 4×1, 2×1}, batch 2, both dtypes, lengths that P (or 2P, or C·U) does not
// divide — 1000 over P = 3 among them — a shard that is all padding, Ulysses head splits that are
// uneven (6 heads over 4, 8 over 3) and that replicate K/V heads (8/2 and 6/1 over U = 4), and
// small blockwise tiles so tile masks meet chunk boundaries. Sizes stay small (D = 8): the cost is
// the LibTorch process starts, one per rank.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "core/tensor_compare.h"
#include "sp/reference_attention.h"
#include "tests/support/run_process.h"

namespace lvrl::sp {
namespace {

struct CheckCase {
  std::string name;
  int nproc = 1;
  std::string mode;
  int ulysses = 0, ring = 0;  // hybrid only
  int64_t seq = 64;
  int heads = 8, kv_heads = 8;
  bool causal = false;
  int batch = 1;
  std::string dtype = "float64";
  int64_t block = 256;
  uint64_t seed = 1;
};

// gtest prints the case by name (the test's name) instead of its bytes.
void PrintTo(const CheckCase& c, std::ostream* os) {
  *os << c.name;
}

std::vector<std::string> check_args(const CheckCase& c) {
  std::vector<std::string> args = {"sp",         "check",
                                   "--nproc",    std::to_string(c.nproc),
                                   "--mode",     c.mode,
                                   "--seq",      std::to_string(c.seq),
                                   "--heads",    std::to_string(c.heads),
                                   "--kv-heads", std::to_string(c.kv_heads),
                                   "--head-dim", "8",
                                   "--batch",    std::to_string(c.batch),
                                   "--dtype",    c.dtype,
                                   "--block",    std::to_string(c.block),
                                   "--seed",     std::to_string(c.seed)};
  if (c.ulysses > 0) args.insert(args.end(), {"--ulysses", std::to_string(c.ulysses)});
  if (c.ring > 0) args.insert(args.end(), {"--ring", std::to_string(c.ring)});
  if (c.causal) args.push_back("--causal");
  return args;
}

// `lvrl sp check ARGS...`: stdout only in `output`.
test::ProcessResult run_check(const std::vector<std::string>& args) {
  test::ProcessOptions options;
  options.env = {{"LVRL_DIST_TIMEOUT_S", "60"}};
  options.separate_stderr = true;
  options.timeout_s = 120;
  return test::run_lvrl(args, options);
}

// The last line of stdout that is a JSON object.
nlohmann::json report_of(const std::string& output) {
  std::istringstream lines(output);
  std::string line, last;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.front() == '{') last = line;
  }
  return last.empty() ? nlohmann::json() : nlohmann::json::parse(last, nullptr, /*allow_exceptions=*/false);
}

// softmax(q·kᵀ/√D + mask)·v in float64 through LibTorch's autograd: K/V heads repeated for their
// query heads, the mask as −inf above the diagonal.
ReferenceAttention autograd_attention(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                                      const at::Tensor& dout, bool causal) {
  const at::Tensor q = q_in.detach().clone().requires_grad_(true);
  const at::Tensor k = k_in.detach().clone().requires_grad_(true);
  const at::Tensor v = v_in.detach().clone().requires_grad_(true);
  const int64_t group = q.size(2) / k.size(2), length = q.size(1);
  const at::Tensor qh = q.transpose(1, 2);                              // [B, H, L, D]
  const at::Tensor kh = k.repeat_interleave(group, 2).transpose(1, 2);  // [B, H, L, D]
  const at::Tensor vh = v.repeat_interleave(group, 2).transpose(1, 2);  // [B, H, L, D]
  at::Tensor scores =
      qh.matmul(kh.transpose(2, 3)) / std::sqrt(static_cast<double>(q.size(3)));  // [B, H, L, L]
  if (causal) {
    const at::Tensor above = at::ones({length, length}, at::kBool).triu(1);
    scores = scores.masked_fill(above, -std::numeric_limits<double>::infinity());
  }
  const at::Tensor out = scores.softmax(-1).matmul(vh).transpose(1, 2);  // [B, L, H, D]
  torch::autograd::backward({out}, {dout});
  return {out.detach(), q.grad(), k.grad(), v.grad()};
}

TEST(ReferenceAttention, MatchesAutogradOfTheFormula) {
  at::manual_seed(5);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  for (const bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "full");
    const at::Tensor q = at::randn({2, 13, 6, 8}, f64), k = at::randn({2, 13, 2, 8}, f64);
    const at::Tensor v = at::randn({2, 13, 2, 8}, f64), dout = at::randn({2, 13, 6, 8}, f64);
    const ReferenceAttention ours = reference_attention(q, k, v, dout, causal);
    const ReferenceAttention theirs = autograd_attention(q, k, v, dout, causal);
    EXPECT_LE(max_relative_difference(ours.out, theirs.out), 1e-12);
    EXPECT_LE(max_relative_difference(ours.dq, theirs.dq), 1e-12);
    EXPECT_LE(max_relative_difference(ours.dk, theirs.dk), 1e-12);
    EXPECT_LE(max_relative_difference(ours.dv, theirs.dv), 1e-12);
    if (causal) {  // the first query sees key 0 alone, whose value comes back unchanged
      for (int64_t h = 0; h < 6; ++h) {
        EXPECT_TRUE(
            at::allclose(ours.out.select(1, 0).select(1, h), v.select(1, 0).select(1, h / 3), 0, 1e-15));
      }
    }
  }
}

class SpCheck : public testing::TestWithParam<CheckCase> {};

TEST_P(SpCheck, MatchesFloat64Reference) {
  const CheckCase& c = GetParam();
  const std::vector<std::string> args = check_args(c);
  SCOPED_TRACE(test::join_command(args));
  const test::ProcessResult result = run_check(args);
  const nlohmann::json report = report_of(result.output);
  ASSERT_TRUE(report.is_object()) << "no JSON line; exit " << result.exit_code << ", stdout:\n"
                                  << result.output << "\nstderr:\n"
                                  << result.error_output;
  SCOPED_TRACE(report.dump());
  std::cout << "[sp check] " << c.name << " " << report.dump() << "\n";
  EXPECT_EQ(result.exit_code, 0);
  const double tolerance = c.dtype == "float64" ? 1e-10 : 1e-5;
  for (const char* key : {"max_rel_err_out", "max_rel_err_dq", "max_rel_err_dk", "max_rel_err_dv"}) {
    ASSERT_TRUE(report[key].is_number()) << key << " is not a number (NaN?)";
    EXPECT_LE(report[key].get<double>(), tolerance) << key;
  }
  EXPECT_EQ(report["max_abs_padding_grad"].get<double>(), 0.0);
  const double measured = report["bytes_sent_per_rank"].get<double>();
  const double formula = report["bytes_formula"].get<double>();
  EXPECT_LE(std::abs(measured - formula), 0.01 * formula)
      << "measured " << measured << " formula " << formula;
  if (c.nproc > 1) {
    EXPECT_GT(measured, 0);
  }
}

CheckCase make(std::string name, int nproc, std::string mode, int64_t seq, int heads, int kv_heads,
               bool causal, int batch = 1, std::string dtype = "float64", int64_t block = 256) {
  CheckCase c;
  c.name = std::move(name);
  c.nproc = nproc;
  c.mode = std::move(mode);
  c.seq = seq;
  c.heads = heads;
  c.kv_heads = kv_heads;
  c.causal = causal;
  c.batch = batch;
  c.dtype = std::move(dtype);
  c.block = block;
  return c;
}

CheckCase hybrid(std::string name, int ulysses, int ring, int64_t seq, int heads, int kv_heads, bool causal,
                 int batch = 1, std::string dtype = "float64", int64_t block = 256) {
  CheckCase c =
      make(std::move(name), ulysses * ring, "hybrid", seq, heads, kv_heads, causal, batch, dtype, block);
  c.ulysses = ulysses;
  c.ring = ring;
  return c;
}

// One case per mode × mask × heads; P, batch, length, dtype and tile size vary across them so that
// every P, both batch sizes and both dtypes meet every mode. P is kept low where a higher P adds
// nothing: each rank is a LibTorch process start (~0.5 s of CPU).
const std::vector<CheckCase> kCases = {
    // Ulysses: uneven head splits (6 over 4, 8 over 3), K/V replication (8/2 and 6/1 over U = 4;
    // 8/2 over 3 puts query heads of two K/V groups on one rank, which gets a K/V head per query head).
    make("ulysses_p2_8x8_full", 2, "ulysses", 64, 8, 8, false),
    make("ulysses_p3_8x8_causal_l1000", 3, "ulysses", 1000, 8, 8, true),
    make("ulysses_p3_8x2_full_b2", 3, "ulysses", 50, 8, 2, false, 2),
    make("ulysses_p4_8x2_causal_b2", 4, "ulysses", 61, 8, 2, true, 2, "float64", 16),
    make("ulysses_p4_6x1_full", 4, "ulysses", 100, 6, 1, false),
    make("ulysses_p2_6x1_causal_f32", 2, "ulysses", 37, 6, 1, true, 1, "float32", 16),
    // Ring (contiguous chunks).
    make("ring_p2_8x8_full", 2, "ring", 64, 8, 8, false),
    make("ring_p4_8x8_causal_empty_shard", 4, "ring", 5, 8, 8, true),
    make("ring_p1_8x2_full", 1, "ring", 30, 8, 2, false),
    make("ring_p3_8x2_causal_l1000", 3, "ring", 1000, 8, 2, true, 1, "float64", 64),
    make("ring_p3_6x1_full_l1000_f32", 3, "ring", 1000, 6, 1, false, 1, "float32"),
    make("ring_p2_6x1_causal_b2", 2, "ring", 45, 6, 1, true, 2, "float64", 8),
    // Zigzag (2P chunks).
    make("zigzag_p2_8x8_causal", 2, "zigzag", 64, 8, 8, true, 1, "float64", 16),
    make("zigzag_p3_8x2_causal_l1000_b2", 3, "zigzag", 1000, 8, 2, true, 2, "float64", 128),
    make("zigzag_p4_6x1_causal_f32", 4, "zigzag", 77, 6, 1, true, 1, "float32"),
    make("zigzag_p2_8x8_full_b2", 2, "zigzag", 64, 8, 8, false, 2),
    make("zigzag_p3_8x2_full", 3, "zigzag", 50, 8, 2, false),
    make("zigzag_p1_6x1_full", 1, "zigzag", 9, 6, 1, false),
    // Hybrid: Ulysses inside U-groups, ring (zigzag when causal) across them.
    hybrid("hybrid_2x2_8x8_causal", 2, 2, 100, 8, 8, true, 1, "float64", 16),
    hybrid("hybrid_2x2_8x2_full_b2_f32", 2, 2, 61, 8, 2, false, 2, "float32"),
    hybrid("hybrid_1x4_6x1_causal", 1, 4, 90, 6, 1, true),
    hybrid("hybrid_4x1_8x2_causal", 4, 1, 63, 8, 2, true),
    hybrid("hybrid_4x1_6x1_full", 4, 1, 70, 6, 1, false),
    hybrid("hybrid_2x1_8x8_full", 2, 1, 33, 8, 8, false),
};

INSTANTIATE_TEST_SUITE_P(Matrix, SpCheck, testing::ValuesIn(kCases),
                         [](const testing::TestParamInfo<CheckCase>& info) { return info.param.name; });

TEST(SpCheckCommand, BadInputExitsTwo) {
  EXPECT_EQ(run_check({"sp", "check", "--mode", "spiral", "--seq", "8", "--heads", "2", "--kv-heads", "1",
                       "--head-dim", "4"})
                .exit_code,
            2);
  EXPECT_EQ(run_check({"sp", "check", "--nproc", "4", "--mode", "hybrid", "--ulysses", "3", "--ring", "2",
                       "--seq", "8", "--heads", "2", "--kv-heads", "1", "--head-dim", "4"})
                .exit_code,
            2);
}

}  // namespace
}  // namespace lvrl::sp
