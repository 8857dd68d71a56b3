// Sequence-parallel attention: Ulysses all-to-all around a ring over chunks (sp_attention.h).
//
// Autograd functions, composed for U > 1 and R > 1 (hybrid), alone otherwise:
//
//  * HeadsToSequence / SequenceToHeads — the Ulysses all-to-all and its inverse, each the other's
//    backward. Which heads go where is an index map per destination rank (`HeadRouting`): query and
//    output heads are a partition (uneven H via split sizes), K/V heads may repeat across ranks
//    (H_kv < U, or a rank's query heads straddling K/V groups), and the inverse sums repeats with
//    index_add in rank order, which is exactly the gradient of the replication.
//
//  * RingAttention — the ring over the layout's chunks. Forward: K/V (packed as one [2, ...]
//    tensor, so one exchange per hop) travel R−1 hops; the next hop is posted before the current
//    block is computed (double buffering). Every (q chunk, k chunk) pair is cut to its real tokens
//    — padding sits at the end of the global sequence, so a chunk's real tokens are a prefix — and
//    then run Full, Causal (same chunk) or skipped (k chunk after the q chunk), from the chunks'
//    global order. Cutting instead of passing key_lengths matters for the diagonal pair: the
//    blockwise kernel aligns causal masks bottom-right at the key length, which would shift the
//    diagonal of a padded chunk. Partial (out, lse) merge in the accumulation type (fp32; fp64 for
//    fp64 inputs) with a -inf-safe logaddexp. Backward: every pair gets the global out/lse (so pair
//    gradients add up exactly), dq accumulates at home, dK/dV accumulators ride the ring with K/V
//    and are home after R hops.
//
//  * UlyssesAttention — pure Ulysses (R = 1): the all-to-alls and the local kernel as one function,
//    so the backward takes Δ = rowsum(dout ∘ out) on the sequence side and no head-layout copy of out
//    is kept (the composed form keeps one for the backward of its local attention).
//
// Padded query rows never enter a kernel (out 0, lse −inf) and padded keys are never read, so padding
// gets exactly zero gradient whatever dout holds there.
//
// The returned AttentionResult carries `out` only (lse undefined): handing the lse back through the
// Ulysses all-to-all would cost a collective the model never needs.
#include "sp/sp_attention.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "sp/comm.h"
#include "sp/volume.h"

namespace lvrl::sp {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::ScalarType accumulate_type(at::ScalarType type) {
  return type == at::kDouble ? at::kDouble : at::kFloat;
}

// Non-tensor state an autograd function needs in backward rides in ctx->saved_data as a capsule.
template <typename T>
c10::intrusive_ptr<T> from_capsule(const at::IValue& value) {
  return c10::static_intrusive_pointer_cast<T>(value.toCapsule());
}

// ---- Ulysses: heads ↔ sequence ------------------------------------------------------------------

// Which heads of a [B, l, H_x, D] tensor each rank of the Ulysses group receives.
struct HeadRouting : torch::CustomClassHolder {
  std::shared_ptr<Mesh> mesh;
  int64_t heads = 0;                           // H_x on the sequence side
  std::vector<std::vector<int64_t>> heads_of;  // [U] global head ids per rank (in local order)
  std::vector<at::Tensor> index_of;            // [U] the same as int64 tensors

