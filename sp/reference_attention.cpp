#include "sp/reference_attention.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "core/error.h"

namespace lvrl::sp {

ReferenceAttention reference_attention(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                                       const at::Tensor& dout_in, bool causal) {
  LVRL_ASSERT(q_in.dim() == 4 && k_in.dim() == 4 && v_in.dim() == 4 && dout_in.sizes() == q_in.sizes(),
              "reference_attention takes [B, L, H, D] tensors");
  LVRL_ASSERT(k_in.size(2) > 0 && q_in.size(2) % k_in.size(2) == 0, "H must be a multiple of H_kv");
  const at::Tensor q = q_in.to(at::kDouble), k = k_in.to(at::kDouble), v = v_in.to(at::kDouble);
  const at::Tensor dout = dout_in.to(at::kDouble);
  const int64_t batch = q.size(0), length = q.size(1), heads = q.size(2), group = heads / k.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  ReferenceAttention ref{at::empty_like(q), at::empty_like(q), at::zeros_like(k), at::zeros_like(v)};
  const at::Tensor hidden = at::ones({length, length}, at::kBool).triu(1);  // key j > query i
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t kv = h / group;
      const at::Tensor qh = q[b].select(1, h), kh = k[b].select(1, kv), vh = v[b].select(1, kv);  // [L, D]
      const at::Tensor doh = dout[b].select(1, h);                                                // [L, D]
      at::Tensor scores = qh.matmul(kh.t()).mul_(scale);                                          // [L, L]
      if (causal) scores.masked_fill_(hidden, -std::numeric_limits<double>::infinity());
      const at::Tensor p = (scores - std::get<0>(scores.max(1, true))).exp_();
      p.div_(p.sum(1, true));
      const at::Tensor dp = doh.matmul(vh.t());                // [L, L]
      const at::Tensor ds = p * (dp - (p * dp).sum(1, true));  // [L, L]
      ref.out[b].select(1, h).copy_(p.matmul(vh));
      ref.dq[b].select(1, h).copy_(ds.matmul(kh).mul_(scale));
      ref.dk[b].select(1, kv).add_(ds.t().matmul(qh).mul_(scale));
      ref.dv[b].select(1, kv).add_(p.t().matmul(doh));
    }
  }
  return ref;
}

}  // namespace lvrl::sp
