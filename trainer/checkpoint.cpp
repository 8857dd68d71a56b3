#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <system_error>

#include "core/checkpoint.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/mapped_file.h"
#include "core/safetensors.h"
#include "model/weights.h"

namespace lvrl::trainer {
namespace {

namespace fs = std::filesystem;

constexpr const char* kStateFileName = "trainer_state/state.json";
constexpr const char* kOptimizerFileName = "trainer_state/optimizer.safetensors";
constexpr const char* kConfigFileName = "trainer_state/config.yaml";
constexpr const char* kManifestFormat = "lvrl-trainer-checkpoint";
constexpr int kManifestVersion = 1;

[[noreturn]] void fail_path(const fs::path& path, const std::string& what, const std::error_code& error) {
  throw InputError({path.string(), 0, "", ""}, what + ": " + error.message());
}

// Makes the directory's entries (a created file or subdirectory, a rename) durable.
void fsync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    fail_path(dir, "cannot open directory to fsync it", std::error_code(errno, std::generic_category()));
  }
  const int synced = ::fsync(fd);
  const int sync_error = errno;
  ::close(fd);
  // Some file systems cannot fsync a directory (EINVAL); the entries are then as durable as it gets.
  if (synced != 0 && sync_error != EINVAL) {
    fail_path(dir, "cannot fsync directory", std::error_code(sync_error, std::generic_category()));
  }
}

void write_file_synced(const fs::path& path, const std::string& bytes) {
  AtomicFileWriter out(path.string());  // fsyncs the file and its directory on commit
  out.write(bytes.data(), bytes.size());
  out.commit();
}

std::string read_whole_file(const fs::path& path) {
  const std::shared_ptr<const MappedFile> mapping = MappedFile::open(path.string());
  return std::string(reinterpret_cast<const char*>(mapping->data()), mapping->size());
}

nlohmann::json read_json(const fs::path& path) {
  const std::string text = read_whole_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw InputError({path.string(), 0, "", ""}, std::string("not valid JSON: ") + e.what());
  }
}

void make_directories(const fs::path& dir) {
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) fail_path(dir, "cannot create directory", error);
}

void remove_tree(const fs::path& path) {
  std::error_code error;
  fs::remove_all(path, error);
  if (error) fail_path(path, "cannot remove", error);
}

// "step-<digits>" → the step; anything else (temp dirs, stray files) → none.
std::optional<int64_t> step_of_name(const std::string& name) {
  const std::string prefix = "step-";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0 || name.size() > 24) {
    return std::nullopt;
  }
  int64_t step = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

// ".step-<N>.tmp-<pid>[...]": what an interrupted save leaves.
bool is_temp_dir_name(const std::string& name) {
  return name.rfind(".step-", 0) == 0 && name.find(".tmp-") != std::string::npos;
}

void remove_stale_temp_dirs(const fs::path& checkpoints_dir) {
  std::error_code error;
  std::vector<fs::path> stale;
  for (const fs::directory_entry& entry : fs::directory_iterator(checkpoints_dir, error)) {
    if (is_temp_dir_name(entry.path().filename().string())) stale.push_back(entry.path());
  }
  if (error) fail_path(checkpoints_dir, "cannot list directory", error);
  for (const fs::path& path : stale) {
    LVRL_WARN("removing {}: an interrupted checkpoint save left it", path.string());
    remove_tree(path);
  }
}

// Every regular file under `dir`, as paths relative to it ('/'-separated), sorted.
std::vector<std::string> files_under(const fs::path& dir) {
  std::vector<std::string> files;
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(dir, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (it->is_regular_file()) files.push_back(fs::relative(it->path(), dir).generic_string());
  }
  if (error) fail_path(dir, "cannot list directory", error);
  std::sort(files.begin(), files.end());
  return files;
}

void write_manifest(const fs::path& dir, int64_t step) {
  nlohmann::json files = nlohmann::json::object();
  for (const std::string& name : files_under(dir)) {
    const fs::path path = dir / name;
    std::error_code error;
    const uint64_t size = fs::file_size(path, error);
    if (error) fail_path(path, "cannot read the size", error);
    files[name] = {{"size", size}, {"xxh128", hash_file(path.string()).hex()}};
  }
  const nlohmann::json manifest = {
      {"format", kManifestFormat}, {"version", kManifestVersion}, {"step", step}, {"files", files}};
  write_file_synced(dir / kManifestFileName, manifest.dump(2) + "\n");
}

// A manifest's file name must stay inside the checkpoint.
bool is_inside_name(const std::string& name) {
  if (name.empty() || name.front() == '/' || name.find('\0') != std::string::npos) return false;
  for (const fs::path& part : fs::path(name)) {
    if (part == ".." || part == ".") return false;
  }
  return true;
}