  int size() const { return mesh->ulysses_size(); }
  int rank() const { return mesh->ulysses_rank(); }
  int64_t count(int u) const { return static_cast<int64_t>(heads_of[u].size()); }
};

c10::intrusive_ptr<HeadRouting> make_routing(std::shared_ptr<Mesh> mesh, int64_t heads,
                                             std::vector<std::vector<int64_t>> heads_of) {
  auto routing = c10::make_intrusive<HeadRouting>();
  routing->mesh = std::move(mesh);
  routing->heads = heads;
  for (const auto& ids : heads_of) routing->index_of.push_back(at::tensor(ids, at::kLong));
  routing->heads_of = std::move(heads_of);
  return routing;
}

// x [B, l, H_x, D] sequence-sharded → [B, U·l, H_me, D]: this rank's heads over the group's sequence.
at::Tensor heads_to_sequence(const HeadRouting& routing, const at::Tensor& x) {
  const int ranks = routing.size(), me = routing.rank();
  const int64_t batch = x.size(0), local = x.size(1), dim = x.size(3);
  std::vector<int64_t> send_sizes, recv_sizes;
  for (int u = 0; u < ranks; ++u) {
    send_sizes.push_back(batch * local * routing.count(u) * dim);
    recv_sizes.push_back(batch * local * routing.count(me) * dim);
  }
  // Each destination's heads gathered straight into its slice of the one send buffer (one copy).
  at::Tensor send =
      at::empty({std::accumulate(send_sizes.begin(), send_sizes.end(), int64_t{0})}, x.options());
  int64_t offset = 0;
  for (int u = 0; u < ranks; ++u) {
    at::Tensor slot = send.narrow(0, offset, send_sizes[u]).view({batch, local, routing.count(u), dim});
    at::index_select_out(slot, x, 2, routing.index_of[u]);
    offset += send_sizes[u];
  }
  const at::Tensor received = all_to_all(routing.mesh->ulysses(), send, send_sizes, recv_sizes);
  // [U (source = position in the group's sequence), B, l, H_me, D] → [B, U·l, H_me, D]
  return received.view({ranks, batch, local, routing.count(me), dim})
      .permute({1, 0, 2, 3, 4})
      .reshape({batch, ranks * local, routing.count(me), dim});
}

// The inverse: y [B, U·l, H_me, D] → [B, l, H_x, D], heads that several ranks held summed.
at::Tensor sequence_to_heads(const HeadRouting& routing, const at::Tensor& y) {
  const int ranks = routing.size(), me = routing.rank();
  const int64_t batch = y.size(0), local = y.size(1) / ranks, dim = y.size(3);
  LVRL_ASSERT(y.size(1) == ranks * local && y.size(2) == routing.count(me),
              fmt::format("Ulysses all-to-all: {} is not [B, U·l, H_me = {}, D] for U = {}",
                          c10::str(y.sizes()), routing.count(me), ranks));
  // [B, U, l, H_me, D] → [U, B, l, H_me, D]: block r goes back to rank r.
  const at::Tensor send =
      y.reshape({batch, ranks, local, routing.count(me), dim}).transpose(0, 1).contiguous();
  std::vector<int64_t> send_sizes, recv_sizes;
  for (int u = 0; u < ranks; ++u) {
    send_sizes.push_back(batch * local * routing.count(me) * dim);
    recv_sizes.push_back(batch * local * routing.count(u) * dim);
  }
  const at::Tensor received = all_to_all(routing.mesh->ulysses(), send.view({-1}), send_sizes, recv_sizes);
  at::Tensor x = at::zeros({batch, local, routing.heads, dim}, y.options());
  int64_t offset = 0;
  for (int u = 0; u < ranks; ++u) {
    const int64_t count = recv_sizes[u];
    x.index_add_(2, routing.index_of[u],
                 received.narrow(0, offset, count).view({batch, local, routing.count(u), dim}));
    offset += count;
  }
  return x;
}

// One direction of the Ulysses exchange as an autograd op: `Forward` there, and the gradient back
// through `Backward`, the other direction.
using UlyssesExchangeFn = at::Tensor (*)(const HeadRouting&, const at::Tensor&);
template <UlyssesExchangeFn Forward, UlyssesExchangeFn Backward>
class UlyssesExchange : public torch::autograd::Function<UlyssesExchange<Forward, Backward>> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input,
                            c10::intrusive_ptr<HeadRouting> routing) {
    at::NoGradGuard no_grad;
    at::Tensor output = Forward(*routing, input);
    ctx->saved_data["routing"] = at::IValue::make_capsule(routing);
    return output;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto routing = from_capsule<HeadRouting>(ctx->saved_data["routing"]);
    return {Backward(*routing, grads[0].contiguous()), at::Tensor()};
  }
};
using HeadsToSequence = UlyssesExchange<heads_to_sequence, sequence_to_heads>;
using SequenceToHeads = UlyssesExchange<sequence_to_heads, heads_to_sequence>;

// ---- Ring over chunks ---------------------------------------------------------------------------

