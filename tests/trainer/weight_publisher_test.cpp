// Weight publishing: the trainer's language weights reach a running rollout model exactly, the
// vision tower untouched; the announcement on the weight channel names the file and its checksum;
// a corrupted file, or one carrying vision-tower tensors, is refused; old versions are pruned.
#include "trainer/weight_publisher.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "core/safetensors.h"
#include "core/temp_dir.h"
#include "model/weights.h"
#include "tests/cache/redis_test_support.h"
#include "tests/model/micro_model.h"

namespace lvrl::trainer {
namespace {

namespace fs = std::filesystem;

std::map<std::string, at::Tensor> snapshot(const model::QwenVLImpl& model) {
  std::map<std::string, at::Tensor> out;
  for (const auto& item : model.named_parameters()) out[item.key()] = item.value().detach().clone();
  return out;
}

TEST(WeightPublisher, ARolloutModelSwapsInTheLanguageWeightsOnly) {
  TempDir run("lvrl-weights");
  cache::testing::TestServer server;
  auto channel = std::make_shared<cache::WeightChannel>(server.endpoint(), "test");
  model::QwenVL trained = testing_model::random_model(testing_model::micro_config(), 1, at::kFloat);
  model::QwenVL rollout = testing_model::random_model(testing_model::micro_config(), 2, at::kFloat);
  const auto trained_params = snapshot(*trained), rollout_before = snapshot(*rollout);

  WeightPublisher publisher(run.file("weights"), channel, 2);
  const cache::WeightVersion announced = publisher.publish(*trained, 3);
  ASSERT_TRUE(channel->latest().has_value());
  EXPECT_EQ(*channel->latest(), announced);
  EXPECT_EQ(announced.location, publisher.path_of(3));

  model::load_published_weights(*rollout, announced.location, announced.checksum);
  int64_t language = 0, visual = 0;
  for (const auto& item : rollout->named_parameters()) {
    const bool is_visual = item.key().rfind("visual.", 0) == 0;
    const at::Tensor& expected = is_visual ? rollout_before.at(item.key()) : trained_params.at(item.key());
    EXPECT_TRUE(at::equal(item.value(), expected)) << item.key();
    (is_visual ? visual : language) += 1;
  }
  EXPECT_GT(language, 0);
  EXPECT_GT(visual, 0);
  for (const auto& [name, tensor] : safetensors::load(announced.location)) {
    EXPECT_NE(name.rfind("visual.", 0), 0u) << "the frozen tower is never sent: " << name;
  }
}

TEST(WeightPublisher, RefusesACorruptFileAndVisionTensors) {
  TempDir run("lvrl-weights");
  model::QwenVL model = testing_model::random_model(testing_model::micro_config(), 1, at::kFloat);
  WeightPublisher publisher(run.file("weights"), nullptr, 3);
  const cache::WeightVersion announced = publisher.publish(*model, 0);
  {
    std::fstream file(announced.location, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(-5, std::ios::end);
    file.put('\x7f');
  }
  try {
    model::load_published_weights(*model, announced.location, announced.checksum);
    FAIL() << "a corrupted weight file was loaded";
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), "checksum");
    EXPECT_EQ(e.file(), announced.location);
  }
  safetensors::TensorMap with_visual = model::state_dict(*model);
  EXPECT_THROW(model::load_language_weights(*model, with_visual, "whole.safetensors"), InputError);
}

TEST(WeightPublisher, KeepsTheNewestVersions) {
  TempDir run("lvrl-weights");
  model::QwenVL model = testing_model::random_model(testing_model::micro_config(), 1, at::kFloat);
  WeightPublisher publisher(run.file("weights"), nullptr, 2);
  for (int64_t version = 1; version <= 5; ++version) publisher.publish(*model, version);
  for (int64_t version = 1; version <= 5; ++version) {
    EXPECT_EQ(fs::exists(publisher.path_of(version)), version >= 4) << "v" << version;
  }
}

}  // namespace
}  // namespace lvrl::trainer