void prune_checkpoints(const std::string& run_dir, int64_t kept_step, int64_t keep) {
  std::vector<std::string> others;
  for (const std::string& dir : list_checkpoints(run_dir)) {
    if (step_of_name(fs::path(dir).filename().string()) != kept_step) others.push_back(dir);
  }
  // Oldest first: everything before the newest keep - 1 goes.
  const int64_t removable = static_cast<int64_t>(others.size()) - (keep - 1);
  for (int64_t i = 0; i < removable; ++i) {
    LVRL_INFO("removing checkpoint {} (trainer.keep_checkpoints = {})", others[i], keep);
    remove_tree(others[i]);
  }
  if (removable > 0) fsync_directory(fs::path(run_dir) / kCheckpointsDirName);
}

// Everything of the checkpoint into `dir` (the temp dir), each file fsynced, the manifest last.
void write_checkpoint_files(const fs::path& dir, const model::QwenVLImpl& model, const TrainerState& state,
                            const std::string& model_source_dir) {
  model::save_model(model, dir.string());  // config.json + weights, in the model's dtype
  if (!model_source_dir.empty()) {
    for (const std::string& name : model_side_files()) {
      const fs::path from = fs::path(model_source_dir) / name;
      std::error_code error;
      if (fs::is_regular_file(from, error)) write_file_synced(dir / name, read_whole_file(from));
    }
  }
  const fs::path state_dir = dir / kTrainerStateDirName;
  make_directories(state_dir);
  safetensors::save((dir / kOptimizerFileName).string(), state.optimizer);
  write_file_synced(dir / kStateFileName, state_to_json(state).dump(2) + "\n");
  write_file_synced(dir / kConfigFileName, state.config_yaml);
  fsync_directory(dir);  // the trainer_state/ entry itself
  write_manifest(dir, state.step);
}

}  // namespace

const std::vector<std::string>& model_side_files() {
  static const std::vector<std::string> files = {"tokenizer.json",
                                                 "tokenizer_config.json",
                                                 "vocab.json",
                                                 "merges.txt",
                                                 "special_tokens_map.json",
                                                 "preprocessor_config.json",
                                                 "generation_config.json",
                                                 "chat_template.json"};
  return files;
}

std::string checkpoint_dir(const std::string& run_dir, int64_t step) {
  return (fs::path(run_dir) / kCheckpointsDirName / fmt::format("step-{}", step)).string();
}

std::string save_checkpoint(const std::string& run_dir, const model::QwenVLImpl& model,
                            const TrainerState& state, const std::string& model_source_dir, int64_t keep) {
  LVRL_ASSERT(keep >= 1, "trainer.keep_checkpoints is at least 1 (the schema says so)");
  LVRL_ASSERT(state.step >= 0, "a negative step");
  const fs::path checkpoints_dir = fs::path(run_dir) / kCheckpointsDirName;
  make_directories(checkpoints_dir);
  fsync_directory(run_dir);
  remove_stale_temp_dirs(checkpoints_dir);

  const fs::path final_dir = checkpoint_dir(run_dir, state.step);
  const fs::path temp_dir = checkpoints_dir / fmt::format(".step-{}.tmp-{}", state.step, ::getpid());
  make_directories(temp_dir);

  try {
    write_checkpoint_files(temp_dir, model, state, model_source_dir);
  } catch (...) {
    std::error_code ignored;  // the error on the way out matters more than the leftover dir
    fs::remove_all(temp_dir, ignored);
    throw;
  }

  // A checkpoint of this step already there (a stop signal right after a periodic save, a rerun)
  // moves aside first: rename cannot replace a non-empty directory.
  std::error_code error;
  fs::path replaced;
  if (fs::exists(final_dir, error)) {
    replaced = checkpoints_dir / fmt::format(".step-{}.tmp-{}.replaced", state.step, ::getpid());
    fs::rename(final_dir, replaced, error);
    if (error) fail_path(final_dir, "cannot move the earlier checkpoint of this step aside", error);
  }
  fs::rename(temp_dir, final_dir, error);
  if (error) fail_path(temp_dir, "cannot rename the new checkpoint to " + final_dir.string(), error);
  fsync_directory(checkpoints_dir);
  if (!replaced.empty()) remove_tree(replaced);
  LVRL_INFO("saved checkpoint {}", final_dir.string());

  prune_checkpoints(run_dir, state.step, keep);
  return final_dir.string();
}