struct RingPlan : torch::CustomClassHolder {
  std::shared_ptr<Mesh> mesh;
  SequenceLayout layout;
  model::MaskKind mask = model::MaskKind::Full;
  double scale = 0;
  model::BlockwiseOptions options;

  int size() const { return mesh->ring_size(); }
  int rank() const { return mesh->ring_rank(); }
  // Real tokens of global chunk `chunk` (a prefix of it).
  int64_t real_tokens(int64_t chunk) const {
    const int64_t c = layout.chunk_length();
    return std::clamp<int64_t>(layout.length - chunk * c, 0, c);
  }
};

// One (q chunk, k chunk) pair: where its rows sit locally and how it is masked.
struct ChunkPair {
  int64_t q_offset = 0, queries = 0;  // rows [q_offset, q_offset + queries) of the local q
  int64_t k_offset = 0, keys = 0;     // rows [k_offset, k_offset + keys) of the K/V block
  model::AttentionSpec spec;
};

// The pairs of this rank's q chunks with the chunks of ring position `source`'s K/V block that
// hold anything visible.
std::vector<ChunkPair> chunk_pairs(const RingPlan& plan, int source) {
  const int64_t c = plan.layout.chunk_length();
  const std::vector<int64_t> q_chunks = plan.layout.ring_chunks(plan.rank());
  const std::vector<int64_t> k_chunks = plan.layout.ring_chunks(source);
  std::vector<ChunkPair> pairs;
  for (size_t a = 0; a < q_chunks.size(); ++a) {
    for (size_t b = 0; b < k_chunks.size(); ++b) {
      ChunkPair pair;
      pair.q_offset = static_cast<int64_t>(a) * c;
      pair.k_offset = static_cast<int64_t>(b) * c;
      pair.queries = plan.real_tokens(q_chunks[a]);
      pair.keys = plan.real_tokens(k_chunks[b]);
      pair.spec.scale = plan.scale;
      if (pair.queries == 0 || pair.keys == 0) continue;
      if (plan.mask == model::MaskKind::Causal) {
        if (k_chunks[b] > q_chunks[a]) continue;
        // Same chunk: equal real lengths, so the kernel's bottom-right diagonal is the main one.
        if (k_chunks[b] == q_chunks[a]) pair.spec.mask = model::MaskKind::Causal;
      }
      pairs.push_back(std::move(pair));
    }
  }
  return pairs;
}

// The ring of one rank (pure Ulysses) whose only pair covers all n rows and keys (no padding, one
// chunk): the case run without accumulators.
std::optional<ChunkPair> whole_sequence_pair(const RingPlan& plan, int64_t n) {
  if (plan.size() != 1) return std::nullopt;
  std::vector<ChunkPair> pairs = chunk_pairs(plan, plan.rank());
  if (pairs.size() != 1 || pairs[0].queries != n || pairs[0].keys != n) return std::nullopt;
  return pairs[0];
}

// `real` extended along `dim` to `length` rows with `fill` (padding sits at the end of the sequence);
// `real` itself when it already has them.
at::Tensor padded_to(const at::Tensor& real, int64_t dim, int64_t length, double fill) {
  if (real.size(dim) == length) return real;
  std::vector<int64_t> sizes = real.sizes().vec();
  sizes[dim] = length;
  at::Tensor full = at::full(sizes, fill, real.options());
  full.narrow(dim, 0, real.size(dim)).copy_(real);
  return full;
}

