// Attention backends: blockwise (online softmax, own backward), naive (dense, autograd) and fused
// (LibTorch ≥ 2.1 on CUDA).
//
// Blockwise forward — the FlashAttention-2 recurrence. Queries are cut into blocks of `query_block`
// rows and keys into blocks of `key_block`; for a query block the running row maximum m, row sum l
// and unnormalised output acc are updated per key block:
//     S = (scale·Q) Kᵀ, masked to -inf            [rows, keys of the block]
//     m' = max(m, rowmax S);  P = exp(S − m');  α = exp(m − m')
//     l = α·l + rowsum P;     acc = α·acc + P V;  m = m'
// and at the end out = acc / l, lse = m + log l. Only one [rows, key_block] score tile lives at a
// time, so memory is O(L·block). m starts at the lowest finite value rather than -inf, so S − m'
// and m − m' never compute (−inf) − (−inf): a row that has seen no key keeps l = 0, acc = 0 and
// ends with out = 0, lse = −inf without a NaN.
//
// Blockwise backward recomputes each tile's probabilities from the saved lse instead of storing P:
//     P = exp(S − lse);  dP = dO Vᵀ;  dS = P ∘ (dP − Δ),  Δ = rowsum(dO ∘ O) − dlse
//     dQ += dS K · scale;  dK += dSᵀ (scale·Q);  dV += Pᵀ dO
// (the dlse term is the gradient of the returned lse: ∂lse/∂S_j = P_j).
//
// Row layout. q [B, Lq, H, D] is rearranged once into [B·Hkv, Lq·G, D] (G = H / Hkv query heads per
// key/value head), row i·G + g holding query i of head hkv·G + g. Then a query block is a contiguous
// slice of G·bq rows that all read the same K/V head, each tile is one batched matmul
// [B·Hkv, G·bq, D] × [B·Hkv, D, bk] with no K/V replication, and the GQA reduction of dK/dV over
// the group happens inside that matmul.
//
// Masks. Every mask kind here (full, bottom-right causal, segments, per-row key lengths and their
// combinations) lets query i of batch row b see an interval of keys [lo, hi). The intervals decide,
// per (query block, key block) tile, whether to skip it (no row sees any of its keys — causal upper
// tiles, other segments, keys past a row's length), compute it unmasked (every row sees every key),
// or apply an element mask; only tiles on a boundary pay for a mask.
#include "model/attention.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "core/error.h"

