// Qwen2.5-VL checkpoints: save → load → save reproduces the files byte for byte (float32 and bf16,
// single file and shards), newer transformers' tensor names load the same weights, and broken
// checkpoints fail naming the tensor. Plus `lvrl model init` / `lvrl model info` end to end.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/checkpoint.h"
#include "core/error.h"
#include "model/model_info.h"
#include "model/tokenizer.h"
#include "model/weights.h"
#include "tests/model/micro_model.h"
#include "tests/model/qwen_reference.h"
#include "tests/support/files.h"
#include "tests/support/run_process.h"

namespace lvrl::model {
namespace {

namespace fs = std::filesystem;
using test::read_file;
using testing_model::micro_config;

QwenVL micro_model(bool tied = false) {
  QwenVL model(micro_config(tied));
  init_weights(*model, 42);
  return model;
}

void expect_same_weights(const QwenVLImpl& a, const QwenVLImpl& b) {
  auto left = state_dict(a), right = state_dict(b);
  ASSERT_EQ(left.size(), right.size());
  for (const auto& [name, tensor] : left) {
    ASSERT_TRUE(right.count(name)) << name;
    EXPECT_TRUE(tensor.scalar_type() == right[name].scalar_type() && at::equal(tensor, right[name])) << name;
  }
}

TEST(ModelCheckpoint, SaveLoadSaveIsBitExact) {
  TempDir dir("lvrl-ckpt");
  QwenVL model = micro_model();
  save_model(*model, dir.file("a"));
  QwenVL loaded = load_model(dir.file("a"), at::kFloat, at::kCPU);
  expect_same_weights(*model, *loaded);
  save_model(*loaded, dir.file("b"));
  EXPECT_EQ(read_file(dir.file("a/model.safetensors")), read_file(dir.file("b/model.safetensors")));
  EXPECT_EQ(read_file(dir.file("a/config.json")), read_file(dir.file("b/config.json")));

  // bf16 storage (real checkpoints) loads into float32 exactly and saves back to the same bytes.
  save_model(*model, dir.file("c"), at::kBFloat16);
  QwenVL from_bf16 = load_model(dir.file("c"), at::kFloat, at::kCPU);
  save_model(*from_bf16, dir.file("d"), at::kBFloat16);
  EXPECT_EQ(read_file(dir.file("c/model.safetensors")), read_file(dir.file("d/model.safetensors")));
  EXPECT_EQ(nlohmann::json::parse(read_file(dir.file("c/config.json")))["torch_dtype"], "bfloat16");

  // Shards + index.
  save_model(*model, dir.file("e"), c10::nullopt, /*max_shard_bytes=*/20000);
  ASSERT_TRUE(fs::exists(dir.file("e/model.safetensors.index.json")));
  expect_same_weights(*model, *load_model(dir.file("e"), at::kFloat, at::kCPU));
}

TEST(ModelCheckpoint, NewerTransformersNamesLoadTheSameWeights) {
  TempDir dir("lvrl-ckpt");
  QwenVL model = micro_model();
  safetensors::TensorMap renamed;
  for (const auto& [name, tensor] : state_dict(*model)) {
    if (name.rfind("visual.", 0) == 0) {
      renamed.emplace("model." + name, tensor);
    } else if (name.rfind("model.", 0) == 0) {
      renamed.emplace("model.language_model." + name.substr(6), tensor);
    } else {
      renamed.emplace(name, tensor);
    }
  }
  checkpoint::save(dir.path(), renamed);
  model->config().save(dir.path());
  expect_same_weights(*model, *load_model(dir.path(), at::kFloat, at::kCPU));
}

// load_weights must throw an InputError whose key names `tensor` and whose text contains `words`.
void expect_named_error(QwenVLImpl& model, const safetensors::TensorMap& tensors, const std::string& tensor,
                        const std::string& words) {
  try {
    load_weights(model, tensors, "broken-ckpt");
    ADD_FAILURE() << "loaded a checkpoint with a broken " << tensor;
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), tensor) << e.what();
    EXPECT_EQ(e.file(), "broken-ckpt");
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
}

TEST(ModelCheckpoint, BrokenCheckpointsNameTheTensor) {
  QwenVL model = micro_model();
  const safetensors::TensorMap good = state_dict(*model);

  auto missing = good;
  missing.erase("model.layers.1.mlp.up_proj.weight");
  expect_named_error(*model, missing, "model.layers.1.mlp.up_proj.weight", "missing");

  auto wrong_shape = good;
  wrong_shape["visual.blocks.0.attn.qkv.weight"] = at::zeros({24, 9});
  expect_named_error(*model, wrong_shape, "visual.blocks.0.attn.qkv.weight", "[24, 9]");

  auto extra = good;
  extra["model.layers.7.self_attn.q_norm.weight"] = at::zeros({4});
  expect_named_error(*model, extra, "model.layers.7.self_attn.q_norm.weight", "not a tensor of this model");

  auto integer = good;
  integer["model.norm.weight"] = at::zeros({16}, at::kInt);
  expect_named_error(*model, integer, "model.norm.weight", "non-floating-point");

  QwenVL tied = micro_model(/*tied=*/true);
  auto untied_head = state_dict(*tied);
  untied_head["lm_head.weight"] = at::zeros({200, 16});
  expect_named_error(*tied, untied_head, "lm_head.weight", "tie_word_embeddings");
  untied_head["lm_head.weight"] = tied->model->embed_tokens->weight.detach().clone();
  EXPECT_NO_THROW(load_weights(*tied, untied_head, "ckpt"));  // an exported copy of the tied head
}

TEST(ModelCommand, InitWritesALoadableTinyModelAndInfoCountsIt) {
  TempDir dir("lvrl-model-init");
  const std::string out = dir.file("tiny");
  auto result = test::run_lvrl(
      {"model", "init", "--preset", "tiny", "--out", out, "--tokenizer", testing_model::qwen_model_dir()});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const char* file : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_TRUE(fs::exists(fs::path(out) / file)) << file;
  }
  const QwenConfig config = QwenConfig::load(out);
  EXPECT_EQ(config.text.hidden_size, QwenConfig::preset("tiny").text.hidden_size);
  QwenVL model = load_model(out, at::kFloat, at::kCPU);
  Tokenizer tokenizer = Tokenizer::load(out);
  EXPECT_EQ(tokenizer.id_of("<|video_pad|>"), config.video_token_id);

  auto again =
      test::run_lvrl({"model", "init", "--out", out, "--tokenizer", testing_model::qwen_model_dir()});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(again.output.find("--force"), std::string::npos) << again.output;

  test::ProcessOptions stdout_only;
  stdout_only.separate_stderr = true;
  auto info = test::run_lvrl({"model", "info", out, "--frames", "16", "--json"}, stdout_only);
  ASSERT_EQ(info.exit_code, 0) << info.output;
  auto json = nlohmann::json::parse(info.output);
  int64_t total = 0;
  for (const auto& param : model->parameters()) total += param.numel();
  EXPECT_EQ(json["parameters"]["total"].get<int64_t>(), total);
  EXPECT_EQ(json["video"]["video_tokens"].get<int64_t>(), 8 * 16 * 16);

  auto bad = test::run_lvrl({"model", "init", "--preset", "huge", "--out", dir.file("x")});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("huge"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace lvrl::model
