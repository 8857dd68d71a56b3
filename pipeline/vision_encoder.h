// The frozen vision tower alone, as preprocessing runs it.
//
// Loading a whole Qwen2.5-VL to run its vision tower would read and convert the language model too
// (15 GB for 7B), so only the visual.* tensors are read: checkpoint tensors are views of mmap'd
// files, and the rest are never touched. The checks are load_weights' (model/weights.h) for that
// part of the checkpoint: every tower tensor present with its exact shape, no visual.* tensor the
// tower does not have.
//
// The fingerprint (cache/content_key.h) covers the weights as they compute — after the conversion
// to the compute dtype — so bf16 and fp32 embeddings of one checkpoint never share a cache key.
#pragma once

#include <ATen/Tensor.h>
#include <c10/core/Device.h>

#include <map>
#include <string>

#include "core/config.h"
#include "model/vision.h"
#include "video/qwen_preprocess.h"

namespace lvrl::pipeline {

class VisionEncoder {
 public:
  // DIR/config.json + the checkpoint's visual.* tensors, converted to `dtype` on `device`.
  // InputErrors name the checkpoint and tensor.
  static VisionEncoder load(const std::string& dir, at::ScalarType dtype, const at::Device& device);
  // A tower that already holds its weights (benchmarks, tests): moved to `dtype` on `device`.
  VisionEncoder(model::VisionTower tower, at::ScalarType dtype, const at::Device& device);

  // patches of one video → [t·h·w/4, out_hidden_size] embeddings, CPU, contiguous, compute dtype.
  at::Tensor encode(const video::PixelPatches& patches);

  const model::VisionConfig& config() const { return tower_->config(); }
  // The tower itself, in eval mode on device() in dtype(): for encoders that split the work
  // (pipeline/sharded_encoder.h).
  model::VisionTowerImpl& tower() { return *tower_; }
  // The patch layout patchify_video must produce for this tower.
  video::QwenVisionParams vision_params() const;
  const std::string& fingerprint() const { return fingerprint_; }  // 32 hex digits
  at::ScalarType dtype() const { return dtype_; }
  const at::Device& device() const { return device_; }

 private:
  model::VisionTower tower_;
  at::ScalarType dtype_;
  at::Device device_;
  std::string fingerprint_;
};

// The patch layout patchify_video must produce for a tower of this config.
video::QwenVisionParams vision_params_of(const model::VisionConfig& config);

// The `model` section (model/model_config.h): model.path, model.dtype, model.device → the encoder.
// An empty model.path, an unknown device or a device this build cannot use: InputError naming the key.
// local_rank ≥ 0 (one of several ranks on this machine): a model.device of `cuda` without an index
// becomes cuda:local_rank, so each local rank computes on its own GPU.
VisionEncoder load_vision_encoder(const Config& config, int local_rank = -1);

// The tower's parameters under their checkpoint names (visual.*), CPU, contiguous: what
// encoder_fingerprint hashes — the same tensors as the visual.* entries of model::state_dict.
std::map<std::string, at::Tensor> visual_state_dict(const model::VisionTowerImpl& tower);

}  // namespace lvrl::pipeline