namespace lvrl::model {
namespace {

std::string sizes_of(const at::Tensor& t) {
  return t.defined() ? c10::str(t.sizes()) : "undefined";
}

struct Dims {
  int64_t batch = 0, queries = 0, keys = 0, heads = 0, kv_heads = 0, group = 0, head_dim = 0;
};

Dims dims_of(const at::Tensor& q, const at::Tensor& k) {
  Dims d;
  d.batch = q.size(0);
  d.queries = q.size(1);
  d.heads = q.size(2);
  d.head_dim = q.size(3);
  d.keys = k.size(1);
  d.kv_heads = k.size(2);
  d.group = d.heads / d.kv_heads;
  return d;
}

// float32 accumulation for float/half/bf16, float64 for float64.
at::ScalarType accumulate_type(const at::Tensor& q) {
  return q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

double softmax_scale(const AttentionSpec& spec, int64_t head_dim) {
  return spec.scale > 0 ? spec.scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

double lowest_finite(at::ScalarType type) {
  return type == at::kDouble ? -std::numeric_limits<double>::max()
                             : static_cast<double>(-std::numeric_limits<float>::max());
}

// ---- Row layouts --------------------------------------------------------------------------------

// The row layouts below are views of their input where it already has that layout and type (one
// K/V head on the rank and B = 1, as Ulysses leaves a rank whose K/V heads were replicated), fresh
// contiguous copies otherwise. The kernels only read them.

// x's values as a contiguous tensor of `type`: x itself where it is one, one copy otherwise.
at::Tensor contiguous_as(const at::Tensor& x, at::ScalarType type) {
  return x.scalar_type() == type
             ? x.contiguous()
             : x.to(type, /*non_blocking=*/false, /*copy=*/false, at::MemoryFormat::Contiguous);
}

// [B, Lq, H, D] → [B·Hkv, Lq·G, D] of `type`.
at::Tensor to_query_rows(const at::Tensor& x, const Dims& d, at::ScalarType type) {
  return contiguous_as(
             x.reshape({d.batch, d.queries, d.kv_heads, d.group, d.head_dim}).permute({0, 2, 1, 3, 4}), type)
      .view({d.batch * d.kv_heads, d.queries * d.group, d.head_dim});
}

// scale · q in the query-row layout, always fresh (one copy: the scaling makes it where the layout did not).
at::Tensor scaled_query_rows(const at::Tensor& q, const Dims& d, at::ScalarType type, double scale) {
  at::Tensor rows = to_query_rows(q, d, type);
  return rows.is_alias_of(q) ? rows.mul(scale) : rows.mul_(scale);
}

// [B·Hkv, Lq·G, D] → [B, Lq, H, D] of `type`.
at::Tensor from_query_rows(const at::Tensor& rows, const Dims& d, at::ScalarType type) {
  return rows.view({d.batch, d.kv_heads, d.queries, d.group, d.head_dim})
      .permute({0, 2, 1, 3, 4})
      .reshape({d.batch, d.queries, d.heads, d.head_dim})
      .to(type);
}

// [B, Lk, Hkv, D] → [B·Hkv, Lk, D] of `type`.
at::Tensor to_key_rows(const at::Tensor& x, const Dims& d, at::ScalarType type) {
  return contiguous_as(x.permute({0, 2, 1, 3}), type).view({d.batch * d.kv_heads, d.keys, d.head_dim});
}

// [B·Hkv, Lk, D] → [B, Lk, Hkv, D] of `type`.
at::Tensor from_key_rows(const at::Tensor& rows, const Dims& d, at::ScalarType type) {
  return rows.view({d.batch, d.kv_heads, d.keys, d.head_dim}).permute({0, 2, 1, 3}).contiguous().to(type);
}

// lse [B, H, Lq] → [B·Hkv, Lq·G], fresh.
at::Tensor lse_to_rows(const at::Tensor& lse, const Dims& d, at::ScalarType type) {
  return lse.reshape({d.batch, d.kv_heads, d.group, d.queries})
      .permute({0, 1, 3, 2})
      .to(type, /*non_blocking=*/false, /*copy=*/true, at::MemoryFormat::Contiguous)
      .view({d.batch * d.kv_heads, d.queries * d.group});
}

// [B·Hkv, Lq·G] → [B, H, Lq].
at::Tensor lse_from_rows(const at::Tensor& rows, const Dims& d) {
  return rows.view({d.batch, d.kv_heads, d.queries, d.group})
      .permute({0, 1, 3, 2})
      .reshape({d.batch, d.heads, d.queries});
}

// ---- Which keys each query sees ------------------------------------------------------------------

// Query i of batch row b sees keys [lo, hi); hi <= lo means it sees none.
struct KeyIntervals {
  int64_t batch = 0, queries = 0;
  std::vector<int64_t> lo, hi;      // [B·Lq], entry b·Lq + i
  at::Tensor lo_tensor, hi_tensor;  // [B, Lq] int64 on the inputs' device, for element masks

  bool sees_nothing(int64_t row) const { return hi[row] <= lo[row]; }
};

KeyIntervals key_intervals(const AttentionSpec& spec, const Dims& d, const at::Device& device) {
  KeyIntervals iv;
  iv.batch = d.batch;
  iv.queries = d.queries;
  iv.lo.assign(d.batch * d.queries, 0);
  iv.hi.assign(d.batch * d.queries, d.keys);
  // Segment of every query (Lq == Lk when segments are given).
  std::vector<int64_t> segment_begin(d.queries, 0), segment_end(d.queries, d.keys);
  if (spec.cu_seqlens.defined()) {
    const at::Tensor cu = spec.cu_seqlens.contiguous();
    const int64_t* bounds = cu.data_ptr<int64_t>();
    for (int64_t s = 0; s + 1 < cu.numel(); ++s) {
      for (int64_t i = bounds[s]; i < bounds[s + 1]; ++i) {
        segment_begin[i] = bounds[s];
        segment_end[i] = bounds[s + 1];
      }
    }
  }
  const at::Tensor lengths = spec.key_lengths.defined() ? spec.key_lengths.contiguous() : at::Tensor();
  for (int64_t b = 0; b < d.batch; ++b) {
    const int64_t valid = lengths.defined() ? lengths.data_ptr<int64_t>()[b] : d.keys;
    for (int64_t i = 0; i < d.queries; ++i) {
      int64_t lo = segment_begin[i];
      int64_t hi = std::min(segment_end[i], valid);
      if (spec.mask == MaskKind::Causal) hi = std::min(hi, i + valid - d.queries + 1);
      iv.lo[b * d.queries + i] = lo;
      iv.hi[b * d.queries + i] = std::max(hi, lo);
    }
  }
  const auto options = at::TensorOptions().dtype(at::kLong);
  iv.lo_tensor = at::from_blob(iv.lo.data(), {d.batch, d.queries}, options).clone().to(device);
  iv.hi_tensor = at::from_blob(iv.hi.data(), {d.batch, d.queries}, options).clone().to(device);
  return iv;
}

// [B, 1, bq, 1, bk] bool, true where query i0 + r of row b must not see key j0 + c; broadcasts over
// a score tile viewed as [B, Hkv, bq, G, bk].
at::Tensor hidden_keys(const KeyIntervals& iv, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  const at::Tensor keys = at::arange(j0, j1, iv.lo_tensor.options());       // [bk]
  const at::Tensor lo = iv.lo_tensor.narrow(1, i0, i1 - i0).unsqueeze(-1);  // [B, bq, 1]
  const at::Tensor hi = iv.hi_tensor.narrow(1, i0, i1 - i0).unsqueeze(-1);  // [B, bq, 1]
  return keys.lt(lo).logical_or_(keys.ge(hi)).view({iv.batch, 1, i1 - i0, 1, j1 - j0});
}

struct KeyBlock {
  int64_t begin = 0, end = 0;
  bool masked = false;  // some row of the query block sees only part of it
};
struct QueryBlock {
  int64_t begin = 0, end = 0;
  std::vector<KeyBlock> keys;  // empty: no row of the block sees any key
};

// One tile's raw scores q·kᵀ (scale folded into q), hidden keys at -inf: [BH, R, bk]. Forward and
// backward compute the same tiles, so they share this.
at::Tensor tile_scores(const at::Tensor& q_block /*[BH, R, D]*/, const at::Tensor& kr /*[BH, Lk, D]*/,
                       const KeyIntervals& iv, const QueryBlock& qb, const KeyBlock& kb, int64_t kv_heads,
                       int64_t group) {
  at::Tensor s = at::bmm(q_block, kr.narrow(1, kb.begin, kb.end - kb.begin).transpose(1, 2));
  if (kb.masked) {
    s.view({iv.batch, kv_heads, qb.end - qb.begin, group, kb.end - kb.begin})
        .masked_fill_(hidden_keys(iv, qb.begin, qb.end, kb.begin, kb.end), -INFINITY);
  }
  return s;
}

// The tiles worth computing. A query block's keys run from the lowest lo to the highest hi of its
// rows (for segments: from the start of its first query's segment to the end of its last's), cut
// into key_block pieces; a piece no row sees is skipped.
std::vector<QueryBlock> plan_blocks(const KeyIntervals& iv, const BlockwiseOptions& options) {
  std::vector<QueryBlock> plan;
  for (int64_t i0 = 0; i0 < iv.queries; i0 += options.query_block) {
    QueryBlock block;
    block.begin = i0;
    block.end = std::min(i0 + options.query_block, iv.queries);
    int64_t first = std::numeric_limits<int64_t>::max(), last = std::numeric_limits<int64_t>::min();
    for (int64_t b = 0; b < iv.batch; ++b) {
      for (int64_t i = block.begin; i < block.end; ++i) {
        const int64_t row = b * iv.queries + i;
        if (iv.sees_nothing(row)) continue;
        first = std::min(first, iv.lo[row]);
        last = std::max(last, iv.hi[row]);
      }
    }
    for (int64_t j0 = first; j0 < last; j0 += options.key_block) {
      const int64_t j1 = std::min(j0 + options.key_block, last);
      bool any_visible = false, all_visible = true;
      for (int64_t b = 0; b < iv.batch; ++b) {
        for (int64_t i = block.begin; i < block.end; ++i) {
          const int64_t row = b * iv.queries + i;
          any_visible |= !iv.sees_nothing(row) && iv.lo[row] < j1 && iv.hi[row] > j0;
          all_visible &= iv.lo[row] <= j0 && iv.hi[row] >= j1;
        }
      }
      if (any_visible) block.keys.push_back({j0, j1, !all_visible});
    }
    plan.push_back(std::move(block));
  }
  return plan;
}

void check_options(const BlockwiseOptions& options) {
  LVRL_ASSERT(
      options.query_block > 0 && options.key_block > 0,
      fmt::format("blockwise attention: block sizes must be positive, got query_block {} key_block {}",
                  options.query_block, options.key_block));
}

// ---- Autograd wrapper of the blockwise kernels ---------------------------------------------------

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class BlockwiseAttentionFunction : public torch::autograd::Function<BlockwiseAttentionFunction> {
 public:
  // Returns {out [B, Lq, H, D], lse [B, H, Lq]}; both differentiable.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const AttentionSpec& spec,
                               const BlockwiseOptions& options) {
    AttentionResult result = blockwise_attention_forward(q, k, v, spec, options);
    ctx->save_for_backward({q, k, v, result.out, result.lse});
    ctx->saved_data["mask"] = static_cast<int64_t>(spec.mask);
    ctx->saved_data["scale"] = spec.scale;
    if (spec.cu_seqlens.defined()) ctx->saved_data["cu_seqlens"] = spec.cu_seqlens;
    if (spec.key_lengths.defined()) ctx->saved_data["key_lengths"] = spec.key_lengths;
    ctx->saved_data["query_block"] = options.query_block;
    ctx->saved_data["key_block"] = options.key_block;
    // An unused lse (the usual case) then arrives as an undefined gradient instead of zeros.
    ctx->set_materialize_grads(false);
    return {result.out, result.lse};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3], &lse = saved[4];
    if (!grads[0].defined() && !grads[1].defined())
      return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    AttentionSpec spec;
    spec.mask = static_cast<MaskKind>(ctx->saved_data["mask"].toInt());
    spec.scale = ctx->saved_data["scale"].toDouble();
    if (ctx->saved_data.count("cu_seqlens")) spec.cu_seqlens = ctx->saved_data["cu_seqlens"].toTensor();
    if (ctx->saved_data.count("key_lengths")) spec.key_lengths = ctx->saved_data["key_lengths"].toTensor();
    BlockwiseOptions options;
    options.query_block = ctx->saved_data["query_block"].toInt();
    options.key_block = ctx->saved_data["key_block"].toInt();
    const at::Tensor dout = grads[0].defined() ? grads[0] : at::zeros_like(out);
    AttentionGrads g = blockwise_attention_backward(q, k, v, out, lse, dout, grads[1], spec, options);
    // No gradients for the spec and options arguments.
    return {g.dq, g.dk, g.dv, at::Tensor(), at::Tensor()};
  }
};

class BlockwiseAttention final : public AttentionBackend {
 public:
  explicit BlockwiseAttention(BlockwiseOptions options) : options_(options) { check_options(options_); }
  std::string name() const override { return "blockwise"; }
  AttentionResult forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const AttentionSpec& spec) override {
    variable_list outputs = BlockwiseAttentionFunction::apply(q, k, v, spec, options_);
    return {outputs[0], outputs[1]};
  }