class RingAttention : public torch::autograd::Function<RingAttention> {
 public:
  // q [B, n, h, D], k/v [B, n, h_kv, D] (n = the group's chunk sequence) → {out [B, n, h, D] in q's
  // dtype, lse [B, h, n] in the accumulation type}. K/V travel in their own dtype; the kernels get
  // accumulation-type copies, so partial outputs merge unrounded (a no-op for fp32 / fp64).
  //
  // Saved: {q, k, v, out, lse} for one rank over the whole sequence (the kernel alone), else
  // {q, kv, out, lse} with K and V packed once as [2, B, n, h_kv, D] — the first message of the
  // forward ring, kept in place of k and v so the backward ring needs no second packed copy.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, c10::intrusive_ptr<RingPlan> plan) {
    at::NoGradGuard no_grad;
    const at::ScalarType type = accumulate_type(q.scalar_type());
    const std::optional<ChunkPair> whole = whole_sequence_pair(*plan, q.size(1));
    at::Tensor out, lse;  // [B, n, h, D], [B, h, n] in the accumulation type
    if (whole && q.size(2) > 0) {
      // One rank, one pair over every row: the kernel's results are the outputs (no accumulators).
      model::AttentionResult r =
          model::blockwise_attention_forward(q.to(type), k.to(type), v.to(type), whole->spec, plan->options);
      out = std::move(r.out);
      lse = std::move(r.lse);
    } else {
      out = at::zeros(q.sizes(), q.options().dtype(type));
      lse = at::full({q.size(0), q.size(2), q.size(1)}, -INFINITY, q.options().dtype(type));
    }
    if (whole) {
      ctx->save_for_backward({q, k, v, out, lse});
    } else {
      const at::Tensor kv = at::stack({k, v}).contiguous();
      // A rank without heads (H < U) skips the ring, as does its whole ring group.
      if (q.size(2) > 0) ring_forward(*plan, q.to(type), kv, out, lse);
      ctx->save_for_backward({q, kv, out, lse});
    }
    ctx->saved_data["plan"] = at::IValue::make_capsule(plan);
    ctx->set_materialize_grads(false);
    return {out.to(q.scalar_type()), lse};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const auto plan = from_capsule<RingPlan>(ctx->saved_data["plan"]);
    const at::Tensor& q = saved[0];
    const at::ScalarType type = accumulate_type(q.scalar_type());
    const at::Tensor& out = saved[saved.size() - 2];
    const at::Tensor& lse = saved[saved.size() - 1];
    const at::Tensor dout = grads[0].defined() ? grads[0].to(type) : at::zeros_like(out);
    const at::Tensor& dlse = grads[1];
    if (saved.size() == 5) {  // one rank, the whole sequence
      const at::Tensor &k = saved[1], &v = saved[2];
      if (q.size(2) == 0) return {at::zeros_like(q), at::zeros_like(k), at::zeros_like(v), at::Tensor()};
      const std::optional<ChunkPair> whole = whole_sequence_pair(*plan, q.size(1));
      const model::AttentionGrads g = model::blockwise_attention_backward(
          q.to(type), k.to(type), v.to(type), out, lse, dout, dlse, whole->spec, plan->options);
      return {g.dq.to(q.scalar_type()), g.dk.to(k.scalar_type()), g.dv.to(v.scalar_type()), at::Tensor()};
    }
    const at::Tensor& kv = saved[1];                                   // [2, B, n, h_kv, D]
    at::Tensor dq = at::zeros(q.sizes(), q.options().dtype(type));     // [B, n, h, D]
    at::Tensor dkv = at::zeros(kv.sizes(), kv.options().dtype(type));  // travels with kv
    // Δ = rowsum(dout ∘ out) − dlse [B, h, n], once: every pair of a q chunk reads the same rows.
    if (q.size(2) > 0)
      ring_backward(*plan, q.to(type), kv, lse, dout, model::attention_delta(out, dout, dlse), dq, dkv);
    return {dq.to(q.scalar_type()), dkv[0].to(kv.scalar_type()), dkv[1].to(kv.scalar_type()), at::Tensor()};
  }

 private:
  // One pass around the ring, the next K/V block posted before the current one is used: at each
  // step `visit(kv_acc, pair)` for every pair of this rank's q chunks with the block it holds (in
  // the accumulation type), then `after_step()`.
  template <typename Visit, typename AfterStep>
  static void around_the_ring(const RingPlan& plan, at::Tensor kv, at::ScalarType type, Visit visit,
                              AfterStep after_step) {
    const int ranks = plan.size(), me = plan.rank();
    for (int step = 0; step < ranks; ++step) {
      std::optional<RingExchange> next;
      if (step + 1 < ranks) next.emplace(plan.mesh->ring(), kv, kv, /*tag=*/0);
      const at::Tensor kv_acc = kv.to(type);
      for (const ChunkPair& pair : chunk_pairs(plan, (me - step + ranks) % ranks)) visit(kv_acc, pair);
      after_step();
      if (next) kv = next->wait();
    }
  }

  // out, lse ← q_acc's chunks against every K/V block of the ring, merged.
  static void ring_forward(const RingPlan& plan, const at::Tensor& q_acc, const at::Tensor& kv,
                           at::Tensor& out, at::Tensor& lse) {
    around_the_ring(
        plan, kv, q_acc.scalar_type(),
        [&](const at::Tensor& kv_acc, const ChunkPair& pair) {
          const model::AttentionResult part = model::blockwise_attention_forward(
              q_acc.narrow(1, pair.q_offset, pair.queries), kv_acc[0].narrow(1, pair.k_offset, pair.keys),
              kv_acc[1].narrow(1, pair.k_offset, pair.keys), pair.spec, plan.options);
          model::merge_attention_partial(out.narrow(1, pair.q_offset, pair.queries),
                                         lse.narrow(2, pair.q_offset, pair.queries), part.out, part.lse);
        },
        [] {});
  }

  // dq += the gradients of q_acc's rows; dkv: the K/V accumulators, home after R hops.
  static void ring_backward(const RingPlan& plan, const at::Tensor& q_acc, const at::Tensor& kv,
                            const at::Tensor& lse, const at::Tensor& dout, const at::Tensor& delta,
                            at::Tensor& dq, at::Tensor& dkv) {
    around_the_ring(
        plan, kv, q_acc.scalar_type(),
        [&](const at::Tensor& kv_acc, const ChunkPair& pair) {
          auto rows = [&](const at::Tensor& x) { return x.narrow(1, pair.q_offset, pair.queries); };
          auto per_row = [&](const at::Tensor& x) { return x.narrow(2, pair.q_offset, pair.queries); };
          auto keys = [&](const at::Tensor& x) { return x.narrow(1, pair.k_offset, pair.keys); };
          const model::AttentionGrads g = model::blockwise_attention_backward_from_delta(
              rows(q_acc), keys(kv_acc[0]), keys(kv_acc[1]), per_row(lse), rows(dout), per_row(delta),
              pair.spec, plan.options);
          rows(dq).add_(g.dq);
          keys(dkv[0]).add_(g.dk);
          keys(dkv[1]).add_(g.dv);
        },
        // R hops bring every accumulator home: after step s this rank holds block (me − s − 1)'s.
        [&] {
          if (plan.size() > 1) dkv = RingExchange(plan.mesh->ring(), dkv, dkv, /*tag=*/1).wait();
        });
  }
};

