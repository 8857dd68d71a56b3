// The planner's rules and estimates are in plan.h; this file applies them in that order and writes
// down, as it goes, why each choice was made.
#include "sp/plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/human_bytes.h"
#include "model/model_info.h"
#include "sp/volume.h"

namespace lvrl::sp {
namespace {

constexpr int64_t kKernelBlock = 256;  // the local blockwise kernel's query/key block

void validate(const PlanInput& in) {
  auto positive = [](int64_t value, const char* flag, const char* what) {
    if (value < 1)
      throw InputError({"", 0, flag, std::to_string(value)}, fmt::format("expected {} >= 1", what));
  };
  positive(in.frames, "--frames", "a frame count");
  positive(in.tokens_per_frame, "--tokens-per-frame", "a token count");
  positive(in.gpus_per_node, "--gpus-per-node", "a GPU count");
  positive(in.world_size, "--world-size", "a world size");
  if (in.text_tokens < 0) {
    throw InputError({"", 0, "--text-tokens", std::to_string(in.text_tokens)}, "expected a token count >= 0");
  }
  if (!(in.memory_per_gpu_gib > 0)) {
    throw InputError({"", 0, "--memory-per-gpu-gb", fmt::format("{}", in.memory_per_gpu_gib)},
                     "expected a positive memory size in GiB");
  }
  if (in.element_bytes != 2 && in.element_bytes != 4) {
    throw InputError({"", 0, "element_bytes", std::to_string(in.element_bytes)},
                     "expected 2 (bf16) or 4 (fp32)");
  }
  if (in.world_size > in.gpus_per_node && in.world_size % in.gpus_per_node != 0) {
    throw InputError({"", 0, "--world-size", std::to_string(in.world_size)},
                     fmt::format("{} ranks do not fill whole nodes of --gpus-per-node {}", in.world_size,
                                 in.gpus_per_node));
  }
  if (in.sp < 0 || (in.sp > 0 && in.world_size % in.sp != 0)) {
    throw InputError(
        {"", 0, "--sp", std::to_string(in.sp)},
        fmt::format("SP must divide --world-size {} (DP = W / SP ranks of SP each)", in.world_size));
  }
  const model::TextConfig& t = in.config.text;
  if (t.num_attention_heads < 1 || t.num_key_value_heads < 1 ||
      t.num_attention_heads % t.num_key_value_heads != 0 || t.hidden_size % t.num_attention_heads != 0 ||
      t.num_hidden_layers < 1) {
    throw InputError({in.model_name, 0, "num_attention_heads/num_key_value_heads",
                      fmt::format("{}/{}", t.num_attention_heads, t.num_key_value_heads)},
                     "expected H_kv to divide H, H to divide hidden_size, and at least one layer");
  }
}

// Everything the planner works out for one U × R at one SP.
struct Evaluation {
  PlanCandidate candidate;
  int64_t local_tokens = 0;
  int64_t forward_per_layer = 0, backward_per_layer = 0;  // of the rank that sends most per step
  int64_t inter_node_per_step = 0;
  int uneven_max = 0, uneven_min = 0;  // query heads per rank when H % U != 0
  int64_t kv_copies = 0;               // KV heads held over the Ulysses group (> H_kv: replicated)
};

struct Shared {  // the parts of the estimate no SP choice changes
  int64_t model_state = 0, gathered_weights = 0, video_rows = 0, state_total = 0, largest_unit = 0;
  std::string largest_unit_name;
};

Shared shared_memory(const PlanInput& in) {
  const model::TextConfig& t = in.config.text;
  const model::PartCounts counts = model::parameter_counts(in.config);
  Shared s;
  const int64_t per_parameter = 2 * in.element_bytes + 8;  // weights + grads, AdamW m and v in fp32
  s.state_total = counts.text() * per_parameter;
  s.model_state = (s.state_total + in.world_size - 1) / in.world_size;
  const int64_t layer = counts.text_layers / t.num_hidden_layers;
  s.largest_unit = layer;
  s.largest_unit_name = "a decoder layer";
  if (counts.text_embed > s.largest_unit) {
    s.largest_unit = counts.text_embed;
    s.largest_unit_name = "embed_tokens";
  }
  if (counts.lm_head > s.largest_unit) {
    s.largest_unit = counts.lm_head;
    s.largest_unit_name = "lm_head";
  }
  s.gathered_weights = 2 * s.largest_unit * in.element_bytes;
  s.video_rows = in.frames * in.tokens_per_frame * t.hidden_size * in.element_bytes;
  return s;
}

// Rule 3/4 for one U: empty when allowed, else why not.
std::string ulysses_not_allowed(const PlanInput& in, int sp, int ulysses) {
  const int64_t heads = in.config.text.num_attention_heads;
  if (sp % ulysses != 0) return fmt::format("U = {} does not divide SP = {}", ulysses, sp);
  if (ulysses > heads)
    return fmt::format("U = {} > H = {} query heads: some ranks would compute none", ulysses, heads);
  if (ulysses > 1) {
    for (int first = 0; first < in.world_size; first += ulysses) {
      if (first / in.gpus_per_node != (first + ulysses - 1) / in.gpus_per_node) {
        return fmt::format("U = {} would put ranks {}..{} of one Ulysses group on two nodes of {} GPUs",
                           ulysses, first, first + ulysses - 1, in.gpus_per_node);
      }
    }
  }
  return "";
}

Evaluation evaluate(const PlanInput& in, const Shared& shared, int64_t sequence_tokens, int sp, int ulysses) {
  const model::TextConfig& t = in.config.text;
  const int64_t heads = t.num_attention_heads, kv_heads = t.num_key_value_heads, dim = t.head_dim();
  const int64_t d = t.hidden_size, d_kv = kv_heads * dim, eb = in.element_bytes, layers = t.num_hidden_layers;
  const int U = ulysses, R = sp / ulysses;
  Evaluation e;
  e.candidate.ulysses = U;
  e.candidate.ring = R;
  e.candidate.why_not = ulysses_not_allowed(in, sp, U);
  e.candidate.allowed = e.candidate.why_not.empty();
  const SpMode mode = U == sp ? SpMode::Ulysses : U == 1 ? SpMode::Zigzag : SpMode::Hybrid;
  const SequenceLayout layout = SequenceLayout::make(mode, U, R, sequence_tokens, /*causal=*/true);
  const int64_t l = layout.local_length(), n = static_cast<int64_t>(U) * l;

  const auto query_heads = split_query_heads(heads, U);
  const auto kv_of = kv_heads_for(query_heads, heads, kv_heads);
  e.uneven_max = static_cast<int>(query_heads.front().size());
  e.uneven_min = static_cast<int>(query_heads.back().size());
  for (const auto& kv : kv_of) e.kv_copies += static_cast<int64_t>(kv.size());
  if (U == 1) e.kv_copies = kv_heads;

  // Memory of the largest rank: the attention working set is the only per-rank difference.
  int64_t attention = 0;
  for (int u = 0; u < U; ++u) {
    const int64_t h = U == 1 ? heads : static_cast<int64_t>(query_heads[u].size());
    const int64_t kv = U == 1 ? kv_heads : static_cast<int64_t>(kv_of[u].size());
    const int64_t copies = U > 1 ? 2 * n * (2 * h + 2 * kv) * dim * eb : 0;  // q, k, v, out and grads
    const int64_t accumulators = 4 * n * h * dim * 4 + n * h * 4;            // q, out, dout, dq fp32; lse
    const int64_t ring =
        R > 1 ? 2 * n * kv * dim * eb + 2 * (2 * n * kv * dim * 4)   // K/V in; dK/dV travelling, in
              : 2 * n * kv * dim * 4;                                // dK/dV accumulators
    const int64_t kernel = 3 * kKernelBlock * kKernelBlock * h * 4;  // scores, probs, dS
    attention = std::max(attention, copies + accumulators + ring + kernel);
  }
  const int64_t saved_per_token = (6 * d + 2 * d_kv + 3 * t.intermediate_size) * eb;  // one layer
  PlanMemory& memory = e.candidate.memory;
  memory.model_state = shared.model_state;
  memory.gathered_weights = shared.gathered_weights;
  memory.video_rows = shared.video_rows;
  memory.activations =
      in.recompute ? layers * l * d * eb + l * saved_per_token : layers * l * saved_per_token;
  memory.attention = attention;
  e.local_tokens = l;

  // Comm: the rank that sends most per step.
  for (int u = 0; u < U; ++u) {
    const AttentionBytes bytes = attention_bytes(U, R, u, 1, l, heads, kv_heads, dim, eb);
    const int64_t per_step = layers * (bytes.total() + (in.recompute ? bytes.forward : 0));
    const int64_t ring_per_step =
        layers * (bytes.ring_forward + bytes.ring_backward + (in.recompute ? bytes.ring_forward : 0));
    if (per_step > e.candidate.comm_bytes_per_step) {
      e.candidate.comm_bytes_per_step = per_step;
      e.forward_per_layer = bytes.forward;
      e.backward_per_layer = bytes.backward;
    }
    // Ring sends go to ring index + 1 (sp_index + U); count them when that rank sits on another node.
    for (int dp = 0; dp < in.world_size / sp; ++dp) {
      for (int r = 0; r < R && R > 1; ++r) {
        const int rank = dp * sp + r * U + u, next = dp * sp + ((r + 1) % R) * U + u;
        if (rank / in.gpus_per_node != next / in.gpus_per_node) {
          e.inter_node_per_step = std::max(e.inter_node_per_step, ring_per_step);
        }
      }
    }
  }
  return e;
}

std::string mode_name_of(int sp, int ulysses) {
  if (sp == 1) return "none";
  if (ulysses == sp) return "ulysses";
  return ulysses == 1 ? "zigzag" : "hybrid";
}

}  // namespace

Plan make_plan(const PlanInput& in) {
  validate(in);
  const model::TextConfig& t = in.config.text;
  const int64_t heads = t.num_attention_heads, kv_heads = t.num_key_value_heads;
  Plan plan;
  plan.sequence_tokens = in.frames * in.tokens_per_frame + in.text_tokens;
  plan.memory_budget_bytes =
      static_cast<int64_t>(in.memory_per_gpu_gib * (1 - in.headroom) * static_cast<double>(int64_t{1} << 30));
  const Shared shared = shared_memory(in);
  auto& why = plan.reasons;
  why.push_back(fmt::format("sequence: {} frames × {} tokens + {} text tokens = {} tokens (a causal decoder)",
                            in.frames, in.tokens_per_frame, in.text_tokens, plan.sequence_tokens));
  why.push_back(fmt::format(
      "model state: {} text parameters × {} B (weights + grads at {} B, AdamW moments fp32) = {}, sharded "
      "over all "
      "W = {} ranks (ZeRO-3) = {} per rank, + {} for two gathered copies of the largest unit ({}); video "
      "rows {} "
      "(all-gathered on every rank); vision tower frozen, embeddings from the cache",
      model::parameter_counts(in.config).text(), 2 * in.element_bytes + 8, in.element_bytes,
      human_bytes(shared.state_total), in.world_size, human_bytes(shared.model_state),
      human_bytes(shared.gathered_weights), shared.largest_unit_name, human_bytes(shared.video_rows)));
  why.push_back(fmt::format("budget: {} GiB per GPU less {:.0f}% headroom = {}", in.memory_per_gpu_gib,
                            100 * in.headroom, human_bytes(plan.memory_budget_bytes)));

  std::vector<int> sp_options;
  for (int sp = 1; sp <= in.world_size; ++sp) {
    if (in.world_size % sp == 0 && (in.sp == 0 || sp == in.sp)) sp_options.push_back(sp);
  }
  std::vector<Evaluation> chosen_evaluations;
  const Evaluation* chosen = nullptr;
  for (int sp : sp_options) {
    std::vector<Evaluation> evaluations;
    for (int u = 1; u <= sp; ++u) {
      if (sp % u == 0) evaluations.push_back(evaluate(in, shared, plan.sequence_tokens, sp, u));
    }
    const Evaluation* best = nullptr;
    const Evaluation* least_memory = nullptr;
    for (Evaluation& e : evaluations) {
      PlanCandidate& c = e.candidate;
      c.fits = c.memory.total() <= plan.memory_budget_bytes;
      if (!c.allowed) continue;
      if (least_memory == nullptr || c.memory.total() < least_memory->candidate.memory.total())
        least_memory = &e;
      if (!c.fits) continue;
      // Fewest bytes; ties to the larger U (evaluations run in ascending U).
      if (best == nullptr || c.comm_bytes_per_step <= best->candidate.comm_bytes_per_step) best = &e;
    }
    LVRL_ASSERT(least_memory != nullptr, fmt::format("plan: no U allowed at SP = {} (U = 1 always is)", sp));
    const bool last = sp == sp_options.back();
    if (best == nullptr && !last) {
      why.push_back(fmt::format("SP = {}: needs {} per rank at best (U × R = {} × {}) > budget {}", sp,
                                human_bytes(least_memory->candidate.memory.total()),
                                least_memory->candidate.ulysses, least_memory->candidate.ring,
                                human_bytes(plan.memory_budget_bytes)));
      continue;
    }
    chosen_evaluations = evaluations;
    const Evaluation* pick = best != nullptr ? best : least_memory;
    chosen = &chosen_evaluations[pick - evaluations.data()];
    break;
  }
  LVRL_ASSERT(chosen != nullptr, "plan: no SP evaluated");
  const PlanCandidate& c = chosen->candidate;
  plan.ulysses = c.ulysses;
  plan.ring = c.ring;
  plan.sp = c.ulysses * c.ring;
  plan.dp = in.world_size / plan.sp;
  plan.mode_name = mode_name_of(plan.sp, plan.ulysses);
  plan.mode = plan.ulysses == plan.sp ? SpMode::Ulysses : plan.ulysses == 1 ? SpMode::Zigzag : SpMode::Hybrid;
  plan.local_tokens = chosen->local_tokens;
  plan.memory = c.memory;
  plan.fits = c.fits;
  plan.comm_forward_bytes_per_layer = chosen->forward_per_layer;
  plan.comm_backward_bytes_per_layer = chosen->backward_per_layer;
  plan.comm_bytes_per_step = c.comm_bytes_per_step;
  plan.inter_node_bytes_per_step = chosen->inter_node_per_step;
  for (const Evaluation& e : chosen_evaluations) plan.candidates.push_back(e.candidate);

  // Why this SP.
  if (in.sp > 0) {
    why.push_back(fmt::format("SP = {} as asked (--sp); DP = {}", plan.sp, plan.dp));
  } else if (plan.fits) {
    why.push_back(fmt::format(
        "SP = {}: the smallest divisor of W = {} whose per-rank memory fits ({} ≤ {}); DP = {}", plan.sp,
        in.world_size, human_bytes(plan.memory.total()), human_bytes(plan.memory_budget_bytes), plan.dp));
  }
  if (!plan.fits) {
    why.push_back(
        fmt::format("DOES NOT FIT: SP = {} (the most W = {} allows{}) still needs {} per rank > budget {}; "
                    "more GPUs, fewer frames or tokens per frame{} would help",
                    plan.sp, in.world_size, in.sp > 0 ? ", as asked" : "", human_bytes(plan.memory.total()),
                    human_bytes(plan.memory_budget_bytes), in.recompute ? "" : ", or recompute"));
  }
  // Why this U × R.
  if (plan.sp > 1) {
    std::string limits = fmt::format(
        "U × R = SP with U ≤ G = {} so each Ulysses all-to-all stays inside a node, U dividing SP, U ≤ H = "
        "{} query "
        "heads",
        in.gpus_per_node, heads);
    for (const PlanCandidate& other : plan.candidates) {
      if (!other.allowed) limits += "; excluded: " + other.why_not;
    }
    why.push_back(limits);
    std::string table = "per-rank bytes per step of each allowed U × R (largest rank; memory):";
    for (const PlanCandidate& other : plan.candidates) {
      if (!other.allowed) continue;
      table +=
          fmt::format(" {}×{} {} ({}{})", other.ulysses, other.ring, human_bytes(other.comm_bytes_per_step),
                      human_bytes(other.memory.total()), other.fits ? "" : ", does not fit");
    }
    why.push_back(table);
    why.push_back(fmt::format("U × R = {} × {} ({}): the fewest bytes per step among those that fit{}",
                              plan.ulysses, plan.ring, plan.mode_name,
                              plan.fits ? "" : " (none fits: the least memory instead)"));
    if (plan.ulysses > 1 && heads % plan.ulysses != 0) {
      why.push_back(
          fmt::format("H = {} over U = {} is uneven: ranks compute {} or {} query heads (split sizes); the "
                      "ones with {} set the pace",
                      heads, plan.ulysses, chosen->uneven_max, chosen->uneven_min, chosen->uneven_max));
    }
    if (plan.ulysses > 1 && chosen->kv_copies > kv_heads) {
      why.push_back(fmt::format(
          "H_kv = {} KV heads over U = {}: {}the Ulysses ranks hold {} KV-head copies between them "
          "(replicated so each "
          "rank has those its query heads read; gradients summed back), which the bytes above include",
          kv_heads, plan.ulysses,
          kv_heads < plan.ulysses ? "fewer KV heads than ranks, " : "query heads straddle KV groups, ",
          chosen->kv_copies));
    }
    if (plan.ring > 1) {
      why.push_back(fmt::format(
          "causal → zigzag ring of R = {}: 2R = {} chunks, ring rank i holds chunks i and 2R−1−i, "
          "so every ring step costs every rank the same work",
          plan.ring, 2 * plan.ring));
      if (plan.inter_node_bytes_per_step > 0) {
        why.push_back(
            fmt::format("the ring crosses nodes: {} of the bytes per step go over the inter-node links",
                        human_bytes(plan.inter_node_bytes_per_step)));
      }
    } else {
      why.push_back("pure Ulysses: no ring; each rank runs the whole sequence for its heads");
    }
  } else {
    why.push_back("SP = 1: every rank holds the whole sequence; no SP communication");
  }
  if (in.recompute) {
    why.push_back(
        "activation recompute per layer: the attention forward runs again in backward, so its bytes count "
        "twice per step");
  }
  return plan;
}

nlohmann::ordered_json plan_json(const PlanInput& in, const Plan& plan) {
  nlohmann::ordered_json candidates = nlohmann::ordered_json::array();
  for (const PlanCandidate& c : plan.candidates) {
    candidates.push_back({{"ulysses", c.ulysses},
                          {"ring", c.ring},
                          {"allowed", c.allowed},
                          {"memory_bytes", c.memory.total()},
                          {"comm_bytes_per_step", c.comm_bytes_per_step},
                          {"fits", c.fits}});
  }
  nlohmann::ordered_json out = {{"model", in.model_name},
                                {"frames", in.frames},
                                {"tokens_per_frame", in.tokens_per_frame},
                                {"text_tokens", in.text_tokens},
                                {"gpus_per_node", in.gpus_per_node},
                                {"world_size", in.world_size},
                                {"memory_per_gpu_gib", in.memory_per_gpu_gib},
                                {"recompute", in.recompute},
                                {"sequence_tokens", plan.sequence_tokens},
                                {"sp", plan.sp},
                                {"ulysses", plan.ulysses},
                                {"ring", plan.ring},
                                {"dp", plan.dp},
                                {"mode", plan.mode_name},
                                {"local_tokens", plan.local_tokens},
                                {"fits", plan.fits},
                                {"memory_bytes",
                                 {{"model_state", plan.memory.model_state},
                                  {"gathered_weights", plan.memory.gathered_weights},
                                  {"video_rows", plan.memory.video_rows},
                                  {"activations", plan.memory.activations},
                                  {"attention", plan.memory.attention},
                                  {"total", plan.memory.total()},
                                  {"budget", plan.memory_budget_bytes}}},
                                {"comm_bytes",
                                 {{"forward_per_layer", plan.comm_forward_bytes_per_layer},
                                  {"backward_per_layer", plan.comm_backward_bytes_per_layer},
                                  {"per_step", plan.comm_bytes_per_step},
                                  {"inter_node_per_step", plan.inter_node_bytes_per_step}}},
                                {"candidates", candidates},
                                {"reasons", plan.reasons}};
  return out;
}

std::string format_plan(const PlanInput& in, const Plan& plan) {
  std::string out = fmt::format("{} on {} GPUs ({} per node, {} GiB each): {} tokens\n", in.model_name,
                                in.world_size, in.gpus_per_node, in.memory_per_gpu_gib, plan.sequence_tokens);
  out += fmt::format("plan: SP = {} (U × R = {} × {}, {}), DP = {}; {} tokens per rank{}\n", plan.sp,
                     plan.ulysses, plan.ring, plan.mode_name, plan.dp, plan.local_tokens,
                     plan.fits ? "" : "  — DOES NOT FIT");
  out += "memory per rank (≈)\n";
  const std::pair<const char*, int64_t> parts[] = {{"model state (sharded)", plan.memory.model_state},
                                                   {"gathered weights", plan.memory.gathered_weights},
                                                   {"video rows", plan.memory.video_rows},
                                                   {"activations", plan.memory.activations},
                                                   {"attention (one layer)", plan.memory.attention}};
  for (const auto& [name, bytes] : parts) out += fmt::format("  {:<24} {}\n", name, human_bytes(bytes));
  out += fmt::format("  {:<24} {} of {} budget\n", "total", human_bytes(plan.memory.total()),
                     human_bytes(plan.memory_budget_bytes));
  out += fmt::format("comm per rank: {} forward + {} backward per layer; {} per step ({} layers{})\n",
                     human_bytes(plan.comm_forward_bytes_per_layer),
                     human_bytes(plan.comm_backward_bytes_per_layer), human_bytes(plan.comm_bytes_per_step),
                     in.config.text.num_hidden_layers, in.recompute ? ", forward twice with recompute" : "");
  out += "why\n";
  for (const std::string& reason : plan.reasons) out += "  - " + reason + "\n";
  return out;
}

}  // namespace lvrl::sp
