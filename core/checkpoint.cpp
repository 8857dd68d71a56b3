#include "core/checkpoint.h"

#include <fmt/format.h>

#include <cctype>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"

namespace lvrl::checkpoint {
namespace {

namespace fs = std::filesystem;

std::string shard_file_name(size_t index, size_t count) {
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", index + 1, count);
}

// model-NNNNN-of-MMMMM.safetensors, the only names a stale-file sweep may remove.
bool is_shard_file_name(const std::string& name) {
  const std::string pattern = "model-#####-of-#####.safetensors";
  if (name.size() != pattern.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (pattern[i] == '#' ? !std::isdigit(static_cast<unsigned char>(name[i])) : name[i] != pattern[i]) {
      return false;
    }
  }
  return true;
}

uint64_t tensor_bytes(const at::Tensor& tensor) {
  return uint64_t(tensor.numel()) * tensor.element_size();
}

// Tensors in name order, cut into shards of at most `max_shard_bytes`; a tensor larger than that
// gets a shard of its own (splitting a tensor would break the one-file-per-tensor weight_map).
std::vector<safetensors::TensorMap> plan_shards(const safetensors::TensorMap& tensors,
                                                uint64_t max_shard_bytes) {
  std::vector<safetensors::TensorMap> shards;
  uint64_t shard_bytes = 0;
  for (const auto& [name, tensor] : tensors) {
    const uint64_t bytes = tensor_bytes(tensor);
    if (shards.empty() || (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes)) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().emplace(name, tensor);
    shard_bytes += bytes;
  }
  return shards;
}

void remove_file(const fs::path& path) {
  std::error_code error;
  fs::remove(path, error);
  if (error) throw InputError({path.string(), 0, "", ""}, "cannot remove stale file: " + error.message());
}

// Removes what an earlier save left that the layout just written does not use: otherwise a stale
// index would shadow a new model.safetensors, and stale shards would pile up.
void remove_stale_files(const fs::path& dir, const std::set<std::string>& written) {
  std::vector<fs::path> stale;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    const bool ours = name == kSingleFileName || name == kIndexFileName || is_shard_file_name(name);
    if (ours && written.count(name) == 0) stale.push_back(entry.path());
  }
  if (error) throw InputError({dir.string(), 0, "", ""}, "cannot list directory: " + error.message());
  // The index first: until it is gone it still names the old shards, which must stay readable.
  for (const fs::path& path : stale) {
    if (path.filename() == kIndexFileName) remove_file(path);
  }
  for (const fs::path& path : stale) {
    if (path.filename() != kIndexFileName) remove_file(path);
  }
}

// A weight_map file name must stay inside the checkpoint directory.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name.find("..") == std::string::npos &&
         name.find('\0') == std::string::npos && name != ".";
}

struct Index {
  std::map<std::string, std::vector<std::string>> tensors_by_file;  // shard file → tensor names
  std::map<std::string, std::string> file_by_tensor;                // the weight_map
  bool has_total_size = false;
  uint64_t total_size = 0;
};

Index read_index(const std::string& index_path) {
  const std::shared_ptr<const MappedFile> mapping = MappedFile::open(index_path);
  const char* text = reinterpret_cast<const char*>(mapping->data());
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text, text + mapping->size());
  } catch (const nlohmann::json::exception& e) {
    throw InputError({index_path, 0, "", ""}, std::string("not valid JSON: ") + e.what());
  }
  if (!json.is_object()) throw InputError({index_path, 0, "", ""}, "index must be a JSON object");

  Index index;
  if (json.contains("metadata")) {
    const nlohmann::json& metadata = json["metadata"];
    if (!metadata.is_object()) {
      throw InputError({index_path, 0, "metadata", metadata.dump()}, "metadata must be an object");
    }
    if (metadata.contains("total_size")) {
      const nlohmann::json& total = metadata["total_size"];
      if (!total.is_number_unsigned()) {
        throw InputError({index_path, 0, "metadata.total_size", total.dump()},
                         "total_size must be a non-negative integer");
      }
      index.has_total_size = true;
      index.total_size = total.get<uint64_t>();
    }
  }
  if (!json.contains("weight_map") || !json["weight_map"].is_object()) {
    throw InputError({index_path, 0, "weight_map", ""},
                     "index needs a weight_map object {tensor name: shard file name}");
  }
  for (const auto& item : json["weight_map"].items()) {
    if (!item.value().is_string()) {
      throw InputError({index_path, 0, item.key(), item.value().dump()},
                       "weight_map values must be shard file names");
    }
    const std::string& file = item.value().get_ref<const std::string&>();
    if (!is_plain_file_name(file)) {
      throw InputError({index_path, 0, item.key(), file},
                       "shard file name must be a plain name inside the checkpoint directory "
                       "(no '/' or '..')");
    }
    index.tensors_by_file[file].push_back(item.key());
    index.file_by_tensor[item.key()] = file;
  }
  return index;
}