 private:
  BlockwiseOptions options_;
};

// ---- Naive ----------------------------------------------------------------------------------------

class NaiveAttention final : public AttentionBackend {
 public:
  std::string name() const override { return "naive"; }
  AttentionResult forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const AttentionSpec& spec) override {
    check_attention_inputs(q, k, v, spec);
    const Dims d = dims_of(q, k);
    const at::ScalarType type = accumulate_type(q);
    // [B, Hkv, G·Lq, D]: the G query heads of a K/V head stacked, so K/V are never replicated.
    const at::Tensor qh = q.to(type)
                              .reshape({d.batch, d.queries, d.kv_heads, d.group, d.head_dim})
                              .permute({0, 2, 3, 1, 4})
                              .reshape({d.batch, d.kv_heads, d.group * d.queries, d.head_dim});
    const at::Tensor kh = k.to(type).permute({0, 2, 1, 3});  // [B, Hkv, Lk, D]
    const at::Tensor vh = v.to(type).permute({0, 2, 1, 3});  // [B, Hkv, Lk, D]
    const at::Tensor scores = at::matmul(qh, kh.transpose(-1, -2))
                                  .mul(softmax_scale(spec, d.head_dim))
                                  .view({d.batch, d.kv_heads, d.group, d.queries, d.keys});
    const KeyIntervals iv = key_intervals(spec, d, q.device());
    const at::Tensor keys = at::arange(d.keys, iv.lo_tensor.options());
    const at::Tensor hidden = keys.lt(iv.lo_tensor.unsqueeze(-1))
                                  .logical_or_(keys.ge(iv.hi_tensor.unsqueeze(-1)))
                                  .view({d.batch, 1, 1, d.queries, d.keys});
    const at::Tensor s = scores.masked_fill(hidden, -std::numeric_limits<double>::infinity());
    // The row maximum only shifts the exponent (lse and out do not depend on it), so it is detached;
    // rows that see nothing get shift 0 and sum 0, and are masked out of lse so no 1/0 reaches a
    // gradient.
    at::Tensor shift = s.amax(-1, /*keepdim=*/true).detach();  // [B, Hkv, G, Lq, 1]
    shift.masked_fill_(shift.isinf(), 0);
    const at::Tensor e = (s - shift).exp();
    const at::Tensor sum = e.sum(-1, /*keepdim=*/true);
    const at::Tensor sees_nothing = sum.detach().eq(0);
    const at::Tensor safe_sum = sum.masked_fill(sees_nothing, 1);
    const at::Tensor p = e / safe_sum;  // [B, Hkv, G, Lq, Lk]
    const at::Tensor out = at::matmul(p.view({d.batch, d.kv_heads, d.group * d.queries, d.keys}), vh)
                               .view({d.batch, d.kv_heads, d.group, d.queries, d.head_dim})
                               .permute({0, 3, 1, 2, 4})
                               .reshape({d.batch, d.queries, d.heads, d.head_dim})
                               .to(q.scalar_type());
    const at::Tensor lse = (safe_sum.log() + shift)
                               .masked_fill(sees_nothing, -std::numeric_limits<double>::infinity())
                               .view({d.batch, d.heads, d.queries});
    return {out, lse};
  }
};

