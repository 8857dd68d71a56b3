// Attention backends against an independent float64 reference.
//
// The reference below is written from the definitions, one query row at a time: a visibility
// predicate per (row, query, key) instead of the interval bookkeeping of the backends, a two-pass
// softmax, and the textbook softmax gradient dS_j = P_j (dP_j − Σ_k P_k dP_k + dlse) instead of the
// FlashAttention identity Σ_k P_k dP_k = rowsum(dO ∘ O) the blockwise backward uses. Out, lse and
// the gradients of q, k, v for a random dout and a random dlse are compared as
// max |actual − reference| / max |reference|:
//   float64 inputs: ≤ 1e-12 (blockwise and naive);  float32 inputs: ≤ 1e-5 (reference run on the
//   float32-rounded inputs, so the bound measures accumulation only);  bf16 smoke: ≤ 2e-2.
// Rows that see no key must give out 0, lse −inf and zero gradients exactly, and nothing may be NaN.
#include "model/attention.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "core/tensor_compare.h"

namespace lvrl::model {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Case {
  std::string name;
  int64_t batch = 1, queries = 1, keys = 1, heads = 4, kv_heads = 4, head_dim = 8;
  MaskKind mask = MaskKind::Full;
  std::vector<int64_t> cu_seqlens;   // empty: one segment
  std::vector<int64_t> key_lengths;  // empty: every key valid
  BlockwiseOptions blocks{16, 32};
  double scale = 0;  // 0: 1/sqrt(D)
};

std::string describe(const Case& c, uint64_t seed) {
  std::string s = fmt::format(
      "case '{}' seed {}: B={} Lq={} Lk={} H={} Hkv={} D={} mask={} blocks={}/{} scale={}", c.name, seed,
      c.batch, c.queries, c.keys, c.heads, c.kv_heads, c.head_dim,
      c.mask == MaskKind::Causal ? "causal" : "full", c.blocks.query_block, c.blocks.key_block, c.scale);
  if (!c.cu_seqlens.empty()) s += fmt::format(" cu_seqlens={}", fmt::join(c.cu_seqlens, ","));
  if (!c.key_lengths.empty()) s += fmt::format(" key_lengths={}", fmt::join(c.key_lengths, ","));
  return s;
}

AttentionSpec spec_of(const Case& c) {
  AttentionSpec spec;
  spec.mask = c.mask;
  spec.scale = c.scale;
  if (!c.cu_seqlens.empty()) spec.cu_seqlens = at::tensor(c.cu_seqlens, at::kLong);
  if (!c.key_lengths.empty()) spec.key_lengths = at::tensor(c.key_lengths, at::kLong);
  return spec;
}

// ---- The reference ---------------------------------------------------------------------------------

int64_t segment_of(const std::vector<int64_t>& cu, int64_t position) {
  for (size_t s = 0; s + 1 < cu.size(); ++s) {
    if (cu[s] <= position && position < cu[s + 1]) return static_cast<int64_t>(s);
  }
  return -1;
}

bool visible(const Case& c, int64_t b, int64_t i, int64_t j) {
  const int64_t valid = c.key_lengths.empty() ? c.keys : c.key_lengths[b];
  if (j >= valid) return false;
  if (c.mask == MaskKind::Causal && j > i + valid - c.queries) return false;
  if (!c.cu_seqlens.empty() && segment_of(c.cu_seqlens, i) != segment_of(c.cu_seqlens, j)) return false;
  return true;
}

struct Results {
  at::Tensor out, lse, dq, dk, dv;
};

// All tensors float64: q, dout [B, Lq, H, D]; k, v [B, Lk, Hkv, D]; dlse [B, H, Lq].
Results reference_attention(const Case& c, at::Tensor q, at::Tensor k, at::Tensor v, at::Tensor dout,
                            at::Tensor dlse) {
  q = q.contiguous(), k = k.contiguous(), v = v.contiguous(), dout = dout.contiguous(),
  dlse = dlse.contiguous();
  const int64_t B = c.batch, Lq = c.queries, Lk = c.keys, H = c.heads, Hkv = c.kv_heads, D = c.head_dim;
  const double scale = c.scale > 0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(D));
  Results r{at::zeros_like(q), at::full({B, H, Lq}, -kInf, q.options()), at::zeros_like(q), at::zeros_like(k),
            at::zeros_like(v)};
  auto q_at = [&](int64_t b, int64_t i, int64_t h) {
    return q.data_ptr<double>() + ((b * Lq + i) * H + h) * D;
  };
  auto do_at = [&](int64_t b, int64_t i, int64_t h) {
    return dout.data_ptr<double>() + ((b * Lq + i) * H + h) * D;
  };
  auto o_at = [&](int64_t b, int64_t i, int64_t h) {
    return r.out.data_ptr<double>() + ((b * Lq + i) * H + h) * D;
  };
  auto dq_at = [&](int64_t b, int64_t i, int64_t h) {
    return r.dq.data_ptr<double>() + ((b * Lq + i) * H + h) * D;
  };
  auto kv_offset = [&](int64_t b, int64_t j, int64_t h) { return ((b * Lk + j) * Hkv + h) * D; };
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kv_head = h / (H / Hkv);
      for (int64_t i = 0; i < Lq; ++i) {
        std::vector<int64_t> seen;
        std::vector<double> s;
        for (int64_t j = 0; j < Lk; ++j) {
          if (!visible(c, b, i, j)) continue;
          double dot = 0;
          for (int64_t e = 0; e < D; ++e)
            dot += q_at(b, i, h)[e] * k.data_ptr<double>()[kv_offset(b, j, kv_head) + e];
          seen.push_back(j);
          s.push_back(scale * dot);
        }
        if (seen.empty()) continue;  // out 0, lse -inf, no gradient
        double max = -kInf;
        for (double x : s) max = std::max(max, x);
        double sum = 0;
        for (double x : s) sum += std::exp(x - max);
        const double lse = max + std::log(sum);
        r.lse.data_ptr<double>()[(b * H + h) * Lq + i] = lse;
        std::vector<double> p(s.size()), dp(s.size());
        double p_dot_dp = 0;
        for (size_t n = 0; n < seen.size(); ++n) {
          p[n] = std::exp(s[n] - lse);
          const double* vj = v.data_ptr<double>() + kv_offset(b, seen[n], kv_head);
          double dot = 0;
          for (int64_t e = 0; e < D; ++e) {
            o_at(b, i, h)[e] += p[n] * vj[e];
            dot += do_at(b, i, h)[e] * vj[e];
          }
          dp[n] = dot;
          p_dot_dp += p[n] * dot;
        }
        const double dl = dlse.data_ptr<double>()[(b * H + h) * Lq + i];
        for (size_t n = 0; n < seen.size(); ++n) {
          const double ds = p[n] * (dp[n] - p_dot_dp + dl);
          const int64_t offset = kv_offset(b, seen[n], kv_head);
          for (int64_t e = 0; e < D; ++e) {
            dq_at(b, i, h)[e] += scale * ds * k.data_ptr<double>()[offset + e];
            r.dk.data_ptr<double>()[offset + e] += scale * ds * q_at(b, i, h)[e];
            r.dv.data_ptr<double>()[offset + e] += p[n] * do_at(b, i, h)[e];
          }
        }
      }
    }
  }
  return r;
}

