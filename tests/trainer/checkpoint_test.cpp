// Trainer checkpoints: a round trip is bit-identical (weights, optimizer tensors, state); a damaged
// checkpoint (truncated, one byte flipped, no manifest) is skipped for the one before it with a
// warning naming it; an interrupted save's temp dir is ignored and then removed; keep_checkpoints
// prunes the oldest; trainer.resume never / PATH / a bad PATH; a cursor saved at an epoch's end
// resumes into the next epoch. References: the tensors and values the test itself made, `xxhsum -H2`
// for the manifest's hashes and the stream seeds, `lvrl model info` as a process.
#include "trainer/checkpoint.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../model/micro_model.h"
#include "../support/expect_error.h"
#include "../support/files.h"
#include "../support/run_process.h"
#include "core/safetensors.h"
#include "model/weights.h"
#include "trainer/seed.h"

namespace lvrl::trainer {
namespace {

namespace fs = std::filesystem;
using testing_model::micro_config;
using testing_model::random_model;

// Log lines written while it lives, instead of the console.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto logger =
        std::make_shared<spdlog::logger>("captured", std::make_shared<spdlog::sinks::ostream_sink_mt>(text_));
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::string text() const { return text_.str(); }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream text_;
};

test::ProcessOptions stderr_apart(double timeout_s) {
  test::ProcessOptions options;
  options.timeout_s = timeout_s;
  options.separate_stderr = true;
  return options;
}

// A state whose every field is set, its optimizer tensors named after the model's parameters.
TrainerState make_state(const model::QwenVLImpl& model, int64_t step, uint64_t seed) {
  TrainerState state;
  state.step = step;
  state.schedule_position = step + 1;
  state.data = {2, 5 + step, seed * 7 + 1};
  state.unacknowledged_ids = {"group-" + std::to_string(step), "rollout-a/3"};
  state.metrics = {{"reward/overall", {0.25, 0.5}}, {"actor/lr", 1e-6}};
  state.config_yaml = "trainer:\n  lr: 1.0e-06\nrun:\n  seed: " + std::to_string(seed) + "\n";
  at::Generator generator = at::detail::createCPUGenerator(seed);
  for (const auto& item : model.named_parameters()) {
    state.optimizer["exp_avg/" + item.key()] = at::randn(item.value().sizes(), generator, at::kFloat);
    state.optimizer["exp_avg_sq/" + item.key()] = at::rand(item.value().sizes(), generator, at::kFloat);
  }
  return state;
}

// model.path's side files with recognisable bytes.
void write_model_side_files(const std::string& dir) {
  test::write_file(dir + "/tokenizer.json", R"({"model": {"type": "BPE"}})");
  test::write_file(dir + "/preprocessor_config.json", R"({"patch_size": 14})");
  test::write_file(dir + "/merges.txt", "#version: 0.2\na b\n");
}

std::string xxhsum_h2(const std::string& path) {
  const test::ProcessResult run = test::run_process({"xxhsum", "-H2", path}, stderr_apart(30));
  EXPECT_EQ(run.exit_code, 0) << run.error_output;
  return run.output.substr(0, run.output.find(' '));
}

void save_steps(const std::string& run_dir, const model::QwenVLImpl& model,
                std::initializer_list<int64_t> steps, int64_t keep = 10) {
  for (int64_t step : steps) save_checkpoint(run_dir, model, make_state(model, step, 11), "", keep);
}

class CheckpointRoundTrip : public ::testing::TestWithParam<std::tuple<at::ScalarType, bool>> {};

TEST_P(CheckpointRoundTrip, WeightsAndStateComeBackBitIdentical) {
  const auto [dtype, tied] = GetParam();
  TempDir run("ckpt-run"), source("ckpt-source");
  write_model_side_files(source.path());
  model::QwenVL saved = random_model(micro_config(tied), 3, dtype);
  const TrainerState state = make_state(*saved, 7, 5);
  const std::string dir = save_checkpoint(run.path(), *saved, state, source.path(), 3);
  EXPECT_EQ(dir, run.path() + "/checkpoints/step-7");
  EXPECT_NO_THROW(validate_checkpoint(dir));

  model::QwenVL loaded = random_model(micro_config(tied), 4, dtype);  // other weights to overwrite
  TrainerState back;
  load_checkpoint(dir, *loaded, back);
  const auto loaded_params = loaded->named_parameters();
  for (const auto& item : saved->named_parameters()) {
    const at::Tensor& got = loaded_params[item.key()];
    EXPECT_EQ(got.scalar_type(), dtype) << item.key();
    EXPECT_TRUE(at::equal(got, item.value())) << item.key();
  }
  EXPECT_EQ(back.step, 7);
  EXPECT_EQ(back.schedule_position, 8);
  EXPECT_EQ(back.data, (DataCursor{2, 12, 36}));
  EXPECT_EQ(back.unacknowledged_ids, state.unacknowledged_ids);
  EXPECT_EQ(back.metrics, state.metrics);
  EXPECT_EQ(back.config_yaml, state.config_yaml);
  ASSERT_EQ(back.optimizer.size(), state.optimizer.size());
  for (const auto& [name, tensor] : state.optimizer) {
    ASSERT_EQ(back.optimizer.count(name), 1u) << name;
    EXPECT_EQ(back.optimizer[name].scalar_type(), at::kFloat) << name;
    EXPECT_TRUE(at::equal(back.optimizer[name], tensor)) << name;
  }
  for (const char* name : {"tokenizer.json", "preprocessor_config.json", "merges.txt"}) {
    EXPECT_EQ(test::read_file(dir + "/" + name), test::read_file(source.file(name))) << name;
  }
  EXPECT_FALSE(fs::exists(dir + "/vocab.json"));  // absent from model.path: not made up

  // The manifest's hashes are what xxhsum computes.
  const nlohmann::json manifest = nlohmann::json::parse(test::read_file(dir + "/manifest.json"));
  for (const char* name : {"model.safetensors", "trainer_state/optimizer.safetensors", "tokenizer.json"}) {
    EXPECT_EQ(manifest["files"][name]["xxh128"], xxhsum_h2(dir + "/" + name)) << name;
    EXPECT_EQ(manifest["files"][name]["size"], fs::file_size(dir + "/" + name)) << name;
  }

  const test::ProcessResult info = test::run_lvrl({"model", "info", dir, "--json"}, stderr_apart(60));
  ASSERT_EQ(info.exit_code, 0) << info.output << info.error_output;
  int64_t parameters = 0;
  for (const at::Tensor& param : saved->parameters()) parameters += param.numel();
  EXPECT_EQ(nlohmann::json::parse(info.output)["parameters"]["total"], parameters) << info.output;
}

INSTANTIATE_TEST_SUITE_P(DtypesAndHeads, CheckpointRoundTrip,
                         ::testing::Values(std::make_tuple(at::kFloat, false),
                                           std::make_tuple(at::kBFloat16, true)));

enum class Damage { Truncated, FlippedByte, MissingManifest };

class DamagedCheckpoint : public ::testing::TestWithParam<Damage> {};

TEST_P(DamagedCheckpoint, IsSkippedForThePreviousOneWithAWarningNamingIt) {
  TempDir run("ckpt-run");
  model::QwenVL model = random_model(micro_config(), 3, at::kFloat);
  save_steps(run.path(), *model, {10, 20});
  const std::string newest = checkpoint_dir(run.path(), 20);
  const std::string weights = newest + "/model.safetensors";
  const std::string optimizer = newest + "/trainer_state/optimizer.safetensors";
  switch (GetParam()) {
    case Damage::Truncated:
      fs::resize_file(weights, fs::file_size(weights) - 100);
      break;
    case Damage::FlippedByte: {
      std::string bytes = test::read_file(optimizer);
      bytes[bytes.size() - 3] ^= 0x10;  // inside a tensor's data: the file still parses
      test::write_file(optimizer, bytes);
      break;
    }
    case Damage::MissingManifest:
      fs::remove(newest + "/manifest.json");
      break;
  }
  CapturedLog log;
  const std::optional<std::string> found = find_resume_checkpoint(run.path(), "auto");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(*found, checkpoint_dir(run.path(), 10));
  EXPECT_NE(log.text().find("skipping checkpoint " + newest), std::string::npos) << log.text();
  const std::string culprit = GetParam() == Damage::Truncated     ? weights
                              : GetParam() == Damage::FlippedByte ? optimizer
                                                                  : newest + "/manifest.json";
  EXPECT_NE(log.text().find(culprit), std::string::npos) << log.text();

  // Asked for by path, the damaged one is refused.
  const InputError error =
      test::expect_input_error([&] { find_resume_checkpoint(run.path(), newest); }, "trainer.resume");
  EXPECT_EQ(error.value(), newest);
}

INSTANTIATE_TEST_SUITE_P(Kinds, DamagedCheckpoint,
                         ::testing::Values(Damage::Truncated, Damage::FlippedByte, Damage::MissingManifest));

TEST(Checkpoint, EveryCheckpointDamagedMeansNoResume) {
  TempDir run("ckpt-run");
  model::QwenVL model = random_model(micro_config(), 3, at::kFloat);
  save_steps(run.path(), *model, {1});
  fs::remove(checkpoint_dir(run.path(), 1) + "/trainer_state/state.json");
  CapturedLog log;
  EXPECT_FALSE(find_resume_checkpoint(run.path(), "auto").has_value());
  EXPECT_NE(log.text().find("state.json"), std::string::npos) << log.text();
}

TEST(Checkpoint, InterruptedSaveTempDirIsIgnoredThenRemoved) {
  TempDir run("ckpt-run");
  model::QwenVL model = random_model(micro_config(), 3, at::kFloat);
  save_steps(run.path(), *model, {5});
  // What a save killed half-way leaves: a temp dir with part of a checkpoint and no manifest.
  const std::string temp = run.path() + "/checkpoints/.step-6.tmp-99999";
  fs::create_directories(temp + "/trainer_state");
  test::write_file(temp + "/model.safetensors", test::random_bytes(1000, 1));
  test::write_file(temp + "/trainer_state/state.json.tmp.99999", "{\"st");

  EXPECT_EQ(list_checkpoints(run.path()), std::vector<std::string>{checkpoint_dir(run.path(), 5)});
  EXPECT_EQ(find_resume_checkpoint(run.path(), "auto"), checkpoint_dir(run.path(), 5));
  save_steps(run.path(), *model, {6});
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_NO_THROW(validate_checkpoint(checkpoint_dir(run.path(), 6)));
  std::vector<std::string> entries;
  for (const auto& entry : fs::directory_iterator(run.path() + "/checkpoints")) {
    entries.push_back(entry.path().filename().string());
  }
  std::sort(entries.begin(), entries.end());
  EXPECT_EQ(entries, (std::vector<std::string>{"step-5", "step-6"}));
}

TEST(Checkpoint, AFailedSaveLeavesTheEarlierCheckpointsAndNoTempDir) {
  TempDir run("ckpt-run");
  model::QwenVL model = random_model(micro_config(), 3, at::kFloat);
  save_steps(run.path(), *model, {5});
  TrainerState state = make_state(*model, 6, 1);
  state.optimizer["exp_avg/broken"] = at::Tensor();  // safetensors refuses it, after the weights are written
  test::expect_input_error([&] { save_checkpoint(run.path(), *model, state, "", 3); });
  EXPECT_EQ(std::distance(fs::directory_iterator(run.path() + "/checkpoints"), fs::directory_iterator()), 1);
  EXPECT_EQ(find_resume_checkpoint(run.path(), "auto"), checkpoint_dir(run.path(), 5));
}

TEST(Checkpoint, KeepCheckpointsPrunesTheOldest) {
  TempDir run("ckpt-run");
  model::QwenVL model = random_model(micro_config(), 3, at::kFloat);
  save_steps(run.path(), *model, {1, 2, 3, 10}, 2);
  EXPECT_EQ(list_checkpoints(run.path()),
            (std::vector<std::string>{checkpoint_dir(run.path(), 3), checkpoint_dir(run.path(), 10)}));
  // Steps sort as numbers (10 after 3), and the one just written stays even when it is not the newest.
  save_steps(run.path(), *model, {4}, 1);
  EXPECT_EQ(list_checkpoints(run.path()), std::vector<std::string>{checkpoint_dir(run.path(), 4)});
}

TEST(Checkpoint, SavingAStepAgainReplacesIt) {
  TempDir run("ckpt-run");
  model::QwenVL model = random_model(micro_config(), 3, at::kFloat);
  TrainerState state = make_state(*model, 8, 1);
  save_checkpoint(run.path(), *model, state, "", 3);
  state.metrics["stopped_by"] = "SIGTERM";
  save_checkpoint(run.path(), *model, state, "", 3);
  TrainerState back;
  load_checkpoint(checkpoint_dir(run.path(), 8), *model, back);
  EXPECT_EQ(back.metrics["stopped_by"], "SIGTERM");
  EXPECT_EQ(list_checkpoints(run.path()).size(), 1u);
  EXPECT_EQ(std::distance(fs::directory_iterator(run.path() + "/checkpoints"), fs::directory_iterator()), 1);
}

TEST(Checkpoint, ResumeNeverPathAndBadPath) {
  TempDir run("ckpt-run"), other("ckpt-other");
  model::QwenVL model = random_model(micro_config(), 3, at::kFloat);
  EXPECT_FALSE(find_resume_checkpoint(run.path(), "auto").has_value());  // nothing saved yet
  save_steps(run.path(), *model, {3, 4});
  EXPECT_FALSE(find_resume_checkpoint(run.path(), "never").has_value());
  EXPECT_EQ(find_resume_checkpoint(run.path(), "auto"), checkpoint_dir(run.path(), 4));
  // A path resumes from exactly that checkpoint, even an older one, even from another run dir.
  EXPECT_EQ(find_resume_checkpoint(other.path(), checkpoint_dir(run.path(), 3)),
            checkpoint_dir(run.path(), 3));

  const std::string missing = run.path() + "/checkpoints/step-99";
  InputError error =
      test::expect_input_error([&] { find_resume_checkpoint(run.path(), missing); }, "trainer.resume");
  EXPECT_EQ(error.value(), missing);
  EXPECT_NE(std::string(error.what()).find(missing), std::string::npos) << error.what();
  // A model directory is not a trainer checkpoint.
  model::save_model(*model, other.path());
  error =
      test::expect_input_error([&] { find_resume_checkpoint(run.path(), other.path()); }, "trainer.resume");
  EXPECT_NE(std::string(error.what()).find("manifest.json"), std::string::npos) << error.what();
}

TEST(DataCursor, AtTheEndOfAnEpochReadsTheNextEpoch) {
  const int64_t dataset_size = 10;
  EXPECT_EQ(cursor_to_read_from({0, 10, 77}, dataset_size, "c"), (DataCursor{1, 0, 77}));
  EXPECT_EQ(cursor_to_read_from({1, 4, 77}, dataset_size, "c"), (DataCursor{1, 4, 77}));
  EXPECT_EQ(cursor_to_read_from({1, 0, 77}, dataset_size, "c"), (DataCursor{1, 0, 77}));
  // Two epochs of 10, saved right after the first: 10 items are left, not 0 (verl's boundary bug).
  EXPECT_EQ(items_remaining(cursor_to_read_from({0, 10, 77}, dataset_size, "c"), dataset_size, 2), 10);
  EXPECT_EQ(items_remaining({1, 10, 77}, dataset_size, 2), 0);
  EXPECT_EQ(items_remaining({0, 3, 77}, dataset_size, 2), 17);
  const InputError error = test::expect_input_error(
      [&] {
        cursor_to_read_from({0, 11, 77}, dataset_size, "ckpt");
      },
      "data.position");
  EXPECT_EQ(error.file(), "ckpt");
}

TEST(DataCursor, ACheckpointSavedAtAnEpochBoundaryResumesIntoTheNextEpoch) {
  TempDir run("ckpt-run");
  model::QwenVL model = random_model(micro_config(), 3, at::kFloat);
  TrainerState state = make_state(*model, 4, 1);
  state.data = {0, 8, 123};  // 4 steps × 2 prompts over a dataset of 8
  save_checkpoint(run.path(), *model, state, "", 3);
  TrainerState back;
  load_checkpoint(*find_resume_checkpoint(run.path(), "auto"), *model, back);
  const DataCursor next = cursor_to_read_from(back.data, 8, "step-4");
  EXPECT_EQ(next, (DataCursor{1, 0, 123}));
  EXPECT_EQ(items_remaining(next, 8, 3), 16);
}

// The seed is the low 64 bits of XXH3-128 over "lvrl.trainer.seed" ⊕ seed ⊕ step ⊕ rank (u64 LE)
// ⊕ the stream's length (u64 LE) ⊕ its name: checked against xxhsum on those bytes.
TEST(DeriveSeed, IsTheHashOfItsPartsAndSeparatesStreams) {
  auto le = [](uint64_t value) {
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
    return bytes;
  };
  TempDir dir("seed");
  const std::string stream = "shuffle";
  test::write_file(dir.file("input"),
                   "lvrl.trainer.seed" + le(1234) + le(17) + le(3) + le(stream.size()) + stream);
  const std::string hex = xxhsum_h2(dir.file("input"));
  ASSERT_EQ(hex.size(), 32u);
  EXPECT_EQ(derive_seed(1234, 17, 3, stream), std::stoull(hex.substr(16), nullptr, 16));

  const uint64_t base = derive_seed(1234, 17, 3, stream);
  EXPECT_EQ(derive_seed(1234, 17, 3, stream), base);
  EXPECT_NE(derive_seed(1235, 17, 3, stream), base);
  EXPECT_NE(derive_seed(1234, 18, 3, stream), base);
  EXPECT_NE(derive_seed(1234, 17, 2, stream), base);
  EXPECT_NE(derive_seed(1234, 17, 3, "dropout"), base);
}

}  // namespace
}  // namespace lvrl::trainer