// ---- Fused (LibTorch ≥ 2.1 with CUDA) --------------------------------------------------------------

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
// Compiled and checked only on the GPU machine (PyTorch 2.x); Debian's LibTorch 1.13 never sees it.
// ≥ 2.1 for the signature with attn_bias/dropout_p/scale. The memory-efficient kernel covers full
// attention and square causal attention on CUDA in float/half/bf16; segments, key lengths, float64
// and bottom-right causal with Lq != Lk (its causal mask is top-left aligned) go to the blockwise
// backend. Its lse output is not differentiable in ATen, so callers that need d lse (SP merges)
// use the blockwise backend.
class FusedAttention final : public AttentionBackend {
 public:
  std::string name() const override { return "fused"; }
  AttentionResult forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const AttentionSpec& spec) override {
    check_attention_inputs(q, k, v, spec);
    const Dims d = dims_of(q, k);
    const bool supported = q.is_cuda() && q.scalar_type() != at::kDouble && !spec.cu_seqlens.defined() &&
                           !spec.key_lengths.defined() &&
                           (spec.mask == MaskKind::Full || d.queries == d.keys);
    if (!supported) return fallback_->forward(q, k, v, spec);
    // The kernel wants [B, H, L, D] with as many K/V heads as query heads.
    auto per_query_head = [&](const at::Tensor& x) {  // [B, Lk, Hkv, D] → [B, H, Lk, D]
      return x.unsqueeze(3)
          .expand({d.batch, d.keys, d.kv_heads, d.group, d.head_dim})
          .reshape({d.batch, d.keys, d.heads, d.head_dim})
          .transpose(1, 2);
    };
    auto result = at::_scaled_dot_product_efficient_attention(
        q.transpose(1, 2), per_query_head(k), per_query_head(v), /*attn_bias=*/c10::nullopt,
        /*compute_log_sumexp=*/true, /*dropout_p=*/0.0, /*is_causal=*/spec.mask == MaskKind::Causal,
        /*scale=*/softmax_scale(spec, d.head_dim));
    const at::Tensor out = std::get<0>(result).transpose(1, 2);           // [B, Lq, H, D]
    const at::Tensor lse = std::get<1>(result).narrow(-1, 0, d.queries);  // padded rows dropped
    return {out, lse};
  }

 private:
  std::shared_ptr<AttentionBackend> fallback_ = make_blockwise_attention();
};
#endif

}  // namespace

