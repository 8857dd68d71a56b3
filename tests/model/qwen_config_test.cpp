// QwenConfig: the three config.json layouts transformers wrote (docs/model.md#config-layouts) read to the
// same config, the flat hub layout written back with the real field names, and bad input explained
// by an InputError naming the key.
#include "model/qwen_config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tests/support/expect_error.h"
#include "tests/support/files.h"

namespace lvrl::model {
namespace {
using json = nlohmann::json;

// The tiny preset as the original hub files spell it: text fields at the top level, rope_scaling
// {type: mrope}, the vision tower's in_chans / spatial_patch_size.
const char* kFlatHub = R"({
  "architectures": ["Qwen2_5_VLForConditionalGeneration"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643, "eos_token_id": 151645,
  "vision_start_token_id": 151652, "vision_end_token_id": 151653, "vision_token_id": 151654,
  "image_token_id": 151655, "video_token_id": 151656,
  "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128,
  "max_position_embeddings": 128000, "max_window_layers": 70, "model_type": "qwen2_5_vl",
  "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "float32",
  "transformers_version": "4.41.2", "use_cache": true, "use_sliding_window": false,
  "vision_config": {
    "depth": 2, "hidden_act": "silu", "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
    "in_chans": 3, "out_hidden_size": 64, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
    "window_size": 112, "fullatt_block_indexes": [1], "tokens_per_second": 2, "temporal_patch_size": 2
  },
  "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
  "vocab_size": 151936
})";

// Re-saved by transformers ≥ 4.53: a nested text_config, rope_scaling {rope_type: default}.
const char* kNestedTextConfig = R"({
  "architectures": ["Qwen2_5_VLForConditionalGeneration"],
  "model_type": "qwen2_5_vl",
  "image_token_id": 151655, "video_token_id": 151656,
  "vision_start_token_id": 151652, "vision_end_token_id": 151653,
  "bos_token_id": 151643, "eos_token_id": 151645,
  "torch_dtype": "float32", "transformers_version": "4.53.0",
  "text_config": {
    "model_type": "qwen2_5_vl_text", "vocab_size": 151936, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
    "max_position_embeddings": 128000, "hidden_act": "silu", "rope_theta": 1000000.0,
    "tie_word_embeddings": true, "use_sliding_window": false, "sliding_window": null,
    "rope_scaling": {"mrope_section": [2, 3, 3], "rope_type": "default", "type": "default"}
  },
  "vision_config": {
    "model_type": "qwen2_5_vl", "depth": 2, "hidden_act": "silu", "hidden_size": 32, "intermediate_size": 64,
    "num_heads": 2, "in_channels": 3, "out_hidden_size": 64, "patch_size": 14, "spatial_merge_size": 2,
    "window_size": 112, "fullatt_block_indexes": [1], "tokens_per_second": 2, "temporal_patch_size": 2,
    "initializer_range": 0.02
  }
})";

// transformers v5: rope_parameters carries the theta and the section; "dtype" replaces torch_dtype.
const char* kV5RopeParameters = R"({
  "architectures": ["Qwen2_5_VLForConditionalGeneration"],
  "model_type": "qwen2_5_vl",
  "image_token_id": 151655, "video_token_id": 151656,
  "vision_start_token_id": 151652, "vision_end_token_id": 151653,
  "bos_token_id": 151643, "eos_token_id": 151645,
  "dtype": "float32", "tie_word_embeddings": true,
  "text_config": {
    "model_type": "qwen2_5_vl_text", "vocab_size": 151936, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
    "max_position_embeddings": 128000, "hidden_act": "silu",
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]}
  },
  "vision_config": {
    "model_type": "qwen2_5_vl", "depth": 2, "hidden_act": "silu", "hidden_size": 32, "intermediate_size": 64,
    "num_heads": 2, "in_channels": 3, "out_hidden_size": 64, "patch_size": 14, "spatial_merge_size": 2,
    "window_size": 112, "fullatt_block_indexes": [1], "tokens_per_second": 2, "temporal_patch_size": 2
  }
})";

using test::expect_input_error;

