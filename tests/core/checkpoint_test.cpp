// Hugging Face checkpoint directories: layouts checked file by file (names, index JSON, shard
// sizes), round trips bit-exact, and broken indexes as InputErrors naming the file and tensor.
#include "core/checkpoint.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/safetensors.h"
#include "tests/support/files.h"

namespace lvrl::checkpoint {
namespace {

using safetensors::TensorMap;

std::set<std::string> files_in(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    names.insert(entry.path().filename().string());
  return names;
}

nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(test::read_file(path));
}

void write_json(const std::string& path, const nlohmann::json& json) {
  test::write_file(path, json.dump(2));
}

void expect_same_tensors(const TensorMap& actual, const TensorMap& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (const auto& [name, tensor] : expected) {
    ASSERT_EQ(actual.count(name), 1u) << name;
    const at::Tensor& loaded = actual.at(name);
    ASSERT_EQ(loaded.scalar_type(), tensor.scalar_type()) << name;
    ASSERT_EQ(loaded.sizes(), tensor.sizes()) << name;
    const at::Tensor contiguous = tensor.contiguous();
    EXPECT_EQ(std::memcmp(loaded.data_ptr(), contiguous.data_ptr(), tensor.numel() * tensor.element_size()),
              0)
        << name;
  }
}

// Six 100-byte tensors and one of 400 bytes: with a 250-byte limit, name order gives shards
// {a, b} {c, d} {e, f} {g}, the last alone because it exceeds the limit by itself.
TensorMap seven_tensors() {
  at::manual_seed(11);
  return {
      {"a", at::randn({5, 5})},                                  // F32, 100 bytes
      {"b", at::randn({50}).to(at::kBFloat16)},                  // 100
      {"c", at::randint(-1000, 1000, {25}, at::kInt)},           // 100
      {"d", at::randint(0, 256, {100}, at::kByte)},              // 100
      {"e", at::randn({10, 5}).to(at::kHalf)},                   // 100
      {"f", at::randint(0, 2, {100}, at::kLong).to(at::kBool)},  // 100
      {"g", at::randn({50}, at::kDouble)},                       // 400
  };
}

constexpr uint64_t kSmallShardBytes = 250;

TEST(CheckpointTest, ShardedRoundTripFollowsTheHuggingFaceLayout) {
  TempDir dir;
  const TensorMap tensors = seven_tensors();
  save(dir.path(), tensors, kSmallShardBytes, {{"step", "5"}});

  const std::vector<std::string> shards = {
      "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
      "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"};
  std::set<std::string> expected_files(shards.begin(), shards.end());
  expected_files.insert("model.safetensors.index.json");
  EXPECT_EQ(files_in(dir.path()), expected_files);

  const nlohmann::json index = read_json(dir.file("model.safetensors.index.json"));
  EXPECT_EQ(index.at("metadata").at("total_size"), 1000);
  EXPECT_EQ(index.at("weight_map"), nlohmann::json({{"a", shards[0]},
                                                    {"b", shards[0]},
                                                    {"c", shards[1]},
                                                    {"d", shards[1]},
                                                    {"e", shards[2]},
                                                    {"f", shards[2]},
                                                    {"g", shards[3]}}));
  for (const std::string& shard : shards) {
    const auto file = safetensors::File::open(dir.file(shard));
    uint64_t data_bytes = 0;
    for (const auto& info : file->tensors()) data_bytes += info.end - info.begin;
    EXPECT_TRUE(data_bytes <= kSmallShardBytes || file->tensors().size() == 1) << shard << ": " << data_bytes;
    EXPECT_EQ(file->metadata(), (safetensors::Metadata{{"format", "pt"}, {"step", "5"}})) << shard;
  }
  expect_same_tensors(load(dir.path()), tensors);
}

TEST(CheckpointTest, SingleFileRoundTrip) {
  TempDir dir;
  const TensorMap tensors = seven_tensors();
  save(dir.path(), tensors);  // 1000 bytes: far under the 5 GiB default
  EXPECT_EQ(files_in(dir.path()), std::set<std::string>{"model.safetensors"});
  EXPECT_EQ(safetensors::File::open(dir.file("model.safetensors"))->metadata(),
            (safetensors::Metadata{{"format", "pt"}}));
  expect_same_tensors(load(dir.path()), tensors);
}

TEST(CheckpointTest, SaveCreatesTheDirectory) {
  TempDir dir;
  const std::string nested = dir.file("run/checkpoint-10");
  save(nested, {{"x", at::ones({2})}});
  expect_same_tensors(load(nested), {{"x", at::ones({2})}});
}

// A new save must not be shadowed by an old index, nor leave old shards behind.
TEST(CheckpointTest, ResavingSwitchesLayoutAndRemovesStaleFiles) {
  TempDir dir;
  save(dir.path(), seven_tensors(), kSmallShardBytes);
  ASSERT_EQ(files_in(dir.path()).size(), 5u);

  const TensorMap small = {{"x", at::arange(6).reshape({2, 3})}};
  save(dir.path(), small, kSmallShardBytes);
  EXPECT_EQ(files_in(dir.path()), std::set<std::string>{"model.safetensors"});
  expect_same_tensors(load(dir.path()), small);

  const TensorMap two_shards = {{"p", at::zeros({50})}, {"q", at::ones({50})}};  // 200 bytes each
  save(dir.path(), two_shards, kSmallShardBytes);
  EXPECT_EQ(files_in(dir.path()),
            (std::set<std::string>{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                   "model.safetensors.index.json"}));
  expect_same_tensors(load(dir.path()), two_shards);
}

// What transformers writes, written here without our checkpoint::save: shards plus an index in
// its own formatting, with a key order and extra metadata we do not produce.
TEST(CheckpointTest, ReadsAnIndexWrittenByHand) {
  TempDir dir;
  const at::Tensor embed = at::randn({4, 3}).to(at::kBFloat16), norm = at::ones({3});
  safetensors::save(dir.file("model-00001-of-00002.safetensors"), {{"model.embed_tokens.weight", embed}},
                    {{"format", "pt"}});
  safetensors::save(dir.file("model-00002-of-00002.safetensors"), {{"model.norm.weight", norm}},
                    {{"format", "pt"}});
  std::ofstream(dir.file("model.safetensors.index.json")) << R"({
  "metadata": {
    "total_size": 36
  },
  "weight_map": {
    "model.norm.weight": "model-00002-of-00002.safetensors",
    "model.embed_tokens.weight": "model-00001-of-00002.safetensors"
  }
}
)";
  expect_same_tensors(load(dir.path()), {{"model.embed_tokens.weight", embed}, {"model.norm.weight", norm}});
}