// ---- Running a backend and comparing -----------------------------------------------------------------

struct Inputs {
  at::Tensor q, k, v, dout, dlse;  // float64
};

Inputs random_inputs(const Case& c, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  Inputs in;
  in.q = at::randn({c.batch, c.queries, c.heads, c.head_dim}, gen, f64);
  in.k = at::randn({c.batch, c.keys, c.kv_heads, c.head_dim}, gen, f64);
  in.v = at::randn({c.batch, c.keys, c.kv_heads, c.head_dim}, gen, f64);
  in.dout = at::randn({c.batch, c.queries, c.heads, c.head_dim}, gen, f64);
  in.dlse = at::randn({c.batch, c.heads, c.queries}, gen, f64);
  return in;
}

Inputs rounded_to(const Inputs& in, at::ScalarType type) {
  auto round = [&](const at::Tensor& t) { return t.to(type).to(at::kDouble); };
  return {round(in.q), round(in.k), round(in.v), round(in.dout), round(in.dlse)};
}

// Out, lse and the gradients of a backend, all converted to float64 on the CPU. The loss is
// Σ out ∘ dout + Σ lse ∘ dlse, given to autograd as the two output gradients in one backward call
// (Σ out ∘ dout alone when !through_lse: the fused kernel's lse is not differentiable).
Results run_backend(AttentionBackend& backend, const Case& c, const Inputs& in, at::ScalarType type,
                    at::Device device = at::kCPU, bool through_lse = true) {
  // Fresh leaves (to() would return the input itself for float64, and gradients would accumulate).
  auto leaf = [&](const at::Tensor& t) {
    return t.to(device, type, /*non_blocking=*/false, /*copy=*/true).requires_grad_();
  };
  at::Tensor q = leaf(in.q), k = leaf(in.k), v = leaf(in.v);
  AttentionResult r = backend.forward(q, k, v, spec_of(c));
  EXPECT_EQ(r.out.scalar_type(), type);
  EXPECT_EQ(r.out.device().type(), device.type());
  EXPECT_EQ(r.lse.scalar_type(), type == at::kDouble ? at::kDouble : at::kFloat);
  EXPECT_EQ(r.lse.sizes(), at::IntArrayRef({c.batch, c.heads, c.queries}));
  if (through_lse) {
    torch::autograd::backward({r.out, r.lse},
                              {in.dout.to(device, type), in.dlse.to(device, r.lse.scalar_type())});
  } else {
    r.out.backward(in.dout.to(device, type));
  }
  // The kernels read q, k and v through views where the layout allows (B = 1, one K/V head): never write.
  EXPECT_TRUE(q.detach().equal(in.q.to(device, type)) && k.detach().equal(in.k.to(device, type)) &&
              v.detach().equal(in.v.to(device, type)))
      << "the backend changed its inputs";
  auto f64 = [](const at::Tensor& t) { return t.detach().to(at::kCPU, at::kDouble); };
  return {f64(r.out), f64(r.lse), f64(q.grad()), f64(k.grad()), f64(v.grad())};
}

