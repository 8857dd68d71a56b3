// The sequence-parallel plan for one training step: from the model config, the video (frames × tokens
// per frame + text) and the cluster (GPUs per node, world size, memory per GPU), the SP degree, its
// U × R split (Ulysses × ring), the per-rank memory it needs and the bytes each rank sends — and why.
// A pure function; `lvrl sp plan` prints it.
//
// Rules, in the order they are applied:
//   1. SP divides the world size W (DP = W / SP). A forced --sp that does not is an InputError naming it.
//      W > G must be a whole number of nodes (W % G == 0).
//   2. Memory decides SP: the smallest SP (divisors of W, ascending) with some U × R whose per-rank
//      memory fits the budget, GPU memory less 10% headroom (allocator fragmentation, CUDA context,
//      what the estimate leaves out). When none fits, the largest SP is taken with its least-memory
//      U × R and the plan says it does not fit.
//   3. U (Ulysses degree) divides SP; U ≤ H (every rank computes at least one query head; H % U ≠ 0
//      is allowed — uneven split sizes — and said, since the ranks with more heads set the pace);
//      every Ulysses group of U consecutive ranks lies inside one node (U ≤ G, and U divides G when W
//      spans several nodes), so the all-to-alls run over the node's fast links. When the U ranks need
//      more KV-head copies than H_kv (H_kv < U, or query heads straddling KV groups) the KV heads are
//      replicated and their gradients summed back; the plan says so and counts the extra bytes.
//   4. R = SP / U ring groups (strided by U, so R > 1 with SP > G crosses nodes). The decoder is causal,
//      so the ring uses zigzag chunks (2R chunks, ring rank i holding i and 2R−1−i).
//   5. Among the U × R allowed at that SP that fit, the one whose ranks send the fewest bytes per step
//      (the largest over ranks); ties go to the larger U (fewer ring hops, less inter-node traffic).
//
// Memory per rank (bytes; "≈": the tensors that dominate, no allocator overhead):
//   model state   text-model weights + gradients at element_bytes and AdamW moments in fp32, sharded
//                 over all W ranks (ZeRO-3 / FSDP), plus two full copies of the largest unit (a decoder
//                 layer, the embedding or lm_head) gathered at a time (the one in use and the prefetch).
//                 The vision tower is frozen and its embeddings come from the cache: not resident.
//   video rows    the video-embedding rows, all-gathered on every rank (sp/vlm_shard.h).
//   activations   of the local tokens l = padded N / SP: with recompute (the default) each layer's
//                 input [l, d] for all layers plus one layer's saved tensors, per token
//                 (6d + 2d_kv + 3·intermediate)·element_bytes (model_info's count); without, every
//                 layer's saved tensors.
//   attention     one layer's SP attention working set (the largest rank): the Ulysses-side copies of
//                 q, k, v, out and their gradients over the group's U·l tokens, the fp32 q / out / dout /
//                 dq copies and the lse the ring keeps, its K/V receive buffer and travelling fp32
//                 dK/dV, and the local kernel's score blocks (256 × 256 per head).
//   Not counted: a reference policy for KL, the rollout engine, logits (log-probs are chunked).
//
// Comm per step per rank: attention_bytes (sp/volume.h, docs/sp.md's formulas with the exact
// head split) per layer, forward + backward, × layers; with recompute the forward runs (and sends)
// again in backward, so its bytes count twice. Data-parallel gradient traffic is not SP's and is left out.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "model/qwen_config.h"
#include "sp/layout.h"

namespace lvrl::sp {

struct PlanInput {
  model::QwenConfig config;
  std::string model_name;          // for the report: the preset or the directory
  int64_t frames = 0;              // video frames the model sees
  int64_t tokens_per_frame = 0;    // language-model tokens per frame (after the 2×2 merge and the
                                   // temporal pair: (H/28)·(W/28)/2 for frames of H×W pixels)
  int64_t text_tokens = 512;       // prompt + response tokens besides the video
  int gpus_per_node = 8;           // G
  int world_size = 8;              // W
  double memory_per_gpu_gib = 80;  // GiB (2^30 bytes)
  double headroom = 0.10;          // fraction of GPU memory kept free
  int64_t element_bytes = 2;       // bf16 weights and activations
  bool recompute = true;           // activation checkpointing per decoder layer
  int sp = 0;                      // force this SP degree (0: choose)
};

struct PlanMemory {
  int64_t model_state = 0, gathered_weights = 0, video_rows = 0, activations = 0, attention = 0;
  int64_t total() const { return model_state + gathered_weights + video_rows + activations + attention; }
};

// One U × R the planner looked at, at the chosen SP.
struct PlanCandidate {
  int ulysses = 1, ring = 1;
  bool allowed = true;  // rules 3/4; else `why_not` says which
  std::string why_not;
  PlanMemory memory;  // of the largest rank
  int64_t comm_bytes_per_step = 0;
  bool fits = false;
};

struct Plan {
  int sp = 1, ulysses = 1, ring = 1, dp = 1;
  SpMode mode = SpMode::Ulysses;  // meaningful when sp > 1
  std::string mode_name;          // "none" (sp = 1), "ulysses", "zigzag" or "hybrid"
  int64_t sequence_tokens = 0;    // N = frames · tokens_per_frame + text_tokens
  int64_t local_tokens = 0;       // padded N / SP
  PlanMemory memory;              // per rank (the largest)
  int64_t memory_budget_bytes = 0;
  bool fits = false;
  int64_t comm_forward_bytes_per_layer = 0;  // the rank that sends most
  int64_t comm_backward_bytes_per_layer = 0;
  int64_t comm_bytes_per_step = 0;        // × layers, forward again when recompute
  int64_t inter_node_bytes_per_step = 0;  // the part of it that crosses nodes (ring hops)
  std::vector<PlanCandidate> candidates;  // every U × R at the chosen SP
  std::vector<std::string> reasons;
};

// InputError naming the flag for inputs the rules cannot take (see rule 1; non-positive counts).
Plan make_plan(const PlanInput& input);

nlohmann::ordered_json plan_json(const PlanInput& input, const Plan& plan);  // keys in a fixed order
std::string format_plan(const PlanInput& input, const Plan& plan);           // the readable explanation

}  // namespace lvrl::sp
