// Reading config.json (docs/model.md#config-layouts):
//  - text fields come from "text_config" when it exists (transformers ≥ 4.53), else the top level;
//  - mrope_section from "rope_scaling" or "rope_parameters" (text section first, then top level);
//  - rope_theta from the text section, the top level, or "rope_parameters".
// Fields that define tensor shapes are required (a silent class default would build a 72B-shaped
// tower from a typo). Fields transformers defaults are optional and take the class defaults of
// Qwen2_5_VLTextConfig / Qwen2_5_VLVisionConfig / Qwen2_5_VLConfig:
//   text:   rms_norm_eps 1e-5, rope_theta 1e6, max_position_embeddings 32768, tie_word_embeddings
//           false, hidden_act "silu";
//   vision: in_channels (or hub "in_chans") 3, patch_size (or hub "spatial_patch_size") 14,
//           temporal_patch_size 2, spatial_merge_size 2, window_size 112, fullatt_block_indexes
//           [7,15,23,31], tokens_per_second 4 (the released checkpoints say 2), hidden_act "silu";
//   ids:    image 151655, video 151656, vision_start 151652, vision_end 151653; bos 151643 and
//           eos 151645 (the released checkpoints' values; PretrainedConfig has none);
//   torch_dtype (v5: "dtype"): "bfloat16", the released checkpoints' dtype.
#include "model/qwen_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/mapped_file.h"

namespace lvrl::model {
namespace {
using json = nlohmann::json;

// One JSON object of the config and the key path that leads to it ("" or "text_config.").
struct Section {
  const json* object = nullptr;  // nullptr = absent
  std::string prefix;
  const std::string* file = nullptr;

  const json* find(const char* key) const {
    if (object == nullptr) return nullptr;
    auto it = object->find(key);
    return it == object->end() || it->is_null() ? nullptr : &*it;
  }
  std::string key(const char* name) const { return prefix + name; }

  [[noreturn]] void fail(const char* name, const json* value, const std::string& problem) const {
    throw InputError({*file, 0, key(name), value ? value->dump() : ""}, problem);
  }

  const json& require(const char* name) const {
    const json* value = find(name);
    if (value == nullptr) fail(name, nullptr, "missing required field");
    return *value;
  }

  int64_t integer(const json& value, const char* name) const {
    if (!value.is_number_integer()) fail(name, &value, "expected an integer");
    return value.get<int64_t>();
  }
  double number(const json& value, const char* name) const {
    if (!value.is_number()) fail(name, &value, "expected a number");
    return value.get<double>();
  }
  bool boolean(const json& value, const char* name) const {
    if (!value.is_boolean()) fail(name, &value, "expected true or false");
    return value.get<bool>();
  }
  std::string string(const json& value, const char* name) const {
    if (!value.is_string()) fail(name, &value, "expected a string");
    return value.get<std::string>();
  }
  std::vector<int64_t> integers(const json& value, const char* name) const {
    if (!value.is_array()) fail(name, &value, "expected an array of integers");
    std::vector<int64_t> out;
    for (const json& item : value) {
      if (!item.is_number_integer()) fail(name, &value, "expected an array of integers");
      out.push_back(item.get<int64_t>());
    }
    return out;
  }

