// The float64 reference that sequence-parallel attention is checked against (`lvrl sp check`,
// tests/sp): attention and its gradients from the textbook formulas, one (batch row, query head) at
// a time, written apart from the blockwise kernel (model/attention.h) so that a shared mistake is
// unlikely — explicit masks, a two-pass softmax, and the softmax Jacobian
// dS = P ∘ (dP − rowsum(P ∘ dP)) instead of the rowsum(dO ∘ O) identity the kernel uses. O(L²)
// memory for one head at a time: meant for checks, not for long sequences.
#pragma once

#include <ATen/Tensor.h>

namespace lvrl::sp {

struct ReferenceAttention {
  at::Tensor out;  // [B, L, H, D] float64
  at::Tensor dq;   // [B, L, H, D] float64
  at::Tensor dk;   // [B, L, H_kv, D] float64
  at::Tensor dv;   // [B, L, H_kv, D] float64
};

// q, dout: [B, L, H, D]; k, v: [B, L, H_kv, D] with H % H_kv == 0 (grouped-query attention: query
// head h reads K/V head h / (H / H_kv)); any floating dtype, computed in float64. Scale 1/sqrt(D);
// `causal`: query i sees keys j ≤ i.
ReferenceAttention reference_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                       const at::Tensor& dout, bool causal);

}  // namespace lvrl::sp