// ---- Pure Ulysses (R = 1) in one function ----------------------------------------------------------

// The all-to-alls and the local kernel as one step, so the backward can take Δ = rowsum(dout ∘ out)
// on the sequence side, where out lives anyway (it is this function's output, which the model's
// output projection keeps for its own backward), and send Δ over (1/D of dout's bytes) instead of
// keeping a head-layout copy of out. Saved: q, k, v in the head layout, lse, and the output.
struct UlyssesPlan : torch::CustomClassHolder {
  c10::intrusive_ptr<HeadRouting> q_routing, kv_routing;
  int64_t length = 0;  // real tokens of the whole sequence; rows past it are padding
  model::AttentionSpec spec;
  model::BlockwiseOptions options;
};

class UlyssesAttention : public torch::autograd::Function<UlyssesAttention> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, c10::intrusive_ptr<UlyssesPlan> plan) {
    at::NoGradGuard no_grad;
    const at::Tensor q_group = heads_to_sequence(*plan->q_routing, q);   // [B, L, H_u, D]
    const at::Tensor k_group = heads_to_sequence(*plan->kv_routing, k);  // [B, L, H_kv,u, D]
    const at::Tensor v_group = heads_to_sequence(*plan->kv_routing, v);
    const at::ScalarType type = accumulate_type(q.scalar_type());
    const int64_t n = plan->length, length = q_group.size(1);
    // Padding sits at the end of the sequence: the kernel sees the real rows only (padding: out 0, lse −inf).
    at::Tensor out_group, lse;  // [B, L, H_u, D], [B, H_u, L]
    if (q_group.size(2) > 0 && n > 0) {
      const model::AttentionResult r =
          model::blockwise_attention_forward(q_group.narrow(1, 0, n), k_group.narrow(1, 0, n),
                                             v_group.narrow(1, 0, n), plan->spec, plan->options);
      out_group = padded_to(r.out, 1, length, 0);
      lse = padded_to(r.lse, 2, length, -INFINITY);
    } else {
      out_group = at::zeros(q_group.sizes(), q_group.options());
      lse = at::full({q.size(0), q_group.size(2), length}, -INFINITY, q.options().dtype(type));
    }
    at::Tensor out = sequence_to_heads(*plan->q_routing, out_group);  // [B, l, H, D]
    ctx->save_for_backward({q_group, k_group, v_group, lse, out});
    ctx->saved_data["plan"] = at::IValue::make_capsule(plan);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &q_group = saved[0], &k_group = saved[1], &v_group = saved[2], &lse = saved[3],
                     &out = saved[4];
    const auto plan = from_capsule<UlyssesPlan>(ctx->saved_data["plan"]);
    // dq, dk, dv in the head layout; dout's head-layout copy and Δ die before the way back.
    model::AttentionGrads g = group_grads(*plan, q_group, k_group, v_group, lse, out, grads[0].contiguous());
    at::Tensor dq = sequence_to_heads(*plan->q_routing, g.dq);
    g.dq.reset();
    at::Tensor dk = sequence_to_heads(*plan->kv_routing, g.dk);
    g.dk.reset();
    at::Tensor dv = sequence_to_heads(*plan->kv_routing, g.dv);
    return {dq, dk, dv, at::Tensor()};
  }

 private:
  // The local kernel's backward on the real rows of this rank's heads; padding rows get zeros.
  static model::AttentionGrads group_grads(const UlyssesPlan& plan, const at::Tensor& q_group,
                                           const at::Tensor& k_group, const at::Tensor& v_group,
                                           const at::Tensor& lse, const at::Tensor& out,
                                           const at::Tensor& dout) {
    at::Tensor dout_group = heads_to_sequence(*plan.q_routing, dout);  // [B, L, H_u, D]
    // Δ [B, l, H] on the sequence side, sent as a [B, l, H, 1] tensor → [B, L, H_u, 1] → [B, H_u, L].
    const at::Tensor delta_local =
        model::attention_delta(out, dout, at::Tensor()).transpose(1, 2).unsqueeze(-1);
    const at::Tensor delta =
        heads_to_sequence(*plan.q_routing, delta_local.contiguous()).squeeze(-1).transpose(1, 2);
    const int64_t n = plan.length, length = q_group.size(1);
    if (q_group.size(2) == 0 || n == 0) {
      return {at::zeros_like(q_group), at::zeros_like(k_group), at::zeros_like(v_group)};
    }
    // The kernel gets the last reference to dout's head-layout copy and frees it once it has its own.
    at::Tensor dout_real = dout_group.narrow(1, 0, n);
    dout_group.reset();
    model::AttentionGrads g = model::blockwise_attention_backward_from_delta(
        q_group.narrow(1, 0, n), k_group.narrow(1, 0, n), v_group.narrow(1, 0, n), lse.narrow(2, 0, n),
        std::move(dout_real), delta.narrow(2, 0, n), plan.spec, plan.options);
    // The real rows' gradients, zero on the padding after them.
    return {padded_to(g.dq, 1, length, 0), padded_to(g.dk, 1, length, 0), padded_to(g.dv, 1, length, 0)};
  }
};

}  // namespace