  int64_t required_integer(const char* name) const { return integer(require(name), name); }
  void optional_integer(const char* name, int64_t& out) const {
    if (const json* value = find(name)) out = integer(*value, name);
  }
  void optional_number(const char* name, double& out) const {
    if (const json* value = find(name)) out = number(*value, name);
  }
  void optional_bool(const char* name, bool& out) const {
    if (const json* value = find(name)) out = boolean(*value, name);
  }
  void optional_string(const char* name, std::string& out) const {
    if (const json* value = find(name)) out = string(*value, name);
  }
};

Section sub_section(const Section& parent, const char* name) {
  const json* value = parent.find(name);
  if (value != nullptr && !value->is_object()) parent.fail(name, value, "expected an object");
  return Section{value, parent.key(name) + ".", parent.file};
}

// Qwen2-VL and Qwen3-VL: the family's files, another architecture (docs/model.md#qwen2-vl-and-qwen3-vl).
void check_model_type(const Section& section, const char* name, const std::vector<std::string>& accepted,
                      bool required) {
  const json* value = section.find(name);
  if (value == nullptr) {
    if (required) section.fail(name, nullptr, "missing required field (expected \"qwen2_5_vl\")");
    return;
  }
  const std::string type = section.string(*value, name);
  for (const std::string& ok : accepted) {
    if (type == ok) return;
  }
  if (type.rfind("qwen2_vl", 0) == 0 || type.rfind("qwen3_vl", 0) == 0) {
    section.fail(name, value,
                 fmt::format("{} is not supported: only Qwen2.5-VL (\"qwen2_5_vl\") is implemented", type));
  }
  section.fail(name, value, fmt::format("expected {}", fmt::join(accepted, " or ")));
}

// The M-RoPE section and the RoPE kind. rope_scaling / rope_parameters name the kind "mrope" (hub),
// "default" (re-saved) or leave it out; any real scaling (yarn, linear, dynamic) is not implemented.
void read_rope(const Section& text, const Section& top, TextConfig& config) {
  bool found_section = false;
  for (const Section* section : {&text, &top}) {
    if (section->object == nullptr) continue;
    for (const char* name : {"rope_scaling", "rope_parameters"}) {
      Section rope = sub_section(*section, name);
      if (rope.object == nullptr) continue;
      for (const char* kind_key : {"type", "rope_type"}) {
        if (const json* kind = rope.find(kind_key)) {
          const std::string value = rope.string(*kind, kind_key);
          if (value != "mrope" && value != "default") {
            rope.fail(kind_key, kind,
                      "only unscaled M-RoPE is supported (expected \"mrope\" or \"default\")");
          }
        }
      }
      if (!found_section) {
        if (const json* mrope = rope.find("mrope_section")) {
          config.mrope_section = rope.integers(*mrope, "mrope_section");
          found_section = true;
        }
      }
      if (std::string(name) == "rope_parameters") rope.optional_number("rope_theta", config.rope_theta);
    }
  }
  if (!found_section) {
    throw InputError(
        {*top.file, 0, "rope_scaling.mrope_section", ""},
        "missing required field (M-RoPE needs mrope_section in rope_scaling or rope_parameters)");
  }
  // An explicit rope_theta next to the text fields wins over rope_parameters' copy.
  top.optional_number("rope_theta", config.rope_theta);
  if (text.object != top.object) text.optional_number("rope_theta", config.rope_theta);
}

TextConfig read_text(const Section& text, const Section& top) {
  TextConfig config;
  config.vocab_size = text.required_integer("vocab_size");
  config.hidden_size = text.required_integer("hidden_size");
  config.intermediate_size = text.required_integer("intermediate_size");
  config.num_hidden_layers = text.required_integer("num_hidden_layers");
  config.num_attention_heads = text.required_integer("num_attention_heads");
  config.num_key_value_heads = text.required_integer("num_key_value_heads");
  config.rms_norm_eps = 1e-5;
  text.optional_number("rms_norm_eps", config.rms_norm_eps);
  config.max_position_embeddings = 32768;
  text.optional_integer("max_position_embeddings", config.max_position_embeddings);
  text.optional_string("hidden_act", config.hidden_act);
  // The decoder reads it from the text config; older saves keep it at the top level only.
  config.tie_word_embeddings = false;
  if (text.find("tie_word_embeddings") != nullptr) {
    text.optional_bool("tie_word_embeddings", config.tie_word_embeddings);
  } else {
    top.optional_bool("tie_word_embeddings", config.tie_word_embeddings);
  }
  config.rope_theta = 1e6;
  read_rope(text, top, config);
  return config;
}

VisionConfig read_vision(const Section& vision) {
  VisionConfig config;
  check_model_type(vision, "model_type", {"qwen2_5_vl_vision", "qwen2_5_vl"}, /*required=*/false);
  config.depth = vision.required_integer("depth");
  config.hidden_size = vision.required_integer("hidden_size");
  config.intermediate_size = vision.required_integer("intermediate_size");
  config.num_heads = vision.required_integer("num_heads");
  config.out_hidden_size = vision.required_integer("out_hidden_size");
  // The hub files carry in_chans / spatial_patch_size beside (or instead of) the class's names.
  vision.optional_integer("in_chans", config.in_channels);
  vision.optional_integer("in_channels", config.in_channels);
  vision.optional_integer("spatial_patch_size", config.patch_size);
  vision.optional_integer("patch_size", config.patch_size);
  vision.optional_integer("temporal_patch_size", config.temporal_patch_size);
  vision.optional_integer("spatial_merge_size", config.spatial_merge_size);
  vision.optional_integer("window_size", config.window_size);
  if (const json* value = vision.find("fullatt_block_indexes")) {
    config.fullatt_block_indexes = vision.integers(*value, "fullatt_block_indexes");
  }
  config.tokens_per_second = 4;
  vision.optional_number("tokens_per_second", config.tokens_per_second);
  vision.optional_string("hidden_act", config.hidden_act);
  return config;
}

[[noreturn]] void invalid(const std::string& source, const std::string& key, const std::string& value,
                          const std::string& problem) {
  throw InputError({source, 0, key, value}, problem);
}

void check_positive(const std::string& source, const std::string& key, int64_t value) {
  if (value <= 0) invalid(source, key, std::to_string(value), "expected a positive integer");
}

// Writes an integral double as an integer (tokens_per_second: 2, as the hub files have it).
json number_json(double value) {
  if (std::abs(value) < 1e15 && value == std::trunc(value)) return static_cast<int64_t>(value);
  return value;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError({path, 0, "", ""}, "cannot open the file");
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) throw InputError({path, 0, "", ""}, "cannot read the file");
  return out.str();
}
}  // namespace

