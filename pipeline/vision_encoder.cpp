#include "pipeline/vision_encoder.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <map>
#include <set>

#include "cache/content_key.h"
#include "core/checkpoint.h"
#include "core/error.h"
#include "core/log.h"
#include "core/tensor_format.h"
#include "model/attention.h"
#include "model/model_config.h"
#include "model/qwen_config.h"
#include "model/weights.h"

namespace lvrl::pipeline {
namespace {
const std::string kPrefix = "visual.";
}  // namespace

std::map<std::string, at::Tensor> visual_state_dict(const model::VisionTowerImpl& tower) {
  std::map<std::string, at::Tensor> out;
  for (const auto& item : tower.named_parameters()) {
    out.emplace(kPrefix + item.key(), item.value().detach().to(at::kCPU).contiguous());
  }
  return out;
}

VisionEncoder::VisionEncoder(model::VisionTower tower, at::ScalarType dtype, const at::Device& device)
    : tower_(std::move(tower)), dtype_(dtype), device_(device) {
  tower_->to(device_, dtype_);
  tower_->eval();
  tower_->set_attention(model::make_default_attention(device_));
  fingerprint_ = cache::encoder_fingerprint(visual_state_dict(*tower_));
}

VisionEncoder VisionEncoder::load(const std::string& dir, at::ScalarType dtype, const at::Device& device) {
  model::QwenConfig config = model::QwenConfig::load(dir);
  model::VisionTower tower(config.vision);
  safetensors::TensorMap tensors = checkpoint::load(dir);

  std::map<std::string, std::pair<std::string, at::Tensor>> visual;  // canonical name → (stored name, tensor)
  for (const auto& [name, tensor] : tensors) {
    std::string canonical = model::canonical_tensor_name(name);
    if (canonical.compare(0, kPrefix.size(), kPrefix) != 0) continue;  // the language model: never read
    auto [it, fresh] = visual.emplace(canonical, std::make_pair(name, tensor));
    if (!fresh) {
      throw InputError({dir, 0, name, ""},
                       fmt::format("duplicates tensor '{}' under another naming scheme", it->second.first));
    }
  }
  at::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& item : tower->named_parameters()) {
    const std::string name = kPrefix + item.key();
    auto found = visual.find(name);
    if (found == visual.end()) throw InputError({dir, 0, name, ""}, "missing from the checkpoint");
    const auto& [stored_name, tensor] = found->second;
    if (!at::isFloatingType(tensor.scalar_type())) {
      throw InputError({dir, 0, stored_name, c10::toString(tensor.scalar_type())},
                       "holds a non-floating-point dtype");
    }
    if (tensor.sizes() != item.value().sizes()) {
      throw InputError(
          {dir, 0, stored_name, fmt::format("{}", tensor.sizes())},
          fmt::format("has the wrong shape; the model's config expects {}", item.value().sizes()));
    }
    item.value().copy_(tensor);
    used.insert(name);
  }
  for (const auto& [name, entry] : visual) {
    if (used.count(name) == 0) {
      throw InputError({dir, 0, entry.first, ""},
                       "is not a tensor of this vision tower (Qwen2.5-VL with this config)");
    }
  }
  LVRL_DEBUG("loaded the vision tower of {} ({} tensors) as {} on {}", dir, used.size(), c10::toString(dtype),
             device.str());
  return VisionEncoder(tower, dtype, device);
}

VisionEncoder load_vision_encoder(const Config& config, int local_rank) {
  model::ModelSettings settings = model::model_settings_from(config);
  if (settings.path.empty()) {
    throw InputError({config.source_of("model.path"), 0, "model.path", ""},
                     "expected the checkpoint directory whose vision tower encodes the videos");
  }
  if (local_rank >= 0 && settings.device.is_cuda() && !settings.device.has_index()) {
    settings.device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  }
  return VisionEncoder::load(settings.path, settings.dtype, settings.device);
}

video::QwenVisionParams vision_params_of(const model::VisionConfig& config) {
  video::QwenVisionParams params;
  params.patch_size = static_cast<int>(config.patch_size);
  params.temporal_patch_size = static_cast<int>(config.temporal_patch_size);
  params.merge_size = static_cast<int>(config.spatial_merge_size);
  return params;
}

video::QwenVisionParams VisionEncoder::vision_params() const {
  return vision_params_of(config());
}

at::Tensor VisionEncoder::encode(const video::PixelPatches& patches) {
  at::NoGradGuard no_grad;
  at::Tensor embeddings = tower_->forward(patches.pixel_values.to(device_), {patches.grid_thw});
  return embeddings.to(at::kCPU).contiguous();
}

}  // namespace lvrl::pipeline