SequenceParallelAttention::SequenceParallelAttention(std::shared_ptr<Mesh> mesh, SpMode mode,
                                                     model::BlockwiseOptions local)
    : mesh_(std::move(mesh)), mode_(mode), local_(local) {
  LVRL_ASSERT(mesh_ != nullptr, "SequenceParallelAttention needs a mesh");
  const bool ulysses_only = mode_ == SpMode::Ulysses && mesh_->ring_size() != 1;
  const bool ring_only = (mode_ == SpMode::Ring || mode_ == SpMode::Zigzag) && mesh_->ulysses_size() != 1;
  if (ulysses_only || ring_only) {
    throw InputError({"", 0, "mode", sp_mode_name(mode_)},
                     fmt::format("does not run on a mesh with Ulysses degree {} and ring degree {} (ulysses "
                                 "needs R = 1, ring and zigzag need U = 1; hybrid takes any U × R)",
                                 mesh_->ulysses_size(), mesh_->ring_size()));
  }
  layout_ = SequenceLayout::make(mode_, mesh_->ulysses_size(), mesh_->ring_size(), 0, false);
}

std::string SequenceParallelAttention::name() const {
  return fmt::format("sp-{}(U={},R={})", sp_mode_name(mode_), mesh_->ulysses_size(), mesh_->ring_size());
}