void check_attention_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const AttentionSpec& spec) {
  const std::string shapes = fmt::format("q {}, k {}, v {}", sizes_of(q), sizes_of(k), sizes_of(v));
  LVRL_ASSERT(q.defined() && k.defined() && v.defined(), "attention: undefined input (" + shapes + ")");
  LVRL_ASSERT(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
              "attention: expected q [B, Lq, H, D], k and v [B, Lk, H_kv, D]; got " + shapes);
  LVRL_ASSERT(k.sizes() == v.sizes(), "attention: k and v differ: " + shapes);
  LVRL_ASSERT(q.size(0) == k.size(0) && q.size(3) == k.size(3),
              "attention: batch or head dim of q differs from k: " + shapes);
  LVRL_ASSERT(k.size(2) > 0 && q.size(2) % k.size(2) == 0,
              fmt::format("attention: H = {} query heads is not a multiple of H_kv = {} ({})", q.size(2),
                          k.size(2), shapes));
  LVRL_ASSERT(q.scalar_type() == k.scalar_type() && q.scalar_type() == v.scalar_type(),
              fmt::format("attention: dtypes differ: q {}, k {}, v {}", c10::toString(q.scalar_type()),
                          c10::toString(k.scalar_type()), c10::toString(v.scalar_type())));
  LVRL_ASSERT(at::isFloatingType(q.scalar_type()),
              fmt::format("attention: expected a floating dtype, got {}", c10::toString(q.scalar_type())));
  LVRL_ASSERT(q.device() == k.device() && q.device() == v.device(),
              fmt::format("attention: devices differ: q {}, k {}, v {}", q.device().str(), k.device().str(),
                          v.device().str()));
  LVRL_ASSERT(spec.scale >= 0, fmt::format("attention: negative softmax scale {}", spec.scale));
  const int64_t batch = q.size(0), queries = q.size(1), keys = k.size(1);
  if (spec.cu_seqlens.defined()) {
    const at::Tensor& cu = spec.cu_seqlens;
    LVRL_ASSERT(cu.scalar_type() == at::kLong && cu.device().is_cpu() && cu.dim() == 1 && cu.numel() >= 1,
                "attention: cu_seqlens must be int64 [S+1] on CPU, got " + sizes_of(cu) + " " +
                    c10::toString(cu.scalar_type()) + " on " + cu.device().str());
    LVRL_ASSERT(queries == keys, fmt::format("attention: cu_seqlens needs Lq == Lk ({})", shapes));
    LVRL_ASSERT(!spec.key_lengths.defined(), "attention: cu_seqlens and key_lengths are not combined");
    const at::Tensor bounds = cu.contiguous();
    const int64_t* b = bounds.data_ptr<int64_t>();
    const int64_t n = bounds.numel();
    LVRL_ASSERT(b[0] == 0 && b[n - 1] == queries,
                fmt::format("attention: cu_seqlens must run from 0 to L = {}, got cu[0] = {}, cu[{}] = {}",
                            queries, b[0], n - 1, b[n - 1]));
    for (int64_t s = 0; s + 1 < n; ++s) {
      LVRL_ASSERT(b[s] <= b[s + 1], fmt::format("attention: cu_seqlens decreases: cu[{}] = {} > cu[{}] = {}",
                                                s, b[s], s + 1, b[s + 1]));
    }
  }
  if (spec.key_lengths.defined()) {
    const at::Tensor& lengths = spec.key_lengths;
    LVRL_ASSERT(lengths.scalar_type() == at::kLong && lengths.device().is_cpu() && lengths.dim() == 1 &&
                    lengths.numel() == batch,
                fmt::format("attention: key_lengths must be int64 [B = {}] on CPU, got {} {} on {}", batch,
                            sizes_of(lengths), c10::toString(lengths.scalar_type()), lengths.device().str()));
    const at::Tensor l = lengths.contiguous();
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t length = l.data_ptr<int64_t>()[b];
      LVRL_ASSERT(length >= 0 && length <= keys,
                  fmt::format("attention: key_lengths[{}] = {} outside [0, Lk = {}]", b, length, keys));
    }
  }
}