QwenConfig QwenConfig::load(const std::string& path) {
  std::filesystem::path file(path);
  if (std::filesystem::is_directory(file)) file /= "config.json";
  const std::string name = file.string();
  const std::string text = read_text_file(name);
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    throw InputError({name, 0, "", ""}, fmt::format("not valid JSON: {}", e.what()));
  }
  return from_json(root, name);
}

QwenConfig QwenConfig::from_json(const json& root, const std::string& source) {
  if (!root.is_object()) throw InputError({source, 0, "", ""}, "expected a JSON object (a config.json)");
  const Section top{&root, "", &source};
  check_model_type(top, "model_type", {"qwen2_5_vl"}, /*required=*/true);

  Section text = sub_section(top, "text_config");
  if (text.object != nullptr) {
    check_model_type(text, "model_type", {"qwen2_5_vl_text", "qwen2_5_vl"}, /*required=*/false);
  } else {
    text = Section{&root, "", &source};
  }
  Section vision = sub_section(top, "vision_config");
  if (vision.object == nullptr) top.fail("vision_config", nullptr, "missing required field");

  QwenConfig config;
  config.text = read_text(text, top);
  config.vision = read_vision(vision);
  top.optional_integer("image_token_id", config.image_token_id);
  top.optional_integer("video_token_id", config.video_token_id);
  top.optional_integer("vision_start_token_id", config.vision_start_token_id);
  top.optional_integer("vision_end_token_id", config.vision_end_token_id);
  top.optional_integer("bos_token_id", config.bos_token_id);
  top.optional_integer("eos_token_id", config.eos_token_id);
  top.optional_string("dtype", config.torch_dtype);        // transformers v5
  top.optional_string("torch_dtype", config.torch_dtype);  // earlier releases
  config.validate(source);
  return config;
}

json QwenConfig::to_json() const {
  json vision_json = {
      {"model_type", "qwen2_5_vl"},
      {"depth", vision.depth},
      {"hidden_act", vision.hidden_act},
      {"hidden_size", vision.hidden_size},
      {"intermediate_size", vision.intermediate_size},
      {"num_heads", vision.num_heads},
      {"in_chans", vision.in_channels},
      {"in_channels", vision.in_channels},
      {"out_hidden_size", vision.out_hidden_size},
      {"patch_size", vision.patch_size},
      {"spatial_patch_size", vision.patch_size},
      {"spatial_merge_size", vision.spatial_merge_size},
      {"temporal_patch_size", vision.temporal_patch_size},
      {"window_size", vision.window_size},
      {"fullatt_block_indexes", vision.fullatt_block_indexes},
      {"tokens_per_second", number_json(vision.tokens_per_second)},
  };
  return json{
      {"architectures", {"Qwen2_5_VLForConditionalGeneration"}},
      {"model_type", "qwen2_5_vl"},
      {"attention_dropout", 0.0},
      {"bos_token_id", bos_token_id},
      {"eos_token_id", eos_token_id},
      {"vision_start_token_id", vision_start_token_id},
      {"vision_end_token_id", vision_end_token_id},
      {"image_token_id", image_token_id},
      {"video_token_id", video_token_id},
      {"hidden_act", text.hidden_act},
      {"hidden_size", text.hidden_size},
      {"initializer_range", 0.02},
      {"intermediate_size", text.intermediate_size},
      {"max_position_embeddings", text.max_position_embeddings},
      {"num_attention_heads", text.num_attention_heads},
      {"num_hidden_layers", text.num_hidden_layers},
      {"num_key_value_heads", text.num_key_value_heads},
      {"rms_norm_eps", text.rms_norm_eps},
      {"rope_theta", text.rope_theta},
      {"rope_scaling", {{"type", "mrope"}, {"mrope_section", text.mrope_section}}},
      {"use_sliding_window", false},
      {"use_cache", true},
      {"tie_word_embeddings", text.tie_word_embeddings},
      {"torch_dtype", torch_dtype},
      {"vision_config", vision_json},
      {"vocab_size", text.vocab_size},
  };
}