// max |actual − expected| / max |expected|, after checking that both have −inf in the same places and
// that actual has no NaN or +inf.
double relative_error(const at::Tensor& actual, const at::Tensor& expected, const std::string& what) {
  EXPECT_FALSE(actual.isnan().any().item<bool>()) << what << " has NaN";
  EXPECT_FALSE(actual.isposinf().any().item<bool>()) << what << " has +inf";
  EXPECT_TRUE(actual.isneginf().equal(expected.isneginf()))
      << what << ": -inf where the reference has none, or v.v.";
  return max_relative_difference(actual.masked_fill(actual.isneginf(), 0),
                                 expected.masked_fill(expected.isneginf(), 0));
}

struct MaxErrors {
  double out = 0, lse = 0, grads = 0;
  void print(const std::string& label) const {
    std::cout << fmt::format("[ errors   ] {:<28} out {:.2e}  lse {:.2e}  dq/dk/dv {:.2e}\n", label, out, lse,
                             grads);
  }
};

void expect_close(const Results& actual, const Results& expected, double tolerance, MaxErrors& max) {
  const double out = relative_error(actual.out, expected.out, "out");
  const double lse = relative_error(actual.lse, expected.lse, "lse");
  const double dq = relative_error(actual.dq, expected.dq, "dq");
  const double dk = relative_error(actual.dk, expected.dk, "dk");
  const double dv = relative_error(actual.dv, expected.dv, "dv");
  EXPECT_LE(out, tolerance) << "out";
  EXPECT_LE(lse, tolerance) << "lse";
  EXPECT_LE(dq, tolerance) << "dq";
  EXPECT_LE(dk, tolerance) << "dk";
  EXPECT_LE(dv, tolerance) << "dv";
  max.out = std::max(max.out, out);
  max.lse = std::max(max.lse, lse);
  max.grads = std::max({max.grads, dq, dk, dv});
}