std::vector<std::string> list_checkpoints(const std::string& run_dir) {
  const fs::path checkpoints_dir = fs::path(run_dir) / kCheckpointsDirName;
  std::error_code error;
  if (!fs::is_directory(checkpoints_dir, error)) return {};
  std::vector<std::pair<int64_t, std::string>> found;
  for (const fs::directory_entry& entry : fs::directory_iterator(checkpoints_dir, error)) {
    const std::optional<int64_t> step = step_of_name(entry.path().filename().string());
    if (step && entry.is_directory()) found.emplace_back(*step, entry.path().string());
  }
  if (error) fail_path(checkpoints_dir, "cannot list directory", error);
  std::sort(found.begin(), found.end());
  std::vector<std::string> dirs;
  for (auto& item : found) dirs.push_back(std::move(item.second));
  return dirs;
}

void validate_checkpoint(const std::string& dir) {
  const fs::path directory(dir);
  std::error_code error;
  if (!fs::is_directory(directory, error)) {
    throw InputError({dir, 0, "", ""}, "not a checkpoint directory (it does not exist or is no directory)");
  }
  const fs::path manifest_path = directory / kManifestFileName;
  if (!fs::exists(manifest_path, error)) {
    throw InputError({manifest_path.string(), 0, "", ""},
                     "missing: the checkpoint's save did not finish (the manifest is written last)");
  }
  const nlohmann::json manifest = read_json(manifest_path);
  if (!manifest.is_object() || manifest.value("format", "") != kManifestFormat ||
      !manifest.contains("files") || !manifest["files"].is_object()) {
    throw InputError({manifest_path.string(), 0, "", ""},
                     fmt::format("not a {} manifest (expected format and files)", kManifestFormat));
  }
  const std::optional<int64_t> step = step_of_name(directory.filename().string());
  if (step && (!manifest.contains("step") || manifest["step"] != *step)) {
    throw InputError({manifest_path.string(), 0, "step", manifest.value("step", nlohmann::json()).dump()},
                     fmt::format("the directory is step-{}", *step));
  }
  const nlohmann::json& files = manifest["files"];
  for (const auto& item : files.items()) {
    const std::string& name = item.key();
    const nlohmann::json& entry = item.value();
    if (!is_inside_name(name) || !entry.is_object() || !entry.contains("size") ||
        !entry["size"].is_number_unsigned() || !entry.contains("xxh128") || !entry["xxh128"].is_string()) {
      throw InputError({manifest_path.string(), 0, name, entry.dump()},
                       "expected a relative path inside the checkpoint with {size, xxh128}");
    }
    const fs::path path = directory / name;
    if (!fs::is_regular_file(path, error)) {
      throw InputError({path.string(), 0, "", ""}, "listed in the manifest but missing");
    }
    const uint64_t size = fs::file_size(path, error);
    const uint64_t expected_size = entry["size"].get<uint64_t>();
    if (error || size != expected_size) {
      throw InputError({path.string(), 0, "size", std::to_string(size)},
                       fmt::format("the manifest says {} bytes (truncated or replaced?)", expected_size));
    }
    const std::string hash = hash_file(path.string()).hex();
    if (hash != entry["xxh128"].get<std::string>()) {
      throw InputError(
          {path.string(), 0, "xxh128", hash},
          fmt::format("the manifest says {}: the file is corrupt", entry["xxh128"].get<std::string>()));
    }
  }
  const bool has_weights =
      files.contains(checkpoint::kSingleFileName) || files.contains(checkpoint::kIndexFileName);
  for (const char* needed : {"config.json", kStateFileName, kOptimizerFileName, kConfigFileName}) {
    if (!files.contains(needed)) {
      throw InputError({manifest_path.string(), 0, needed, ""},
                       "a checkpoint needs this file; the manifest lacks it");
    }
  }
  if (!has_weights) {
    throw InputError({manifest_path.string(), 0, checkpoint::kSingleFileName, ""},
                     "lists no weights (model.safetensors or its index)");
  }
}

std::optional<std::string> find_resume_checkpoint(const std::string& run_dir, const std::string& resume) {
  if (resume == "never") return std::nullopt;
  if (resume != "auto") {
    try {
      validate_checkpoint(resume);
    } catch (const InputError& e) {
      throw InputError({e.file(), 0, "trainer.resume", resume},
                       "cannot resume from this checkpoint: " + e.problem());
    }
    return resume;
  }
  const std::vector<std::string> dirs = list_checkpoints(run_dir);
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    try {
      validate_checkpoint(*it);
      return *it;
    } catch (const InputError& e) {
      LVRL_WARN("skipping checkpoint {}: {}", *it, e.what());
    }
  }
  return std::nullopt;
}

void load_checkpoint(const std::string& dir, model::QwenVLImpl& model, TrainerState& state) {
  const fs::path directory(dir);
  model::load_weights(model, checkpoint::load(dir), dir);
  const fs::path state_path = directory / kStateFileName;
  state_from_json(read_json(state_path), state_path.string(), state);
  state.config_yaml = read_whole_file(directory / kConfigFileName);
  state.optimizer = safetensors::load((directory / kOptimizerFileName).string());
}

}  // namespace lvrl::trainer