QwenConfig parse(const json& root) {
  return QwenConfig::from_json(root, "config.json");
}

TEST(QwenConfig, ThreeLayoutsReadToTheSameConfig) {
  const QwenConfig flat = parse(json::parse(kFlatHub));
  const QwenConfig nested = parse(json::parse(kNestedTextConfig));
  const QwenConfig v5 = parse(json::parse(kV5RopeParameters));
  const json expected = QwenConfig::preset("tiny").to_json();
  EXPECT_EQ(flat.to_json(), expected) << flat.to_json().dump(2);
  EXPECT_EQ(nested.to_json(), expected) << nested.to_json().dump(2);
  EXPECT_EQ(v5.to_json(), expected) << v5.to_json().dump(2);

  EXPECT_EQ(flat.text.hidden_size, 64);
  EXPECT_EQ(flat.text.mrope_section, (std::vector<int64_t>{2, 3, 3}));
  EXPECT_EQ(flat.text.rope_theta, 1e6);
  EXPECT_TRUE(flat.text.tie_word_embeddings);
  EXPECT_EQ(flat.vision.in_channels, 3);
  EXPECT_EQ(flat.vision.fullatt_block_indexes, (std::vector<int64_t>{1}));
  EXPECT_EQ(flat.vision.tokens_per_second, 2);
  EXPECT_EQ(nested.torch_dtype, "float32");
  EXPECT_EQ(v5.torch_dtype, "float32");
}

TEST(QwenConfig, OptionalFieldsTakeTheTransformersClassDefaults) {
  json root = json::parse(kFlatHub);
  for (const char* key : {"rms_norm_eps", "rope_theta", "max_position_embeddings", "tie_word_embeddings",
                          "hidden_act", "torch_dtype", "image_token_id", "video_token_id"}) {
    root.erase(key);
  }
  json& vision = root["vision_config"];
  vision["depth"] = 32;  // the default full-attention blocks 7, 15, 23, 31 must exist
  for (const char* key :
       {"in_chans", "patch_size", "spatial_patch_size", "window_size", "fullatt_block_indexes",
        "tokens_per_second", "temporal_patch_size", "spatial_merge_size", "hidden_act"}) {
    vision.erase(key);
  }
  const QwenConfig config = parse(root);
  EXPECT_EQ(config.text.rms_norm_eps, 1e-5);
  EXPECT_EQ(config.text.rope_theta, 1e6);
  EXPECT_EQ(config.text.max_position_embeddings, 32768);
  EXPECT_FALSE(config.text.tie_word_embeddings);
  EXPECT_EQ(config.vision.tokens_per_second, 4);
  EXPECT_EQ(config.vision.window_size, 112);
  EXPECT_EQ(config.vision.patch_size, 14);
  EXPECT_EQ(config.vision.fullatt_block_indexes, (std::vector<int64_t>{7, 15, 23, 31}));
  EXPECT_EQ(config.image_token_id, 151655);
  EXPECT_EQ(config.torch_dtype, "bfloat16");
}

TEST(QwenConfig, ToJsonUsesTheHubFieldNames) {
  const json out = QwenConfig::preset("3b").to_json();
  EXPECT_EQ(out["architectures"], json::array({"Qwen2_5_VLForConditionalGeneration"}));
  EXPECT_EQ(out["model_type"], "qwen2_5_vl");
  EXPECT_EQ(out["rope_scaling"], json::parse(R"({"type": "mrope", "mrope_section": [16, 24, 24]})"));
  EXPECT_EQ(out["rope_theta"], 1e6);
  EXPECT_EQ(out["hidden_size"], 2048);
  EXPECT_EQ(out["num_key_value_heads"], 2);
  EXPECT_EQ(out["vocab_size"], 151936);
  EXPECT_EQ(out["tie_word_embeddings"], true);
  EXPECT_EQ(out["torch_dtype"], "bfloat16");
  EXPECT_EQ(out["image_token_id"], 151655);
  EXPECT_EQ(out["vision_start_token_id"], 151652);
  const json& vision = out["vision_config"];
  EXPECT_EQ(vision["model_type"], "qwen2_5_vl");
  EXPECT_EQ(vision["depth"], 32);
  EXPECT_EQ(vision["hidden_size"], 1280);
  EXPECT_EQ(vision["intermediate_size"], 3420);
  EXPECT_EQ(vision["num_heads"], 16);
  EXPECT_EQ(vision["in_chans"], 3);
  EXPECT_EQ(vision["spatial_patch_size"], 14);
  EXPECT_EQ(vision["window_size"], 112);
  EXPECT_EQ(vision["fullatt_block_indexes"], json::array({7, 15, 23, 31}));
  EXPECT_EQ(vision["out_hidden_size"], 2048);
  EXPECT_TRUE(vision["tokens_per_second"].is_number_integer());
  EXPECT_EQ(vision["tokens_per_second"], 2);
}

