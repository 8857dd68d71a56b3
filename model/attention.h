// The attention backend both towers call: (q, k, v, mask kind, segment boundaries) → (out, lse).
//
// Returning the log-sum-exp of every query row is what lets sequence parallelism (sp/) merge
// partial results from key blocks held on other ranks exactly, and lets a backward pass recompute
// softmax probabilities block by block instead of storing them. One call signature serves the
// vision tower (non-causal, per-window / per-frame segments), the language model's prefill
// (causal), decoding against a KV cache (causal, bottom-right aligned, per-row key lengths), and the
// SP implementations that wrap or replace a local backend.
//
// Layout is sequence-major, [B, L, H, D], the layout Linear outputs reshape into for free and the
// one SP shards along L. Keys/values may carry fewer heads than queries (GQA): query head h reads
// key/value head h / (H / H_kv); the blockwise and naive backends never replicate K/V to do it (the
// fused kernel needs equal head counts and expands them).
#pragma once

#include <ATen/Tensor.h>

#include <memory>
#include <optional>
#include <string>

namespace lvrl::model {

enum class MaskKind {
  Full,    // every query sees every key (of its segment, below its row's key length)
  Causal,  // bottom-right aligned: query i of Lq sees key j iff j <= i + (Lk_b - Lq), where Lk_b is
           // the row's key length (key_lengths[b], else Lk). Prefill (Lq == Lk) is the usual lower
           // triangle; a decode step (Lq == 1) sees every valid key of its row.
};

struct AttentionSpec {
  MaskKind mask = MaskKind::Full;
  double scale = 0;  // softmax scale; 0 means 1/sqrt(D)
  // Segment boundaries along the sequence, int64 [S+1] on CPU, cu[0] = 0, cu[S] = L, non-decreasing
  // (empty segments allowed). Tokens attend only within their own segment; requires Lq == Lk. The
  // same boundaries apply to every batch row. Undefined = one segment.
  at::Tensor cu_seqlens;
  // Valid keys per batch row, int64 [B] on CPU; keys at j >= key_lengths[b] are ignored (a KV cache
  // holding sequences of different lengths). Undefined = all Lk keys valid. Not combined with
  // cu_seqlens.
  at::Tensor key_lengths;
};

struct AttentionResult {
  at::Tensor out;  // [B, Lq, H, D], q's dtype
  at::Tensor lse;  // [B, H, Lq] float32 (float64 for float64 inputs); -inf for a row that sees no key
};

// Checks shapes, dtypes, devices and the spec against each other; an inconsistency is a bug in the
// caller (LVRL_ASSERT with the offending sizes). q [B, Lq, H, D], k and v [B, Lk, H_kv, D], H % H_kv == 0.
void check_attention_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const AttentionSpec& spec);

class AttentionBackend {
 public:
  virtual ~AttentionBackend() = default;
  virtual std::string name() const = 0;
  // Differentiable in q, k and v (autograd). A row that sees no key yields out = 0, lse = -inf and
  // zero gradients. The lse output is differentiable too (d lse / d s_j = p_j), which SP merges use
  // (blockwise and naive; the fused kernel's lse carries no gradient).
  virtual AttentionResult forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const AttentionSpec& spec) = 0;
};

// CPU (and any device) reference-quality backend: blockwise over query and key blocks with an
// online softmax, so memory is O(L·block) instead of O(L²); accumulates in float32 (float64 for
// float64 inputs). Its backward recomputes each block's probabilities from the saved lse instead of
// storing them (the FlashAttention recurrence), so long sequences train without an L×L matrix.
struct BlockwiseOptions {
  int64_t query_block = 256;
  int64_t key_block = 256;
};
std::shared_ptr<AttentionBackend> make_blockwise_attention(BlockwiseOptions options = {});

// The same computation as plain tensor algebra over the whole L×L score matrix, with autograd
// through ATen. For tests and for the memory comparison in bench/; never used by the model.
std::shared_ptr<AttentionBackend> make_naive_attention();

// The fused kernel of LibTorch ≥ 2.1 on CUDA (memory-efficient SDPA, which returns lse); nullptr
// where this build has none. Segments, key lengths, float64, causal with Lq != Lk and non-CUDA
// inputs fall back to the blockwise backend; its lse is not differentiable (ATen's derivative of the
// kernel covers out only). make_default_attention picks it for a CUDA device when available, the
// blockwise backend otherwise.
std::shared_ptr<AttentionBackend> make_fused_attention();
std::shared_ptr<AttentionBackend> make_default_attention(const at::Device& device);

// The kernels under the blockwise backend, without autograd, for SP implementations that run their
// own backward (ring attention feeds every block the global out and lse). Shapes as above.
AttentionResult blockwise_attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                            const AttentionSpec& spec, const BlockwiseOptions& options = {});
struct AttentionGrads {
  at::Tensor dq, dk, dv;  // shapes of q, k, v
};
// out/lse are the forward's (or the global merged ones); dlse may be undefined (treated as zero).
AttentionGrads blockwise_attention_backward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                            const at::Tensor& out, const at::Tensor& lse,
                                            const at::Tensor& dout, const at::Tensor& dlse,
                                            const AttentionSpec& spec, const BlockwiseOptions& options = {});
// The same backward given Δ = rowsum(dout ∘ out) − dlse ([B, H, Lq], fp32 or fp64) in place of out and
// dlse: the backward reads out only through Δ, so a caller holding out in another layout (Ulysses:
// on the sequence side) computes Δ there and need not keep this layout's copy. dout is taken by
// value and dropped once copied into the kernel's layout: a caller that moves its last reference in
// frees it there.
AttentionGrads blockwise_attention_backward_from_delta(const at::Tensor& q, const at::Tensor& k,
                                                       const at::Tensor& v, const at::Tensor& lse,
                                                       at::Tensor dout, const at::Tensor& delta,
                                                       const AttentionSpec& spec,
                                                       const BlockwiseOptions& options = {});
// Folds a partial result computed over other keys into a running one, exactly:
//   lse = logaddexp(lse_acc, lse_part),  out = e^(lse_acc − lse)·out_acc + e^(lse_part − lse)·out_part.
// out_acc [B, n, H, D] and lse_acc [B, H, n] (the accumulation type; views allowed) are updated in
// place. Rows where both are −inf stay (0, −inf): the exponents are taken against 0 there.
void merge_attention_partial(at::Tensor out_acc, at::Tensor lse_acc, const at::Tensor& out_part,
                             const at::Tensor& lse_part);
// Δ of the above from out, dout [B, L, H, D] and dlse [B, H, L] (may be undefined), a block of rows
// at a time (no full-size product): [B, H, L] in the accumulation type.
at::Tensor attention_delta(const at::Tensor& out, const at::Tensor& dout, const at::Tensor& dlse);

}  // namespace lvrl::model