// Saves a sharded checkpoint, lets `edit` change its index, and expects load() to fail naming
// `file` (relative to the checkpoint), `key` and `problem`.
void expect_broken_index(const std::function<void(nlohmann::json&)>& edit, const std::string& file,
                         const std::string& key, const std::string& problem) {
  TempDir dir;
  save(dir.path(), seven_tensors(), kSmallShardBytes);
  nlohmann::json index = read_json(dir.file("model.safetensors.index.json"));
  edit(index);
  write_json(dir.file("model.safetensors.index.json"), index);
  try {
    load(dir.path());
    FAIL() << "expected InputError: " << problem;
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), dir.file(file)) << e.what();
    EXPECT_NE(std::string(e.what()).find(dir.file(file)), std::string::npos) << e.what();
    EXPECT_EQ(e.key(), key) << e.what();
    EXPECT_NE(std::string(e.what()).find(problem), std::string::npos) << e.what();
  }
}

TEST(CheckpointTest, IndexNamingAMissingShardIsAnInputError) {
  expect_broken_index(
      [](nlohmann::json& index) { index["weight_map"]["g"] = "model-00009-of-00009.safetensors"; },
      "model.safetensors.index.json", "g", "names a shard file that does not exist");
}

TEST(CheckpointTest, IndexNamingAFileOutsideTheDirectoryIsAnInputError) {
  expect_broken_index([](nlohmann::json& index) { index["weight_map"]["a"] = "../x"; },
                      "model.safetensors.index.json", "a", "plain name inside the checkpoint directory");
  expect_broken_index([](nlohmann::json& index) { index["weight_map"]["a"] = "/etc/passwd"; },
                      "model.safetensors.index.json", "a", "no '/' or '..'");
}

TEST(CheckpointTest, TensorMissingFromItsShardIsAnInputError) {
  expect_broken_index(
      [](nlohmann::json& index) { index["weight_map"]["ghost"] = "model-00001-of-00004.safetensors"; },
      "model-00001-of-00004.safetensors", "ghost", "the shard does not hold it");
}

TEST(CheckpointTest, ShardTensorAbsentFromTheWeightMapIsAnInputError) {
  expect_broken_index([](nlohmann::json& index) { index["weight_map"].erase("c"); },
                      "model-00002-of-00004.safetensors", "c", "does not list");
  expect_broken_index(
      [](nlohmann::json& index) { index["weight_map"]["c"] = "model-00001-of-00004.safetensors"; },
      "model-00001-of-00004.safetensors", "c", "the shard does not hold it");
}

TEST(CheckpointTest, WrongTotalSizeIsAnInputError) {
  expect_broken_index([](nlohmann::json& index) { index["metadata"]["total_size"] = 999; },
                      "model.safetensors.index.json", "metadata.total_size", "differs from the 1000 bytes");
  expect_broken_index([](nlohmann::json& index) { index["metadata"]["total_size"] = "1000"; },
                      "model.safetensors.index.json", "metadata.total_size", "non-negative integer");
}

TEST(CheckpointTest, MalformedIndexIsAnInputError) {
  expect_broken_index([](nlohmann::json& index) { index.erase("weight_map"); },
                      "model.safetensors.index.json", "weight_map", "needs a weight_map object");
  expect_broken_index([](nlohmann::json& index) { index["weight_map"]["a"] = 1; },
                      "model.safetensors.index.json", "a", "weight_map values must be shard file names");
  expect_broken_index([](nlohmann::json& index) { index = nlohmann::json::array(); },
                      "model.safetensors.index.json", "", "index must be a JSON object");

  TempDir dir;
  std::ofstream(dir.file("model.safetensors.index.json")) << "{\"weight_map\": ";
  try {
    load(dir.path());
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), dir.file("model.safetensors.index.json"));
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
  }
}

TEST(CheckpointTest, DirectoryWithoutWeightsIsAnInputError) {
  TempDir dir;
  try {
    load(dir.path());
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), dir.path());
    EXPECT_NE(std::string(e.what()).find("no model.safetensors or model.safetensors.index.json"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace lvrl::checkpoint
