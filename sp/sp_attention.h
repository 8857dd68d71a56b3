// Sequence-parallel attention as a model::AttentionBackend: q, k, v arrive sharded along the
// sequence per the SequenceLayout (sp/layout.h) and the output leaves sharded the same way.
//
//   1. Ulysses (U > 1): all-to-all inside the Ulysses group turns [B, l, H, D] (l = local tokens) into
//      [B, U·l, H_u, D] (the group's whole chunk sequence, a slice of the heads; uneven H via split
//      sizes; when H_kv < U the KV heads are replicated so every rank has those its query heads
//      read, and the replicas' gradients are summed back).
//   2. Ring (R > 1): K/V chunks travel R−1 hops around the ring group, double-buffered; each
//      (q chunk, k chunk) pair is skipped, run full or run causal from the chunks' global order; the
//      partial (out, lse) merge in fp32 (NaN-safe for rows that saw nothing). Backward recomputes
//      with the global out/lse: dq accumulates at home, dK/dV accumulators travel with K/V and
//      arrive home after R hops.
//   3. Ulysses all-to-all back.
// Each step is an autograd function; the local attention is the blockwise kernel of model/.
#pragma once

#include <memory>

#include "model/attention.h"
#include "sp/layout.h"
#include "sp/mesh.h"

namespace lvrl::sp {

class SequenceParallelAttention : public model::AttentionBackend {
 public:
  SequenceParallelAttention(std::shared_ptr<Mesh> mesh, SpMode mode, model::BlockwiseOptions local = {});
  std::string name() const override;

  // The layout of the sequences the next forwards see (a model forward sets it once per batch, from
  // the global length and whether the attention is causal).
  void set_layout(const SequenceLayout& layout) { layout_ = layout; }
  const SequenceLayout& layout() const { return layout_; }

  // q [B, l, H, D], k/v [B, l, H_kv, D] with l = layout.local_length(); spec.mask Full or Causal
  // (must match the layout's causal flag); cu_seqlens / key_lengths are not supported (asserts).
  model::AttentionResult forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const model::AttentionSpec& spec) override;

  // Bytes one rank sends for one forward + backward of these shapes, by docs/sp.md's formulas
  // (Ulysses: (U−1)/U of q, k, v, out and their gradients; ring: (R−1) hops of K/V forward, R−1 of
  // K/V and R of dK/dV backward; sp/volume.h's attention_bytes for this rank). Compared with comm.h's
  // bytes_sent() by `lvrl sp check` and bench_sp_attention.
  int64_t expected_bytes(int64_t batch, int64_t heads, int64_t kv_heads, int64_t head_dim,
                         int64_t element_bytes) const;

 private:
  std::shared_ptr<Mesh> mesh_;
  SpMode mode_;
  model::BlockwiseOptions local_;
  SequenceLayout layout_;
};

}  // namespace lvrl::sp