safetensors::TensorMap load_sharded(const fs::path& dir, const std::string& index_path) {
  const Index index = read_index(index_path);
  safetensors::TensorMap tensors;
  uint64_t total_bytes = 0;
  for (const auto& [file_name, names] : index.tensors_by_file) {
    const std::string shard_path = (dir / file_name).string();
    std::error_code error;
    if (!fs::is_regular_file(shard_path, error)) {
      throw InputError({index_path, 0, names.front(), file_name},
                       "weight_map names a shard file that does not exist: " + shard_path);
    }
    const std::shared_ptr<safetensors::File> shard = safetensors::File::open(shard_path);
    for (const std::string& name : names) {
      if (!shard->contains(name)) {
        throw InputError({shard_path, 0, name, ""}, std::string("tensor is listed for this shard in ") +
                                                        kIndexFileName + " but the shard does not hold it");
      }
    }
    // A tensor the weight_map does not place here would be dropped (or loaded twice) silently.
    for (const safetensors::TensorInfo& info : shard->tensors()) {
      const auto listed = index.file_by_tensor.find(info.name);
      if (listed == index.file_by_tensor.end() || listed->second != file_name) {
        throw InputError(
            {shard_path, 0, info.name, ""},
            std::string("shard holds a tensor that ") + kIndexFileName +
                (listed == index.file_by_tensor.end() ? " does not list" : " places in " + listed->second));
      }
      tensors.emplace(info.name, shard->get(info.name));
      total_bytes += info.end - info.begin;
    }
  }
  if (index.has_total_size && index.total_size != total_bytes) {
    throw InputError(
        {index_path, 0, "metadata.total_size", std::to_string(index.total_size)},
        fmt::format("total_size differs from the {} bytes of tensors in the shards", total_bytes));
  }
  return tensors;
}

}  // namespace

void save(const std::string& dir, const safetensors::TensorMap& tensors, uint64_t max_shard_bytes,
          const safetensors::Metadata& metadata) {
  const fs::path directory(dir);
  std::error_code error;
  fs::create_directories(directory, error);
  if (error) throw InputError({dir, 0, "", ""}, "cannot create checkpoint directory: " + error.message());

  safetensors::Metadata shard_metadata = metadata;
  shard_metadata.emplace("format", "pt");  // a caller's own "format" wins

  uint64_t total_bytes = 0;
  for (const auto& [name, tensor] : tensors) {
    if (tensor.defined()) total_bytes += tensor_bytes(tensor);  // undefined: safetensors::save says so
  }
  if (total_bytes <= max_shard_bytes) {
    safetensors::save((directory / kSingleFileName).string(), tensors, shard_metadata);
    remove_stale_files(directory, {kSingleFileName});
    return;
  }

  const std::vector<safetensors::TensorMap> shards = plan_shards(tensors, max_shard_bytes);
  nlohmann::json weight_map = nlohmann::json::object();
  std::set<std::string> written;
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file_name = shard_file_name(i, shards.size());
    safetensors::save((directory / file_name).string(), shards[i], shard_metadata);
    for (const auto& item : shards[i]) weight_map[item.first] = file_name;
    written.insert(file_name);
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
  const std::string index_text = index.dump(2) + "\n";
  AtomicFileWriter out((directory / kIndexFileName).string());
  out.write(index_text.data(), index_text.size());
  out.commit();
  written.insert(kIndexFileName);
  remove_stale_files(directory, written);
}

safetensors::TensorMap load(const std::string& dir) {
  const fs::path directory(dir);
  std::error_code error;
  const fs::path index_path = directory / kIndexFileName;
  if (fs::exists(index_path, error)) return load_sharded(directory, index_path.string());
  const fs::path single_path = directory / kSingleFileName;
  if (fs::exists(single_path, error)) return safetensors::load(single_path.string());
  throw InputError({dir, 0, "", ""}, fmt::format("no {} or {} in this directory (not a checkpoint?)",
                                                 kSingleFileName, kIndexFileName));
}

}  // namespace lvrl::checkpoint