model::AttentionResult SequenceParallelAttention::forward(const at::Tensor& q, const at::Tensor& k,
                                                          const at::Tensor& v,
                                                          const model::AttentionSpec& spec) {
  model::check_attention_inputs(q, k, v, spec);
  const int64_t heads = q.size(2), kv_heads = k.size(2);
  LVRL_ASSERT(
      layout_.mode == mode_ && layout_.ulysses == mesh_->ulysses_size() && layout_.ring == mesh_->ring_size(),
      fmt::format("SP attention {}: layout is {} with U = {}, R = {}", name(), sp_mode_name(layout_.mode),
                  layout_.ulysses, layout_.ring));
  LVRL_ASSERT(q.size(1) == layout_.local_length() && k.size(1) == layout_.local_length(),
              fmt::format("SP attention {}: q {} / k {} do not hold the layout's {} local tokens", name(),
                          c10::str(q.sizes()), c10::str(k.sizes()), layout_.local_length()));
  LVRL_ASSERT((spec.mask == model::MaskKind::Causal) == layout_.causal,
              fmt::format("SP attention {}: the spec's mask and the layout's causal flag ({}) differ", name(),
                          layout_.causal));
  LVRL_ASSERT(!spec.cu_seqlens.defined() && !spec.key_lengths.defined(),
              "SP attention: cu_seqlens / key_lengths are not supported");

  auto plan = c10::make_intrusive<RingPlan>();
  plan->mesh = mesh_;
  plan->layout = layout_;
  plan->mask = spec.mask;
  plan->scale = spec.scale > 0 ? spec.scale : 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  plan->options = local_;

  if (mesh_->ulysses_size() == 1) {
    return {RingAttention::apply(q, k, v, plan)[0], at::Tensor()};
  }
  const auto query_heads = split_query_heads(heads, mesh_->ulysses_size());
  const auto q_routing = make_routing(mesh_, heads, query_heads);
  const auto kv_routing = make_routing(mesh_, kv_heads, kv_heads_for(query_heads, heads, kv_heads));
  if (mesh_->ring_size() == 1) {
    auto ulysses = c10::make_intrusive<UlyssesPlan>();
    ulysses->q_routing = q_routing;
    ulysses->kv_routing = kv_routing;
    ulysses->length = layout_.length;
    ulysses->spec.mask = spec.mask;
    ulysses->spec.scale = plan->scale;
    ulysses->options = local_;
    return {UlyssesAttention::apply(q, k, v, ulysses), at::Tensor()};
  }
  const at::Tensor q_group = HeadsToSequence::apply(q, q_routing);   // [B, U·l, H_u, D]
  const at::Tensor k_group = HeadsToSequence::apply(k, kv_routing);  // [B, U·l, H_kv,u, D]
  const at::Tensor v_group = HeadsToSequence::apply(v, kv_routing);
  const at::Tensor out_group = RingAttention::apply(q_group, k_group, v_group, plan)[0];
  return {SequenceToHeads::apply(out_group, q_routing), at::Tensor()};
}

int64_t SequenceParallelAttention::expected_bytes(int64_t batch, int64_t heads, int64_t kv_heads,
                                                  int64_t head_dim, int64_t element_bytes) const {
  return attention_bytes(mesh_->ulysses_size(), mesh_->ring_size(), mesh_->ulysses_rank(), batch,
                         layout_.local_length(), heads, kv_heads, head_dim, element_bytes)
      .total();
}

}  // namespace lvrl::sp
