#include "model/model_config.h"

#include <ATen/Context.h>
#include <c10/util/Exception.h>

#include <optional>

#include "core/dtype_name.h"
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
}  // namespace

ModelSettings model_settings_from(const Config& config) {
  ModelSettings out;
  out.path = config.get<std::string>("model.path");
  const std::string& dtype_name = config.get<std::string>("model.dtype");
  out.dtype = parse_float_dtype(dtype_name, {c10::kFloat, c10::kBFloat16, c10::kHalf, c10::kDouble},
                                {config.source_of("model.dtype"), 0, "model.dtype", ""});
  const std::string& device_name = config.get<std::string>("model.device");
  std::optional<c10::Device> device;
  try {
    device.emplace(device_name);
  } catch (const c10::Error&) {  // c10::Device parses the name and rejects others this way
    throw InputError({config.source_of("model.device"), 0, "model.device", device_name},
                     "expected cpu, cuda or cuda:N");
  }
  if (device->is_cuda() && !at::hasCUDA()) {
    throw InputError({config.source_of("model.device"), 0, "model.device", device_name},
                     "this build or machine has no CUDA device");
  }
  if (!device->is_cpu() && !device->is_cuda()) {
    throw InputError({config.source_of("model.device"), 0, "model.device", device_name},
                     "expected cpu, cuda or cuda:N");
  }
  out.device = *device;
  return out;
}

}  // namespace lvrl::model
