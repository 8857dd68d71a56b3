#include "model/model_config.h"

#include <ATen/Context.h>

#include <optional>

#include "core/error.h"

namespace lvrl::model {
namespace {

const RegisterConfigSection model_section(
    {"model",
     "The Qwen2.5-VL checkpoint (Hugging Face layout directory)",
     {
         ConfigKey::string("path", "", "checkpoint directory: config.json + model.safetensors (or shards)"),
         ConfigKey::string("dtype", "float32", "compute dtype (bfloat16 on GPUs; CPUs want float32)")
             .choices({"float32", "bfloat16", "float16", "float64"}),
         ConfigKey::string("device", "cpu", "where the model runs: cpu, cuda, cuda:N"),
     }});

// Where a key's value came from, for errors: the file and line, "override", or "" for a default.
std::string source_of(const Config& config, const std::string& key) {
  const std::string& origin = config.origin(key);
  return origin == "default" ? "" : origin;
}

}  // namespace

ModelSettings model_settings_from(const Config& config) {
  ModelSettings out;
  out.path = config.get<std::string>("model.path");
  const std::string& dtype_name = config.get<std::string>("model.dtype");
  out.dtype = dtype_name == "bfloat16"  ? c10::kBFloat16
              : dtype_name == "float16" ? c10::kHalf
              : dtype_name == "float64" ? c10::kDouble
                                        : c10::kFloat;
  const std::string& device_name = config.get<std::string>("model.device");
  std::optional<c10::Device> device;
  try {
    device.emplace(device_name);
  } catch (const std::exception&) {
    throw InputError({source_of(config, "model.device"), 0, "model.device", device_name},
                     "expected cpu, cuda or cuda:N");
  }
  if (device->is_cuda() && !at::hasCUDA()) {
    throw InputError({source_of(config, "model.device"), 0, "model.device", device_name},
                     "this build or machine has no CUDA device");
  }
  if (!device->is_cpu() && !device->is_cuda()) {
    throw InputError({source_of(config, "model.device"), 0, "model.device", device_name},
                     "expected cpu, cuda or cuda:N");
  }
  out.device = *device;
  return out;
}

}  // namespace lvrl::model
