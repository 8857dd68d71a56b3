#include "sp/volume.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"

namespace lvrl::sp {

std::vector<std::vector<int64_t>> split_query_heads(int64_t heads, int ranks) {
  std::vector<std::vector<int64_t>> split(ranks);
  int64_t next = 0;
  for (int u = 0; u < ranks; ++u) {
    const int64_t count = heads / ranks + (u < heads % ranks ? 1 : 0);
    for (int64_t h = 0; h < count; ++h) split[u].push_back(next++);
  }
  return split;
}

std::vector<std::vector<int64_t>> kv_heads_for(const std::vector<std::vector<int64_t>>& query_heads,
                                               int64_t heads, int64_t kv_heads) {
  const int64_t group = heads / kv_heads;
  std::vector<std::vector<int64_t>> needed;
  for (const auto& q : query_heads) {
    std::vector<int64_t> kv;
    if (!q.empty()) {
      const int64_t first = q.front() / group, last = q.back() / group;
      const int64_t count = last - first + 1;
      bool standard = static_cast<int64_t>(q.size()) % count == 0;
      const int64_t local_group = standard ? static_cast<int64_t>(q.size()) / count : 1;
      for (size_t h = 0; standard && h < q.size(); ++h) {
        standard = q[h] / group == first + static_cast<int64_t>(h) / local_group;
      }
      if (standard) {
        for (int64_t j = first; j <= last; ++j) kv.push_back(j);
      } else {
        for (int64_t h : q) kv.push_back(h / group);
      }
    }
    needed.push_back(std::move(kv));
  }
  return needed;
}

AttentionBytes attention_bytes(int ulysses, int ring, int ulysses_rank, int64_t batch, int64_t local_tokens,
                               int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t element_bytes) {
  const int U = ulysses, R = ring, me = ulysses_rank;
  LVRL_ASSERT(U >= 1 && R >= 1 && me >= 0 && me < U,
              fmt::format("attention_bytes: Ulysses rank {} of U = {}, R = {}", me, U, R));
  LVRL_ASSERT(heads >= 1 && kv_heads >= 1 && heads % kv_heads == 0,
              fmt::format("attention_bytes: H = {}, H_kv = {}", heads, kv_heads));
  // Heads this rank computes (H_me, H_kv,me) and the head-slots it sends the others in the
  // heads → sequence direction (Σ_{u≠me} H_u, Σ_{u≠me} H_kv,u; docs/sp.md's (U−1)/U·H when even).
  int64_t q_heads = heads, q_others = 0, kv_here = kv_heads, kv_others = 0;
  if (U > 1) {
    const auto query_heads = split_query_heads(heads, U);
    const auto kv_of = kv_heads_for(query_heads, heads, kv_heads);
    q_heads = static_cast<int64_t>(query_heads[me].size());
    kv_here = static_cast<int64_t>(kv_of[me].size());
    for (int u = 0; u < U; ++u) {
      if (u == me) continue;
      q_others += static_cast<int64_t>(query_heads[u].size());
      kv_others += static_cast<int64_t>(kv_of[u].size());
    }
  }
  const int64_t token_bytes = batch * local_tokens * head_dim * element_bytes;  // one head of one shard
  AttentionBytes bytes;
  // Forward: q (q_others), k and v (kv_others each) go out; out comes back, (U−1) blocks of H_me heads.
  bytes.forward = token_bytes * (q_others + 2 * kv_others + (U - 1) * q_heads);
  // Backward: dout goes out as q did; dq, dk, dv come back. With R = 1, Δ = rowsum(dout ∘ out) goes
  // out too, one accumulation-type value per query head and token (sp_attention.cpp, UlyssesAttention).
  bytes.backward = token_bytes * (q_others + (U - 1) * (q_heads + 2 * kv_here));
  if (R == 1) bytes.backward += batch * local_tokens * q_others * std::max<int64_t>(element_bytes, 4);
  if (R > 1 && q_heads > 0) {  // a rank without heads (H < U) skips the ring, as does its group
    const int64_t block = batch * static_cast<int64_t>(U) * local_tokens * kv_here * head_dim;  // K (or V)
    bytes.ring_forward = 2 * block * (R - 1) * element_bytes;
    bytes.ring_backward =
        2 * block * (R - 1) * element_bytes + 2 * block * R * std::max<int64_t>(element_bytes, 4);
    bytes.forward += bytes.ring_forward;
    bytes.backward += bytes.ring_backward;
  }
  return bytes;
}

}  // namespace lvrl::sp