std::vector<Case> cases() {
  using M = MaskKind;
  std::vector<Case> all;
  auto add = [&](std::string name, int64_t B, int64_t Lq, int64_t Lk, int64_t H, int64_t Hkv, M mask,
                 BlockwiseOptions blocks) {
    Case c;
    c.name = std::move(name);
    c.batch = B, c.queries = Lq, c.keys = Lk, c.heads = H, c.kv_heads = Hkv, c.mask = mask, c.blocks = blocks;
    all.push_back(c);
    return &all.back();
  };
  add("full L37 H4/4", 1, 37, 37, 4, 4, M::Full, {16, 32});
  add("causal L37 H4/2 B2", 2, 37, 37, 4, 2, M::Causal, {16, 32});
  add("full L100 H6/1 B2", 2, 100, 100, 6, 1, M::Full, {32, 16});
  add("causal L100 H6/1", 1, 100, 100, 6, 1, M::Causal, {32, 16});
  add("causal L100 H4/2 blocks 7/5", 1, 100, 100, 4, 2, M::Causal, {7, 5});
  add("causal L37 one block", 1, 37, 37, 4, 2, M::Causal, {256, 256});
  add("full Lq5 Lk23 H4/2", 2, 5, 23, 4, 2, M::Full, {2, 8});
  add("causal bottom-right Lq5 Lk23", 2, 5, 23, 4, 2, M::Causal, {2, 8});
  add("causal Lq23 Lk5 (top rows empty)", 1, 23, 5, 4, 2, M::Causal, {8, 2});
  add("full segments with an empty one", 2, 50, 50, 4, 2, M::Full, {16, 16})->cu_seqlens = {0, 10, 10, 37,
                                                                                            50};
  add("causal segments", 1, 50, 50, 6, 1, M::Causal, {8, 16})->cu_seqlens = {0, 3, 20, 20, 21, 50};
  add("many small segments", 1, 64, 64, 4, 4, M::Full, {32, 32})->cu_seqlens = {0,  8,  16, 24, 32,
                                                                                40, 48, 56, 64};
  add("full key_lengths 17,0", 2, 9, 17, 4, 2, M::Full, {4, 8})->key_lengths = {17, 0};
  add("causal key_lengths 23,3", 2, 5, 23, 4, 2, M::Causal, {2, 8})->key_lengths = {23, 3};
  add("causal key_lengths 0,40,11", 3, 40, 40, 6, 1, M::Causal, {16, 16})->key_lengths = {0, 40, 11};
  add("decode causal key_lengths", 2, 1, 37, 6, 1, M::Causal, {16, 16})->key_lengths = {37, 20};
  add("decode full", 1, 1, 37, 4, 4, M::Full, {16, 16});
  add("explicit scale", 1, 37, 37, 4, 2, M::Causal, {16, 32})->scale = 0.3;
  return all;
}

uint64_t seed_of(size_t case_index) {
  return 1000 + case_index;
}