TEST(QwenConfig, PresetsValidateAndRoundTrip) {
  for (const char* name : {"tiny", "small", "3b", "7b"}) {
    SCOPED_TRACE(name);
    const QwenConfig config = QwenConfig::preset(name);
    EXPECT_NO_THROW(config.validate(name));
    const json out = config.to_json();
    EXPECT_EQ(parse(out).to_json(), out);
  }
  const QwenConfig tiny = QwenConfig::preset("tiny");
  EXPECT_EQ(tiny.vision.head_dim(), 16);
  EXPECT_EQ(tiny.text.head_dim(), 16);
  const QwenConfig small = QwenConfig::preset("small");
  EXPECT_EQ(small.vision.fullatt_block_indexes, (std::vector<int64_t>{3, 7}));
  EXPECT_EQ(small.text.mrope_section, (std::vector<int64_t>{8, 12, 12}));
  const QwenConfig seven = QwenConfig::preset("7b");
  EXPECT_EQ(seven.text.vocab_size, 152064);
  EXPECT_FALSE(seven.text.tie_word_embeddings);
  EXPECT_EQ(seven.vision.out_hidden_size, 3584);
  expect_input_error([] { QwenConfig::preset("13b"); }, "preset");
}

TEST(QwenConfig, SaveThenLoadFromDirectoryOrFile) {
  TempDir dir("lvrl-qwen-config");
  const QwenConfig small = QwenConfig::preset("small");
  small.save(dir.path() + "/model");
  EXPECT_EQ(QwenConfig::load(dir.path() + "/model").to_json(), small.to_json());
  EXPECT_EQ(QwenConfig::load(dir.path() + "/model/config.json").to_json(), small.to_json());
  for (const auto& entry : std::filesystem::directory_iterator(dir.path() + "/model")) {
    EXPECT_EQ(entry.path().filename(), "config.json") << "a temporary file was left behind";
  }

  test::write_file(dir.file("config.json"), "{\"model_type\": ");
  const std::string message = expect_input_error([&] { QwenConfig::load(dir.path()); }, "").what();
  EXPECT_NE(message.find(dir.file("config.json")), std::string::npos) << message;
  EXPECT_THROW(QwenConfig::load(dir.file("missing")), InputError);
}

TEST(QwenConfig, UnsupportedModelTypesAreNamed) {
  for (const char* type : {"qwen2_vl", "qwen3_vl"}) {
    json root = json::parse(kFlatHub);
    root["model_type"] = type;
    const std::string message = expect_input_error([&] { parse(root); }, "model_type").what();
    EXPECT_NE(message.find(std::string(type) + " is not supported"), std::string::npos) << message;
  }
  json llama = json::parse(kFlatHub);
  llama["model_type"] = "llama";
  expect_input_error([&] { parse(llama); }, "model_type");
  json absent = json::parse(kFlatHub);
  absent.erase("model_type");
  expect_input_error([&] { parse(absent); }, "model_type");
  json vision = json::parse(kNestedTextConfig);
  vision["vision_config"]["model_type"] = "qwen2_vl";
  expect_input_error([&] { parse(vision); }, "vision_config.model_type");
}

