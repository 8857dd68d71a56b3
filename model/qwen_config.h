// Qwen2.5-VL's config.json (docs/model.md#config): the fields the architecture needs, read from any of
// the three layouts transformers has written (flat hub format with rope_scaling, nested text_config,
// v5 rope_parameters), validated, and written back with the real field names in the flat hub layout
// so transformers loads what we save. Presets `tiny` and `small` are the same architecture at sizes
// that run on a CPU; they keep the real vocabulary and special-token ids so the real tokenizer works.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace lvrl::model {

struct VisionConfig {
  int64_t depth = 32;
  int64_t hidden_size = 1280;
  int64_t intermediate_size = 3420;
  int64_t num_heads = 16;
  int64_t in_channels = 3;
  int64_t patch_size = 14;
  int64_t temporal_patch_size = 2;
  int64_t spatial_merge_size = 2;
  int64_t window_size = 112;  // pixels
  std::vector<int64_t> fullatt_block_indexes = {7, 15, 23, 31};
  int64_t out_hidden_size = 3584;  // = text hidden_size
  double tokens_per_second = 2;
  std::string hidden_act = "silu";
  double rms_norm_eps = 1e-6;

  int64_t head_dim() const { return hidden_size / num_heads; }
  int64_t patch_dim() const { return in_channels * temporal_patch_size * patch_size * patch_size; }
  int64_t merge_units() const { return spatial_merge_size * spatial_merge_size; }  // patches per token
};

struct TextConfig {
  int64_t vocab_size = 152064;
  int64_t hidden_size = 3584;
  int64_t intermediate_size = 18944;
  int64_t num_hidden_layers = 28;
  int64_t num_attention_heads = 28;
  int64_t num_key_value_heads = 4;
  double rms_norm_eps = 1e-6;
  double rope_theta = 1e6;
  std::vector<int64_t> mrope_section = {16, 24, 24};  // sums to head_dim / 2
  int64_t max_position_embeddings = 128000;
  bool tie_word_embeddings = false;
  std::string hidden_act = "silu";

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

struct QwenConfig {
  TextConfig text;
  VisionConfig vision;
  int64_t image_token_id = 151655;
  int64_t video_token_id = 151656;
  int64_t vision_start_token_id = 151652;
  int64_t vision_end_token_id = 151653;
  int64_t bos_token_id = 151643;
  int64_t eos_token_id = 151645;
  std::string torch_dtype = "bfloat16";  // the dtype the checkpoint's weights are stored in

  // Reads DIR/config.json (or the file itself when `path` is a file). Errors are InputErrors naming
  // the file and key: a model_type other than qwen2_5_vl (qwen2_vl and qwen3_vl are named as not
  // supported), a missing required field, a wrong type, or a failed validate().
  static QwenConfig load(const std::string& path);
  static QwenConfig from_json(const nlohmann::json& json, const std::string& source);
  nlohmann::json to_json() const;           // flat hub layout, rope_scaling {type: mrope, mrope_section}
  void save(const std::string& dir) const;  // DIR/config.json, crash-safe

  // Divisibility and range rules the code relies on (heads divide widths, GQA groups, mrope_section
  // sums to head_dim/2, even head dims, window a multiple of patch·merge, full-attention block
  // indexes inside depth, vision out = text hidden, special ids inside the vocabulary). InputError
  // naming `source` and the key.
  void validate(const std::string& source) const;

  // "tiny", "small", "3b", "7b"; InputError naming the preset otherwise.
  static QwenConfig preset(const std::string& name);
};

}  // namespace lvrl::model