TEST(Attention, BlockwiseAndNaiveMatchFloat64Reference) {
  MaxErrors blockwise64, naive64;
  const std::vector<Case> all = cases();
  for (size_t n = 0; n < all.size(); ++n) {
    const Case& c = all[n];
    SCOPED_TRACE(describe(c, seed_of(n)));
    const Inputs in = random_inputs(c, seed_of(n));
    const Results expected = reference_attention(c, in.q, in.k, in.v, in.dout, in.dlse);
    auto blockwise = make_blockwise_attention(c.blocks);
    auto naive = make_naive_attention();
    {
      SCOPED_TRACE("blockwise float64");
      expect_close(run_backend(*blockwise, c, in, at::kDouble), expected, 1e-12, blockwise64);
    }
    {
      SCOPED_TRACE("naive float64");
      expect_close(run_backend(*naive, c, in, at::kDouble), expected, 1e-12, naive64);
    }
  }
  blockwise64.print("blockwise float64");
  naive64.print("naive float64");
}

TEST(Attention, BlockwiseFloat32MatchesReferenceOnRoundedInputs) {
  MaxErrors blockwise32, naive32;
  const std::vector<Case> all = cases();
  for (size_t n = 0; n < all.size(); ++n) {
    const Case& c = all[n];
    SCOPED_TRACE(describe(c, seed_of(n)));
    const Inputs in = rounded_to(random_inputs(c, seed_of(n)), at::kFloat);
    const Results expected = reference_attention(c, in.q, in.k, in.v, in.dout, in.dlse);
    {
      SCOPED_TRACE("blockwise float32");
      auto blockwise = make_blockwise_attention(c.blocks);
      expect_close(run_backend(*blockwise, c, in, at::kFloat), expected, 1e-5, blockwise32);
    }
    {
      SCOPED_TRACE("naive float32");
      auto naive = make_naive_attention();
      expect_close(run_backend(*naive, c, in, at::kFloat), expected, 1e-5, naive32);
    }
  }
  blockwise32.print("blockwise float32");
  naive32.print("naive float32");
}

TEST(Attention, BlockwiseBfloat16AccumulatesInFloat32) {
  Case c;
  c.name = "bf16 causal L100 H4/2";
  c.queries = c.keys = 100, c.heads = 4, c.kv_heads = 2, c.head_dim = 16, c.mask = MaskKind::Causal;
  SCOPED_TRACE(describe(c, 7));
  const Inputs in = rounded_to(random_inputs(c, 7), at::kBFloat16);
  const Results expected = reference_attention(c, in.q, in.k, in.v, in.dout, in.dlse);
  auto blockwise = make_blockwise_attention(c.blocks);
  MaxErrors bf16;
  // out and the gradients are rounded to bf16 (8 bits of mantissa) on the way out; lse stays float32.
  expect_close(run_backend(*blockwise, c, in, at::kBFloat16), expected, 2e-2, bf16);
  EXPECT_LE(bf16.lse, 1e-5);
  bf16.print("blockwise bf16");
}

// A row of the batch with key length 0 sees nothing: exactly zero output and gradients, lse −inf.
TEST(Attention, RowWithoutKeysGivesZerosAndNegativeInfinity) {
  Case c;
  c.name = "full key_lengths 17,0";
  c.batch = 2, c.queries = 9, c.keys = 17, c.heads = 4, c.kv_heads = 2, c.blocks = {4, 8};
  c.key_lengths = {17, 0};
  SCOPED_TRACE(describe(c, 11));
  const Inputs in = random_inputs(c, 11);
  for (const auto& backend : {make_blockwise_attention(c.blocks), make_naive_attention()}) {
    for (at::ScalarType type : {at::kDouble, at::kFloat}) {
      SCOPED_TRACE(backend->name() + " " + c10::toString(type));
      const Results r = run_backend(*backend, c, in, type);
      EXPECT_TRUE(r.out[1].eq(0).all().item<bool>());
      EXPECT_TRUE(r.lse[1].isneginf().all().item<bool>());
      EXPECT_TRUE(r.dq[1].eq(0).all().item<bool>());
      EXPECT_TRUE(r.dk[1].eq(0).all().item<bool>());
      EXPECT_TRUE(r.dv[1].eq(0).all().item<bool>());
      EXPECT_TRUE(r.lse[0].isfinite().all().item<bool>());
      for (const at::Tensor& t : {r.out, r.dq, r.dk, r.dv}) EXPECT_TRUE(t.isfinite().all().item<bool>());
    }
  }
}