void QwenConfig::save(const std::string& dir) const {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error)
    throw InputError({dir, 0, "", ""}, fmt::format("cannot create the directory: {}", error.message()));
  const std::string text = to_json().dump(2) + "\n";
  AtomicFileWriter out((std::filesystem::path(dir) / "config.json").string());
  out.write(text.data(), text.size());
  out.commit();
}

void QwenConfig::validate(const std::string& source) const {
  const TextConfig& t = text;
  const VisionConfig& v = vision;
  auto str = [](int64_t value) { return std::to_string(value); };

  // Every count and size, before anything divides by one.
  const std::pair<const char*, int64_t> sizes[] = {
      {"vocab_size", t.vocab_size},
      {"hidden_size", t.hidden_size},
      {"intermediate_size", t.intermediate_size},
      {"num_hidden_layers", t.num_hidden_layers},
      {"num_attention_heads", t.num_attention_heads},
      {"num_key_value_heads", t.num_key_value_heads},
      {"max_position_embeddings", t.max_position_embeddings},
      {"vision_config.depth", v.depth},
      {"vision_config.hidden_size", v.hidden_size},
      {"vision_config.intermediate_size", v.intermediate_size},
      {"vision_config.num_heads", v.num_heads},
      {"vision_config.in_channels", v.in_channels},
      {"vision_config.patch_size", v.patch_size},
      {"vision_config.temporal_patch_size", v.temporal_patch_size},
      {"vision_config.spatial_merge_size", v.spatial_merge_size},
      {"vision_config.window_size", v.window_size},
      {"vision_config.out_hidden_size", v.out_hidden_size},
  };
  for (const auto& [key, value] : sizes) check_positive(source, key, value);
  if (t.hidden_size % t.num_attention_heads != 0) {
    invalid(source, "num_attention_heads", str(t.num_attention_heads),
            fmt::format("must divide hidden_size {}", t.hidden_size));
  }
  if (t.num_attention_heads % t.num_key_value_heads != 0) {
    invalid(source, "num_key_value_heads", str(t.num_key_value_heads),
            fmt::format("must divide num_attention_heads {} (GQA groups)", t.num_attention_heads));
  }
  if (t.head_dim() % 2 != 0) {
    invalid(source, "num_attention_heads", str(t.num_attention_heads),
            fmt::format("gives an odd head_dim {}; RoPE needs an even one", t.head_dim()));
  }
  if (!(t.rms_norm_eps > 0))
    invalid(source, "rms_norm_eps", fmt::format("{}", t.rms_norm_eps), "expected > 0");
  if (!(t.rope_theta > 0)) invalid(source, "rope_theta", fmt::format("{}", t.rope_theta), "expected > 0");
  {
    const std::string value = fmt::format("[{}]", fmt::join(t.mrope_section, ","));
    if (t.mrope_section.size() != 3) {
      invalid(source, "rope_scaling.mrope_section", value, "expected 3 entries (temporal, height, width)");
    }
    int64_t sum = 0;
    for (int64_t part : t.mrope_section) {
      if (part < 0) invalid(source, "rope_scaling.mrope_section", value, "entries must be >= 0");
      sum += part;
    }
    if (sum != t.head_dim() / 2) {
      invalid(source, "rope_scaling.mrope_section", value,
              fmt::format("must sum to head_dim/2 = {} (sums to {})", t.head_dim() / 2, sum));
    }
  }
  if (t.hidden_act != "silu") invalid(source, "hidden_act", t.hidden_act, "only \"silu\" is implemented");

  if (v.hidden_size % v.num_heads != 0) {
    invalid(source, "vision_config.num_heads", str(v.num_heads),
            fmt::format("must divide vision_config.hidden_size {}", v.hidden_size));
  }
  if (v.head_dim() % 4 != 0) {
    invalid(source, "vision_config.num_heads", str(v.num_heads),
            fmt::format("gives head_dim {}; the 2-D rotary needs a multiple of 4", v.head_dim()));
  }
  if (v.window_size % (v.patch_size * v.spatial_merge_size) != 0) {
    invalid(source, "vision_config.window_size", str(v.window_size),
            fmt::format("must be a multiple of patch_size·spatial_merge_size = {}",
                        v.patch_size * v.spatial_merge_size));
  }
  for (int64_t index : v.fullatt_block_indexes) {
    if (index < 0 || index >= v.depth) {
      invalid(source, "vision_config.fullatt_block_indexes", str(index),
              fmt::format("outside the blocks 0..{}", v.depth - 1));
    }
  }
  if (!(v.tokens_per_second > 0)) {
    invalid(source, "vision_config.tokens_per_second", fmt::format("{}", v.tokens_per_second),
            "expected > 0");
  }
  if (v.hidden_act != "silu")
    invalid(source, "vision_config.hidden_act", v.hidden_act, "only \"silu\" is implemented");
  if (v.out_hidden_size != t.hidden_size) {
    invalid(source, "vision_config.out_hidden_size", str(v.out_hidden_size),
            fmt::format("must equal the text hidden_size {}", t.hidden_size));
  }

  const std::pair<const char*, int64_t> ids[] = {
      {"image_token_id", image_token_id},
      {"video_token_id", video_token_id},
      {"vision_start_token_id", vision_start_token_id},
      {"vision_end_token_id", vision_end_token_id},
      {"bos_token_id", bos_token_id},
      {"eos_token_id", eos_token_id},
  };
  for (const auto& [key, id] : ids) {
    if (id < 0 || id >= t.vocab_size) {
      invalid(source, key, str(id), fmt::format("outside the vocabulary 0..{}", t.vocab_size - 1));
    }
  }
  if (torch_dtype != "bfloat16" && torch_dtype != "float16" && torch_dtype != "float32" &&
      torch_dtype != "float64") {
    invalid(source, "torch_dtype", torch_dtype, "expected bfloat16, float16, float32 or float64");
  }
}