AttentionResult blockwise_attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                            const AttentionSpec& spec, const BlockwiseOptions& options) {
  check_attention_inputs(q, k, v, spec);
  check_options(options);
  at::NoGradGuard no_grad;
  const Dims d = dims_of(q, k);
  const at::ScalarType type = accumulate_type(q);
  const int64_t G = d.group, BH = d.batch * d.kv_heads;
  const at::Tensor qr = scaled_query_rows(q, d, type, softmax_scale(spec, d.head_dim));  // [BH, Lq·G, D]
  const at::Tensor kr = to_key_rows(k, d, type);                                         // [BH, Lk, D]
  const at::Tensor vr = to_key_rows(v, d, type);                                         // [BH, Lk, D]
  const auto options_of = qr.options();
  at::Tensor out_rows = at::zeros({BH, d.queries * G, d.head_dim}, options_of);  // [BH, Lq·G, D]
  at::Tensor lse_rows = at::full({BH, d.queries * G}, -INFINITY, options_of);    // [BH, Lq·G]
  const KeyIntervals iv = key_intervals(spec, d, q.device());
  const double lowest = lowest_finite(type);

  for (const QueryBlock& qb : plan_blocks(iv, options)) {
    if (qb.keys.empty()) continue;  // out 0, lse -inf as initialised
    const int64_t bq = qb.end - qb.begin, rows = bq * G;
    const at::Tensor q_block = qr.narrow(1, qb.begin * G, rows);     // [BH, R, D]
    at::Tensor max = at::full({BH, rows}, lowest, options_of);       // [BH, R] running max m
    at::Tensor sum = at::zeros({BH, rows}, options_of);              // [BH, R] running l
    at::Tensor acc = at::zeros({BH, rows, d.head_dim}, options_of);  // [BH, R, D]
    for (const KeyBlock& kb : qb.keys) {
      const int64_t bk = kb.end - kb.begin;
      const at::Tensor v_block = vr.narrow(1, kb.begin, bk);
      at::Tensor s = tile_scores(q_block, kr, iv, qb, kb, d.kv_heads, G);  // [BH, R, bk]
      const at::Tensor new_max = at::maximum(max, s.amax(-1));             // [BH, R], finite
      const at::Tensor p = s.sub_(new_max.unsqueeze(-1)).exp_();           // [BH, R, bk]
      const at::Tensor rescale = (max - new_max).exp_();                   // [BH, R]
      sum.mul_(rescale).add_(p.sum(-1));
      acc.mul_(rescale.unsqueeze(-1)).baddbmm_(p, v_block);
      max = new_max;
    }
    // sum >= 1 on a row that saw a key (its maximum contributes exp(0)), 0 on one that saw none.
    out_rows.narrow(1, qb.begin * G, rows).copy_(acc.div_(sum.clamp_min(1).unsqueeze(-1)));
    lse_rows.narrow(1, qb.begin * G, rows).copy_(max.add_(sum.log_()));
  }
  return {from_query_rows(out_rows, d, q.scalar_type()), lse_from_rows(lse_rows, d)};
}