// With lse unused, autograd hands the backward an undefined dlse; the plain kernels take one too.
TEST(Attention, GradientsWithoutLseGradient) {
  Case c;
  c.name = "causal L37 H4/2 B2, no dlse";
  c.batch = 2, c.queries = c.keys = 37, c.heads = 4, c.kv_heads = 2, c.mask = MaskKind::Causal;
  SCOPED_TRACE(describe(c, 13));
  const Inputs in = random_inputs(c, 13);
  const Results expected = reference_attention(c, in.q, in.k, in.v, in.dout, at::zeros_like(in.dlse));
  MaxErrors errors;

  at::Tensor q = in.q.clone().requires_grad_(), k = in.k.clone().requires_grad_(),
             v = in.v.clone().requires_grad_();
  AttentionResult r = make_blockwise_attention(c.blocks)->forward(q, k, v, spec_of(c));
  r.out.backward(in.dout);
  expect_close({r.out.detach(), r.lse.detach(), q.grad(), k.grad(), v.grad()}, expected, 1e-12, errors);

  const AttentionResult plain = blockwise_attention_forward(in.q, in.k, in.v, spec_of(c), c.blocks);
  EXPECT_FALSE(plain.out.requires_grad());
  const AttentionGrads g = blockwise_attention_backward(in.q, in.k, in.v, plain.out, plain.lse, in.dout,
                                                        at::Tensor(), spec_of(c), c.blocks);
  expect_close({plain.out, plain.lse, g.dq, g.dk, g.dv}, expected, 1e-12, errors);
}

// Only the lse output is used (what a sequence-parallel merge differentiates through).
TEST(Attention, GradientThroughLseAlone) {
  Case c;
  c.name = "full segments, lse only";
  c.queries = c.keys = 50, c.heads = 4, c.kv_heads = 2, c.blocks = {16, 16};
  c.cu_seqlens = {0, 10, 10, 37, 50};
  SCOPED_TRACE(describe(c, 17));
  const Inputs in = random_inputs(c, 17);
  const Results expected = reference_attention(c, in.q, in.k, in.v, at::zeros_like(in.dout), in.dlse);
  at::Tensor q = in.q.clone().requires_grad_(), k = in.k.clone().requires_grad_(),
             v = in.v.clone().requires_grad_();
  AttentionResult r = make_blockwise_attention(c.blocks)->forward(q, k, v, spec_of(c));
  r.lse.backward(in.dlse);
  MaxErrors errors;
  expect_close({r.out.detach(), r.lse.detach(), q.grad(), k.grad(), v.grad()}, expected, 1e-12, errors);
  EXPECT_TRUE(v.grad().eq(0).all().item<bool>());  // lse does not depend on v
}

TEST(Attention, DefaultBackendOnCpuIsBlockwise) {
  EXPECT_EQ(make_default_attention(at::Device(at::kCPU))->name(), "blockwise");
  EXPECT_EQ(make_naive_attention()->name(), "naive");
}

// ---- CUDA (skipped without a device) ------------------------------------------------------------------

// The blockwise backend is device-agnostic: every case on the GPU, float64 and float32.
TEST(AttentionCuda, BlockwiseMatchesReferenceOnCuda) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  MaxErrors cuda64, cuda32;
  const std::vector<Case> all = cases();
  for (size_t n = 0; n < all.size(); ++n) {
    const Case& c = all[n];
    SCOPED_TRACE(describe(c, seed_of(n)));
    auto blockwise = make_blockwise_attention(c.blocks);
    const Inputs in = random_inputs(c, seed_of(n));
    expect_close(run_backend(*blockwise, c, in, at::kDouble, at::kCUDA),
                 reference_attention(c, in.q, in.k, in.v, in.dout, in.dlse), 1e-12, cuda64);
    const Inputs in32 = rounded_to(in, at::kFloat);
    expect_close(run_backend(*blockwise, c, in32, at::kFloat, at::kCUDA),
                 reference_attention(c, in32.q, in32.k, in32.v, in32.dout, in32.dlse), 1e-5, cuda32);
  }
  cuda64.print("blockwise cuda float64");
  cuda32.print("blockwise cuda float32");
}