QwenConfig QwenConfig::preset(const std::string& name) {
  QwenConfig config;  // the struct defaults are the released checkpoints' vision tower and ids
  TextConfig& t = config.text;
  VisionConfig& v = config.vision;
  if (name == "3b" || name == "7b") {
    const bool small = name == "3b";
    t.vocab_size = small ? 151936 : 152064;
    t.hidden_size = small ? 2048 : 3584;
    t.intermediate_size = small ? 11008 : 18944;
    t.num_hidden_layers = small ? 36 : 28;
    t.num_attention_heads = small ? 16 : 28;
    t.num_key_value_heads = small ? 2 : 4;
    t.tie_word_embeddings = small;
    t.mrope_section = {16, 24, 24};
    t.max_position_embeddings = 128000;
    v = VisionConfig{};
    v.out_hidden_size = t.hidden_size;
    config.torch_dtype = "bfloat16";
  } else if (name == "tiny" || name == "small") {
    const bool tiny = name == "tiny";
    v.depth = tiny ? 2 : 8;
    v.hidden_size = tiny ? 32 : 256;
    v.intermediate_size = tiny ? 64 : 512;
    v.num_heads = tiny ? 2 : 4;
    v.window_size = 112;
    v.fullatt_block_indexes = tiny ? std::vector<int64_t>{1} : std::vector<int64_t>{3, 7};
    v.out_hidden_size = tiny ? 64 : 256;
    v.tokens_per_second = 2;
    t.vocab_size = 151936;
    t.hidden_size = tiny ? 64 : 256;
    t.intermediate_size = tiny ? 128 : 704;
    t.num_hidden_layers = tiny ? 2 : 4;
    t.num_attention_heads = 4;
    t.num_key_value_heads = 2;
    t.mrope_section = tiny ? std::vector<int64_t>{2, 3, 3} : std::vector<int64_t>{8, 12, 12};
    t.tie_word_embeddings = true;
    config.torch_dtype = "float32";
  } else {
    throw InputError({"", 0, "preset", name}, "unknown model preset (expected tiny, small, 3b or 7b)");
  }
  config.validate("preset " + name);
  return config;
}

}  // namespace lvrl::model
