// The `model` config section: the Qwen2.5-VL checkpoint every job of a run loads (preprocess reads
// only its vision tower; rollout and the trainer the whole model), and the dtype and device it
// computes in. One declaration here, so every job reads the same keys with the same checks.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

#include "core/config.h"

namespace lvrl::model {

struct ModelSettings {
  std::string path;                             // model.path: checkpoint directory; "" when unset
  c10::ScalarType dtype = c10::kFloat;          // model.dtype
  c10::Device device = c10::Device(c10::kCPU);  // model.device, as written ("cuda" keeps no index)
};

// model.* → settings. An unknown device, or a CUDA device this build or machine cannot use, is an
// InputError naming model.device and where its value came from. An empty model.path is returned
// as is: the job that needs a checkpoint says why.
ModelSettings model_settings_from(const Config& config);

}  // namespace lvrl::model