at::Tensor attention_delta(const at::Tensor& out, const at::Tensor& dout, const at::Tensor& dlse) {
  LVRL_ASSERT(out.dim() == 4 && dout.sizes() == out.sizes(),
              fmt::format("attention delta: out {} and dout {} must be the same [B, L, H, D]", sizes_of(out),
                          sizes_of(dout)));
  const int64_t batch = out.size(0), length = out.size(1), heads = out.size(2);
  const at::ScalarType type = accumulate_type(out);
  at::Tensor delta = at::empty({batch, heads, length}, out.options().dtype(type));  // [B, H, L]
  constexpr int64_t kRows = 1024;  // tokens per step: the product lives a block at a time
  for (int64_t begin = 0; begin < length; begin += kRows) {
    const int64_t n = std::min(kRows, length - begin);
    delta.narrow(2, begin, n)
        .copy_(
            (dout.narrow(1, begin, n).to(type) * out.narrow(1, begin, n).to(type)).sum(-1).transpose(1, 2));
  }
  if (dlse.defined()) delta.sub_(dlse.to(type));
  return delta;
}

AttentionGrads blockwise_attention_backward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                            const at::Tensor& out, const at::Tensor& lse,
                                            const at::Tensor& dout, const at::Tensor& dlse,
                                            const AttentionSpec& spec, const BlockwiseOptions& options) {
  LVRL_ASSERT(out.defined() && out.sizes() == q.sizes() && dout.defined() && dout.sizes() == q.sizes(),
              fmt::format("attention backward: out {} and dout {} must match q {}", sizes_of(out),
                          sizes_of(dout), sizes_of(q)));
  LVRL_ASSERT(!dlse.defined() || (lse.defined() && dlse.sizes() == lse.sizes()),
              fmt::format("attention backward: dlse {} must match lse {}", sizes_of(dlse), sizes_of(lse)));
  return blockwise_attention_backward_from_delta(q, k, v, lse, dout, attention_delta(out, dout, dlse), spec,
                                                 options);
}