TEST(QwenConfig, MissingFieldsAndWrongTypesNameTheKey) {
  {
    json root = json::parse(kFlatHub);
    root.erase("hidden_size");
    expect_input_error([&] { parse(root); }, "hidden_size");
  }
  {
    json root = json::parse(kNestedTextConfig);
    root["text_config"].erase("num_key_value_heads");
    expect_input_error([&] { parse(root); }, "text_config.num_key_value_heads");
  }
  {
    json root = json::parse(kFlatHub);
    root["vision_config"].erase("depth");
    expect_input_error([&] { parse(root); }, "vision_config.depth");
  }
  {
    json root = json::parse(kFlatHub);
    root.erase("rope_scaling");
    expect_input_error([&] { parse(root); }, "rope_scaling.mrope_section");
  }
  {
    json root = json::parse(kFlatHub);
    root.erase("vision_config");
    expect_input_error([&] { parse(root); }, "vision_config");
  }
  {
    json root = json::parse(kFlatHub);
    root["num_hidden_layers"] = "2";
    const std::string message = expect_input_error([&] { parse(root); }, "num_hidden_layers").what();
    EXPECT_NE(message.find("expected an integer"), std::string::npos) << message;
  }
  {
    json root = json::parse(kFlatHub);
    root["hidden_size"] = 64.5;
    expect_input_error([&] { parse(root); }, "hidden_size");
  }
  {
    json root = json::parse(kFlatHub);
    root["tie_word_embeddings"] = 1;
    expect_input_error([&] { parse(root); }, "tie_word_embeddings");
  }
  {
    json root = json::parse(kV5RopeParameters);
    root["text_config"]["rope_parameters"]["mrope_section"] = json::array({2, "3", 3});
    expect_input_error([&] { parse(root); }, "text_config.rope_parameters.mrope_section");
  }
  {
    json root = json::parse(kFlatHub);
    root["rope_scaling"]["type"] = "yarn";
    expect_input_error([&] { parse(root); }, "rope_scaling.type");
  }
  expect_input_error([] { parse(json::array()); }, "");
}

TEST(QwenConfig, ValidateRejectsInconsistentSizes) {
  {
    json root = json::parse(kFlatHub);
    root["num_attention_heads"] = 5;  // 64 % 5 != 0
    const std::string message = expect_input_error([&] { parse(root); }, "num_attention_heads").what();
    EXPECT_NE(message.find("hidden_size 64"), std::string::npos) << message;
  }
  {
    json root = json::parse(kFlatHub);
    root["num_key_value_heads"] = 3;
    expect_input_error([&] { parse(root); }, "num_key_value_heads");
  }
  {
    json root = json::parse(kFlatHub);
    root["rope_scaling"]["mrope_section"] = json::array({2, 3, 4});  // sums to 9, head_dim/2 = 8
    const std::string message = expect_input_error([&] { parse(root); }, "rope_scaling.mrope_section").what();
    EXPECT_NE(message.find("head_dim/2 = 8"), std::string::npos) << message;
  }
  {
    json root = json::parse(kFlatHub);
    root["vision_config"]["num_heads"] = 3;
    expect_input_error([&] { parse(root); }, "vision_config.num_heads");
  }
  {
    json root = json::parse(kFlatHub);
    root["vision_config"]["fullatt_block_indexes"] = json::array({2});
    expect_input_error([&] { parse(root); }, "vision_config.fullatt_block_indexes");
  }
  {
    json root = json::parse(kFlatHub);
    root["vision_config"]["window_size"] = 100;
    expect_input_error([&] { parse(root); }, "vision_config.window_size");
  }
  {
    json root = json::parse(kFlatHub);
    root["vision_config"]["out_hidden_size"] = 32;
    expect_input_error([&] { parse(root); }, "vision_config.out_hidden_size");
  }
  {
    json root = json::parse(kFlatHub);
    root["vocab_size"] = 1000;
    expect_input_error([&] { parse(root); }, "image_token_id");
  }
  QwenConfig config = QwenConfig::preset("tiny");
  config.text.num_attention_heads = 3;
  expect_input_error([&] { config.validate("mine"); }, "num_attention_heads");
}

}  // namespace
}  // namespace lvrl::model
