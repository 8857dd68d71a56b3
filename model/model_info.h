// Sizes of a Qwen2.5-VL from its config alone: parameters per part and the memory a video of F
// frames costs (the figures `lvrl model info` prints and sp/plan builds on).
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "model/qwen_config.h"

namespace lvrl::model {

struct PartCounts {
  int64_t vision_patch_embed = 0, vision_blocks = 0, vision_merger = 0;
  int64_t text_embed = 0, text_layers = 0, text_norm = 0, lm_head = 0;  // lm_head 0 when tied
  int64_t vision() const { return vision_patch_embed + vision_blocks + vision_merger; }
  int64_t text() const { return text_embed + text_layers + text_norm + lm_head; }
  int64_t total() const { return vision() + text(); }
};
PartCounts parameter_counts(const QwenConfig& config);

// Estimates in bytes for one video of `frames` frames of height×width pixels (multiples of
// patch·merge) plus `text_tokens`, at `element_bytes` per activation. "≈" figures count the tensors
// that dominate (stated in info_json's notes), not allocator overheads.
struct MemoryEstimate {
  int64_t frames = 0, height = 0, width = 0;
  int64_t patches = 0, video_tokens = 0, sequence_tokens = 0;
  int64_t weight_bytes = 0;               // all parameters at element_bytes
  int64_t video_embedding_bytes = 0;      // what the embedding cache stores for this video
  int64_t vision_activation_bytes = 0;    // peak live activations of one vision block at inference
  int64_t kv_cache_bytes = 0;             // keys + values of the whole sequence, all layers
  int64_t training_activation_bytes = 0;  // activations the language model saves for backward
  int64_t training_state_bytes = 0;       // LM weights + grads at element_bytes, AdamW moments in fp32
};
MemoryEstimate estimate_memory(const QwenConfig& config, int64_t frames, int64_t height, int64_t width,
                               int64_t text_tokens, int64_t element_bytes);

nlohmann::json info_json(const QwenConfig& config, const PartCounts& counts, const MemoryEstimate& estimate);
std::string format_info(const nlohmann::json& info);  // the human-readable table

}  // namespace lvrl::model
