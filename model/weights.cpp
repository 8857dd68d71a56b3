#include "model/weights.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <filesystem>
#include <set>

#include "core/checkpoint.h"
#include "core/dtype_name.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/tensor_format.h"

namespace lvrl::model {

namespace {
bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string dtype_json_name(at::ScalarType dtype) {
  const char* name = float_dtype_name(dtype);
  if (name == nullptr)
    throw InputError({"", 0, "dtype", c10::toString(dtype)}, "not a floating-point dtype for weights");
  return name;
}
}  // namespace

std::string canonical_tensor_name(const std::string& name) {
  if (starts_with(name, "model.visual.")) return name.substr(6);                      // → visual.*
  if (starts_with(name, "model.language_model.")) return "model." + name.substr(21);  // → model.*
  return name;
}

namespace {
bool is_visual(const std::string& name) {
  return name.rfind("visual.", 0) == 0;
}

// Copies into the parameters `part` selects; a tensor of another part is refused like an unknown one.
void load_part(QwenVLImpl& model, const safetensors::TensorMap& tensors, const std::string& source,
               bool language_only) {
  std::map<std::string, std::pair<std::string, at::Tensor>> by_name;  // canonical → (stored name, tensor)
  for (const auto& [name, tensor] : tensors) {
    auto [it, fresh] = by_name.emplace(canonical_tensor_name(name), std::make_pair(name, tensor));
    if (!fresh) {
      throw InputError({source, 0, name, ""},
                       fmt::format("duplicates tensor '{}' under another naming scheme", it->second.first));
    }
  }
  at::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    if (language_only && is_visual(name)) continue;
    auto found = by_name.find(name);
    if (found == by_name.end()) {
      throw InputError({source, 0, name, ""}, "missing from the checkpoint");
    }
    const auto& [stored_name, tensor] = found->second;
    at::Tensor& param = item.value();
    if (!at::isFloatingType(tensor.scalar_type())) {
      throw InputError({source, 0, stored_name, c10::toString(tensor.scalar_type())},
                       "holds a non-floating-point dtype");
    }
    if (tensor.sizes() != param.sizes()) {
      throw InputError({source, 0, stored_name, fmt::format("{}", tensor.sizes())},
                       fmt::format("has the wrong shape; the model's config expects {}", param.sizes()));
    }
    param.copy_(tensor);
    used.insert(name);
  }
  for (const auto& [name, entry] : by_name) {
    if (used.count(name)) continue;
    if (name == "lm_head.weight" && model.config().text.tie_word_embeddings) {
      // Some exporters write the tied head anyway; accept it only if it is the embedding.
      if (at::equal(entry.second.to(at::kFloat), model.model->embed_tokens->weight.to(at::kFloat))) continue;
      throw InputError(
          {source, 0, entry.first, ""},
          "differs from model.embed_tokens.weight but the config ties them (tie_word_embeddings)");
    }
    if (language_only && is_visual(name)) {
      throw InputError({source, 0, entry.first, ""},
                       "is a vision-tower tensor; language-model weights never carry the frozen tower");
    }
    throw InputError({source, 0, entry.first, ""},
                     "is not a tensor of this model (Qwen2.5-VL with this config)");
  }
}
}  // namespace

void load_weights(QwenVLImpl& model, const safetensors::TensorMap& tensors, const std::string& source) {
  load_part(model, tensors, source, /*language_only=*/false);
}

void load_language_weights(QwenVLImpl& model, const safetensors::TensorMap& tensors,
                           const std::string& source) {
  load_part(model, tensors, source, /*language_only=*/true);
}

safetensors::TensorMap language_state_dict(const QwenVLImpl& model, c10::optional<at::ScalarType> dtype) {
  safetensors::TensorMap out = state_dict(model, dtype);
  for (auto it = out.begin(); it != out.end();) it = is_visual(it->first) ? out.erase(it) : std::next(it);
  return out;
}

void load_published_weights(QwenVLImpl& model, const std::string& path, const std::string& checksum) {
  const std::string actual = hash_file(path).hex();
  if (actual != checksum) {
    throw InputError({path, 0, "checksum", actual},
                     fmt::format("the published weights were announced with checksum {}", checksum));
  }
  load_language_weights(model, safetensors::load(path), path);
}

safetensors::TensorMap state_dict(const QwenVLImpl& model, c10::optional<at::ScalarType> dtype) {
  safetensors::TensorMap out;
  for (const auto& item : model.named_parameters()) {
    at::Tensor value = item.value().detach().to(at::kCPU);
    if (dtype) value = value.to(*dtype);
    out.emplace(item.key(), value.contiguous());
  }
  return out;
}

QwenVL load_model(const std::string& dir, at::ScalarType dtype, const at::Device& device) {
  QwenConfig config = QwenConfig::load(dir);
  QwenVL model(config);
  safetensors::TensorMap tensors = checkpoint::load(dir);
  load_weights(*model, tensors, dir);
  model->to(device, dtype);
  model->set_attention(make_default_attention(device));
  LVRL_DEBUG("loaded {} ({} tensors) as {} on {}", dir, tensors.size(), c10::toString(dtype), device.str());
  return model;
}

void save_model(const QwenVLImpl& model, const std::string& dir, c10::optional<at::ScalarType> dtype,
                uint64_t max_shard_bytes) {
  safetensors::TensorMap tensors = state_dict(model, dtype);
  QwenConfig config = model.config();
  config.torch_dtype = dtype_json_name(tensors.begin()->second.scalar_type());
  std::filesystem::create_directories(dir);
  checkpoint::save(dir, tensors, max_shard_bytes);
  config.save(dir);
}

}  // namespace lvrl::model
