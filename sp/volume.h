// Who holds which heads inside a Ulysses group, and what one SP attention call sends per rank.
//
// Shared by SequenceParallelAttention (which routes heads this way and reports expected_bytes) and
// the planner (sp/plan.h, which picks U × R by these volumes), so the plan's figures are the bytes
// the attention really sends — comm.h's counter checks them in `lvrl sp check` and bench_sp_attention.
//
// The closed forms in docs/sp.md are the even case (H % U == 0, H_kv ≥ U): per rank, forward
// (U−1)/U·(2d + 2d_kv)·N/P for Ulysses and (R−1) hops of K/V, 2·N·d_kv/P each, for the ring; the
// same again in backward, plus R hops of the dK/dV accumulators (in fp32 at least). Uneven head
// counts and replicated KV heads (H_kv < U) change the per-rank figures; attention_bytes counts them
// exactly, head by head.
#pragma once

#include <cstdint>
#include <vector>

namespace lvrl::sp {

// Query heads split as evenly as H allows: the first H % U ranks get one more. [U] global head ids.
std::vector<std::vector<int64_t>> split_query_heads(int64_t heads, int ranks);

// The K/V heads each rank needs for its query heads, listed so that local query head h' reads local
// K/V head h' / (H_u / H_kv,u) — the GQA rule of the local kernel. A rank whose query heads cover
// whole or equal parts of consecutive K/V groups gets each of those K/V heads once; otherwise it gets
// one K/V head per query head (group size 1). H_kv < U therefore replicates KV heads across ranks.
std::vector<std::vector<int64_t>> kv_heads_for(const std::vector<std::vector<int64_t>>& query_heads,
                                               int64_t heads, int64_t kv_heads);

struct AttentionBytes {
  int64_t forward = 0, backward = 0;
  int64_t ring_forward = 0, ring_backward = 0;  // the ring's share of each (the rest is Ulysses')
  int64_t total() const { return forward + backward; }
};

// Bytes Ulysses rank `ulysses_rank` of a U × R mesh sends for one attention forward and backward of
// `batch` sequences, `local_tokens` per rank (the layout's padded N/P), at `element_bytes` per
// element (dK/dV accumulators travel at max(element_bytes, 4)).
//   Ulysses forward: q, k, v heads → sequence, out sequence → heads; backward: dout heads → sequence,
//     dq, dk, dv sequence → heads; with R = 1 also Δ = rowsum(dout ∘ out), [B, l, H] in the
//     accumulation type, heads → sequence (docs/sp.md's formula leaves it out: 1/(2D) of dout's
//     share at fp32, 0.3% of the total for H = 8, H_kv = 2, D = 64).
//   Ring forward: R−1 hops of this group's K/V block; backward: R−1 hops of K/V and R of dK/dV.
AttentionBytes attention_bytes(int ulysses, int ring, int ulysses_rank, int64_t batch, int64_t local_tokens,
                               int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t element_bytes);

}  // namespace lvrl::sp