// The fused backend: its own kernel on full and square causal attention (float32 and bf16, GQA,
// lengths off the kernel's 32/64 tiles, head dims 8 and 64), the blockwise fallback on the rest of
// the cases; gradients through out (the kernel's lse is not differentiable, so dlse = 0).
TEST(AttentionCuda, FusedMatchesReferenceOnCuda) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  std::shared_ptr<AttentionBackend> fused = make_fused_attention();
  if (!fused) GTEST_SKIP() << "this LibTorch has no fused kernel (needs >= 2.1)";
  EXPECT_EQ(make_default_attention(at::Device(at::kCUDA))->name(), "fused");
  std::vector<Case> all = cases();
  auto add = [&](std::string name, int64_t B, int64_t L, int64_t H, int64_t Hkv, int64_t D, MaskKind mask) {
    Case c;
    c.name = std::move(name);
    c.batch = B, c.queries = c.keys = L, c.heads = H, c.kv_heads = Hkv, c.head_dim = D, c.mask = mask;
    all.push_back(c);
  };
  add("fused causal L300 H8/2 D64 B2", 2, 300, 8, 2, 64, MaskKind::Causal);
  add("fused full L333 H6/1 D64", 1, 333, 6, 1, 64, MaskKind::Full);
  MaxErrors fused32, fused16;
  for (size_t n = 0; n < all.size(); ++n) {
    const Case& c = all[n];
    SCOPED_TRACE(describe(c, seed_of(n)));
    Inputs in = rounded_to(random_inputs(c, seed_of(n)), at::kFloat);
    in.dlse.zero_();
    expect_close(run_backend(*fused, c, in, at::kFloat, at::kCUDA, /*through_lse=*/false),
                 reference_attention(c, in.q, in.k, in.v, in.dout, in.dlse), 1e-5, fused32);
    if (c.head_dim == 64 && c.cu_seqlens.empty() && c.key_lengths.empty()) {
      SCOPED_TRACE("bf16");
      Inputs in16 = rounded_to(in, at::kBFloat16);
      MaxErrors errors;
      // out and the gradients are rounded to bf16 (8 bits of mantissa); lse stays float32.
      expect_close(run_backend(*fused, c, in16, at::kBFloat16, at::kCUDA, false),
                   reference_attention(c, in16.q, in16.k, in16.v, in16.dout, in16.dlse), 2e-2, errors);
      EXPECT_LE(errors.lse, 1e-5);
      fused16.out = std::max(fused16.out, errors.out), fused16.lse = std::max(fused16.lse, errors.lse);
      fused16.grads = std::max(fused16.grads, errors.grads);
    }
  }
  fused32.print("fused cuda float32");
  fused16.print("fused cuda bf16");
}

TEST(AttentionDeathTest, MismatchedHeadsNameTheSizes) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const at::Tensor q = at::zeros({1, 4, 4, 8}), kv = at::zeros({1, 4, 3, 8});
  EXPECT_DEATH(check_attention_inputs(q, kv, kv, AttentionSpec{}),
               "H = 4 query heads is not a multiple of H_kv = 3 \\(q \\[1, 4, 4, 8\\], k \\[1, 4, 3, 8\\]");
  AttentionSpec spec;
  spec.key_lengths = at::tensor(std::vector<int64_t>{5}, at::kLong);
  EXPECT_DEATH(check_attention_inputs(q, q, q, spec), "key_lengths\\[0\\] = 5 outside \\[0, Lk = 4\\]");
}

}  // namespace
}  // namespace lvrl::model