AttentionGrads blockwise_attention_backward_from_delta(const at::Tensor& q, const at::Tensor& k,
                                                       const at::Tensor& v, const at::Tensor& lse,
                                                       at::Tensor dout, const at::Tensor& delta,
                                                       const AttentionSpec& spec,
                                                       const BlockwiseOptions& options) {
  check_attention_inputs(q, k, v, spec);
  check_options(options);
  const Dims d = dims_of(q, k);
  const std::vector<int64_t> lse_sizes = {d.batch, d.heads, d.queries};
  LVRL_ASSERT(dout.defined() && dout.sizes() == q.sizes(),
              fmt::format("attention backward: dout {} must match q {}", sizes_of(dout), sizes_of(q)));
  LVRL_ASSERT(lse.defined() && lse.sizes() == at::IntArrayRef(lse_sizes) && delta.defined() &&
                  delta.sizes() == at::IntArrayRef(lse_sizes),
              fmt::format("attention backward: lse {} and delta {} must be [B, H, Lq] = {}", sizes_of(lse),
                          sizes_of(delta), c10::str(at::IntArrayRef(lse_sizes))));
  at::NoGradGuard no_grad;
  const at::ScalarType type = accumulate_type(q);
  const int64_t G = d.group;
  const double scale = softmax_scale(spec, d.head_dim);
  // The row tensors are released before the gradients go back to the caller's layout (one at a
  // time), so the peak is the loop's, not the loop's plus three converted gradients.
  at::Tensor qr = scaled_query_rows(q, d, type, scale);  // [BH, Lq·G, D]
  at::Tensor kr = to_key_rows(k, d, type);               // [BH, Lk, D]
  at::Tensor vr = to_key_rows(v, d, type);               // [BH, Lk, D]
  at::Tensor dout_rows = to_query_rows(dout, d, type);   // [BH, Lq·G, D]
  dout.reset();
  // A row that sees no key has lse = -inf; +inf there makes its P = exp(S - lse) exactly 0.
  at::Tensor lse_rows = lse_to_rows(lse, d, type);  // [BH, Lq·G]
  lse_rows.masked_fill_(lse_rows.isneginf(), INFINITY);
  // dS = P ∘ (dP − Δ).
  at::Tensor delta_rows = lse_to_rows(delta, d, type);  // [BH, Lq·G]
  at::Tensor dq_rows = at::zeros_like(qr);
  at::Tensor dk_rows = at::zeros_like(kr);
  at::Tensor dv_rows = at::zeros_like(vr);
  const KeyIntervals iv = key_intervals(spec, d, q.device());

  for (const QueryBlock& qb : plan_blocks(iv, options)) {
    const int64_t bq = qb.end - qb.begin, rows = bq * G, first_row = qb.begin * G;
    const at::Tensor q_block = qr.narrow(1, first_row, rows);                            // [BH, R, D]
    const at::Tensor dout_block = dout_rows.narrow(1, first_row, rows);                  // [BH, R, D]
    const at::Tensor lse_block = lse_rows.narrow(1, first_row, rows).unsqueeze(-1);      // [BH, R, 1]
    const at::Tensor delta_block = delta_rows.narrow(1, first_row, rows).unsqueeze(-1);  // [BH, R, 1]
    at::Tensor dq_block = dq_rows.narrow(1, first_row, rows);                            // [BH, R, D]
    for (const KeyBlock& kb : qb.keys) {
      const int64_t bk = kb.end - kb.begin;
      const at::Tensor k_block = kr.narrow(1, kb.begin, bk);  // [BH, bk, D]
      const at::Tensor v_block = vr.narrow(1, kb.begin, bk);
      at::Tensor s = tile_scores(q_block, kr, iv, qb, kb, d.kv_heads, G);  // [BH, R, bk]
      const at::Tensor p = s.sub_(lse_block).exp_();                       // [BH, R, bk]
      const at::Tensor ds = at::bmm(dout_block, v_block.transpose(1, 2)).sub_(delta_block).mul_(p);
      dq_block.baddbmm_(ds, k_block);
      dk_rows.narrow(1, kb.begin, bk).baddbmm_(ds.transpose(1, 2), q_block);  // sums the G heads
      dv_rows.narrow(1, kb.begin, bk).baddbmm_(p.transpose(1, 2), dout_block);
    }
  }
  for (at::Tensor* used : {&qr, &kr, &vr, &dout_rows, &lse_rows, &delta_rows}) used->reset();
  AttentionGrads grads;
  grads.dq = from_query_rows(dq_rows.mul_(scale), d, q.scalar_type());
  dq_rows.reset();
  grads.dk = from_key_rows(dk_rows, d, k.scalar_type());
  dk_rows.reset();
  grads.dv = from_key_rows(dv_rows, d, v.scalar_type());
  return grads;
}

std::shared_ptr<AttentionBackend> make_blockwise_attention(BlockwiseOptions options) {
  return std::make_shared<BlockwiseAttention>(options);
}

std::shared_ptr<AttentionBackend> make_naive_attention() {
  return std::make_shared<NaiveAttention>();
}

std::shared_ptr<AttentionBackend> make_fused_attention() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  return std::make_shared<FusedAttention>();
#else
  return nullptr;
#endif
}

std::shared_ptr<AttentionBackend> make_default_attention(const at::Device& device) {
  if (device.is_cuda()) {
    if (auto fused = make_fused_attention()) return fused;
  }
  return make_blockwise_attention();
}

void merge_attention_partial(at::Tensor out_acc, at::Tensor lse_acc, const at::Tensor& out_part,
                             const at::Tensor& lse_part) {
  const at::Tensor part = lse_part.to(lse_acc.scalar_type());
  at::Tensor top = at::maximum(lse_acc, part);
  top.masked_fill_(top.isneginf(), 0);
  const at::Tensor lse = (lse_acc - top).exp_().add_((part - top).exp_()).log_().add_(top);  // [B, H, n]
  const at::Tensor safe = lse.masked_fill(lse.isneginf(), 0);
  const at::Tensor keep = (lse_acc - safe).exp_().permute({0, 2, 1}).unsqueeze(-1);  // [B, n, H, 1]
  const at::Tensor take = (part - safe).exp_().permute({0, 2, 1}).unsqueeze(-1);     // [B, n, H, 1]
  out_acc.mul_(keep).add_(out_part.to(out_acc.scalar_type()).mul_(take));
  lse_acc.copy_(lse);
}

}  // namespace lvrl::model
