#include "model/model_info.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/human_bytes.h"

namespace lvrl::model {

PartCounts parameter_counts(const QwenConfig& config) {
  const VisionConfig& v = config.vision;
  const TextConfig& t = config.text;
  PartCounts counts;
  const int64_t c = v.hidden_size, vi = v.intermediate_size;
  counts.vision_patch_embed = c * v.patch_dim();
  const int64_t vision_block = 2 * c                // norm1, norm2
                               + 3 * c * c + 3 * c  // qkv
                               + c * c + c          // proj
                               + 2 * (vi * c + vi)  // gate, up
                               + c * vi + c;        // down
  counts.vision_blocks = v.depth * vision_block;
  const int64_t merged = c * v.merge_units();
  counts.vision_merger = c + merged * merged + merged + v.out_hidden_size * merged + v.out_hidden_size;
  const int64_t d = t.hidden_size, hd = t.head_dim(), q = t.num_attention_heads * hd,
                kv = t.num_key_value_heads * hd;
  counts.text_embed = t.vocab_size * d;
  const int64_t text_layer = 2 * d                            // input / post-attention norms
                             + d * q + q + 2 * (d * kv + kv)  // q, k, v with biases
                             + q * d                          // o_proj
                             + 3 * d * t.intermediate_size;   // gate, up, down
  counts.text_layers = t.num_hidden_layers * text_layer;
  counts.text_norm = d;
  counts.lm_head = t.tie_word_embeddings ? 0 : t.vocab_size * d;
  return counts;
}

MemoryEstimate estimate_memory(const QwenConfig& config, int64_t frames, int64_t height, int64_t width,
                               int64_t text_tokens, int64_t element_bytes) {
  const VisionConfig& v = config.vision;
  const TextConfig& t = config.text;
  const int64_t factor = v.patch_size * v.spatial_merge_size;
  if (frames <= 0)
    throw InputError({"", 0, "--frames", std::to_string(frames)}, "expected a positive frame count");
  if (height <= 0 || width <= 0 || height % factor != 0 || width % factor != 0) {
    throw InputError({"", 0, "--frame-size", fmt::format("{}x{}", height, width)},
                     fmt::format("expected positive multiples of {} (patch {} × merge {})", factor,
                                 v.patch_size, v.spatial_merge_size));
  }
  MemoryEstimate e;
  e.frames = frames;
  e.height = height;
  e.width = width;
  const int64_t slices = (frames + v.temporal_patch_size - 1) / v.temporal_patch_size;
  e.patches = slices * (height / v.patch_size) * (width / v.patch_size);
  e.video_tokens = e.patches / v.merge_units();
  e.sequence_tokens = e.video_tokens + text_tokens;
  const PartCounts counts = parameter_counts(config);
  e.weight_bytes = counts.total() * element_bytes;
  e.video_embedding_bytes = e.video_tokens * v.out_hidden_size * element_bytes;
  // One block live: residual, normed input, qkv, attention out, gate/up/act of the MLP.
  e.vision_activation_bytes = e.patches * (6 * v.hidden_size + 3 * v.intermediate_size) * element_bytes;
  const int64_t s = e.sequence_tokens, d = t.hidden_size, kv = t.num_key_value_heads * t.head_dim();
  e.kv_cache_bytes = 2 * t.num_hidden_layers * s * kv * element_bytes;
  // Saved per decoder layer: two norm inputs and outputs, q, k, v, attention out, gate/up/act.
  e.training_activation_bytes =
      t.num_hidden_layers * s * (6 * d + 2 * kv + 3 * t.intermediate_size) * element_bytes;
  e.training_state_bytes = counts.text() * (2 * element_bytes + 8);
  return e;
}

nlohmann::json info_json(const QwenConfig& config, const PartCounts& counts, const MemoryEstimate& e) {
  nlohmann::json parts = {{"vision.patch_embed", counts.vision_patch_embed},
                          {"vision.blocks", counts.vision_blocks},
                          {"vision.merger", counts.vision_merger},
                          {"text.embed_tokens", counts.text_embed},
                          {"text.layers", counts.text_layers},
                          {"text.norm", counts.text_norm},
                          {"lm_head", counts.lm_head}};
  return {{"parameters",
           {{"parts", parts},
            {"vision", counts.vision()},
            {"text", counts.text()},
            {"total", counts.total()},
            {"tied_lm_head", config.text.tie_word_embeddings}}},
          {"video",
           {{"frames", e.frames},
            {"frame_size", fmt::format("{}x{}", e.height, e.width)},
            {"patches", e.patches},
            {"video_tokens", e.video_tokens},
            {"sequence_tokens", e.sequence_tokens}}},
          {"memory_bytes",
           {{"weights", e.weight_bytes},
            {"video_embeddings", e.video_embedding_bytes},
            {"vision_activations_peak", e.vision_activation_bytes},
            {"kv_cache", e.kv_cache_bytes},
            {"training_activations", e.training_activation_bytes},
            {"training_state", e.training_state_bytes}}},
          {"notes",
           "estimates: activations count the tensors one block/layer keeps (no allocator overhead, "
           "attention blockwise so no L×L term); training = full LM fine-tune, vision frozen, "
           "AdamW moments in fp32"}};
}

std::string format_info(const nlohmann::json& info) {
  std::string out = "parameters\n";
  for (const auto& [part, count] : info["parameters"]["parts"].items()) {
    out +=
        fmt::format("  {:<20} {:>15}  ({:.2f} M)\n", part, count.get<int64_t>(), count.get<int64_t>() / 1e6);
  }
  out += fmt::format("  {:<20} {:>15}  ({:.2f} M){}\n", "total", info["parameters"]["total"].get<int64_t>(),
                     info["parameters"]["total"].get<int64_t>() / 1e6,
                     info["parameters"]["tied_lm_head"].get<bool>() ? "  lm_head tied to embed_tokens" : "");
  const auto& video = info["video"];
  out += fmt::format("video: {} frames of {} → {} patches → {} video tokens; sequence {} tokens\n",
                     video["frames"].get<int64_t>(), video["frame_size"].get<std::string>(),
                     video["patches"].get<int64_t>(), video["video_tokens"].get<int64_t>(),
                     video["sequence_tokens"].get<int64_t>());
  out += "memory (≈)\n";
  for (const auto& [name, bytes] : info["memory_bytes"].items()) {
    out += fmt::format("  {:<24} {}\n", name, human_bytes(bytes.get<double>()));
  }
  out += fmt::format("  ({})\n", info["notes"].get<std::string>());
  return out;
}

}  // namespace lvrl::model
