// Qwen2.5-VL checkpoints in HF layout (docs/model.md#checkpoint-weights): config.json + safetensors (one
// file or shards with an index), tokenizer files beside them.
//
// Loading accepts the original hub names (visual.*, model.*, lm_head.*) and the names of newer
// transformers (model.visual.*, model.language_model.*); a tied model has no lm_head and an untied
// one without it is an error. Every model tensor must be present with its exact shape; a tensor the
// model does not have is an error too (a checkpoint of another architecture must not half-load).
// Stored dtype (BF16 in real checkpoints) converts to the compute dtype on load.
#pragma once

#include <ATen/Tensor.h>

#include <string>

#include "core/safetensors.h"
#include "model/qwen_vl.h"

namespace lvrl::model {

// Checkpoint names → the model's names (visual.*, model.*, lm_head.*).
std::string canonical_tensor_name(const std::string& name);

// Copies `tensors` into the model's parameters. `source` names the checkpoint in errors
// (InputError with key = the tensor name: missing, unexpected, wrong shape, non-float dtype).
void load_weights(QwenVLImpl& model, const safetensors::TensorMap& tensors, const std::string& source);
// The language model alone (model.*, lm_head.*): every such parameter must be present; visual.*
// tensors are refused and the vision tower is left untouched. What a trainer publishes each step
// and a running rollout model swaps in.
void load_language_weights(QwenVLImpl& model, const safetensors::TensorMap& tensors,
                           const std::string& source);
// A published weight file (safetensors of language_state_dict) whose xxh128 must equal `checksum`
// (InputError naming the file otherwise), loaded with load_language_weights.
void load_published_weights(QwenVLImpl& model, const std::string& path, const std::string& checksum);
// The parameters under their checkpoint names (hub layout), converted to `dtype` (undefined = as is).
safetensors::TensorMap state_dict(const QwenVLImpl& model,
                                  c10::optional<at::ScalarType> dtype = c10::nullopt);

// state_dict without visual.*.
safetensors::TensorMap language_state_dict(const QwenVLImpl& model,
                                           c10::optional<at::ScalarType> dtype = c10::nullopt);

// DIR/config.json + weights → a model in `dtype` on `device`.
QwenVL load_model(const std::string& dir, at::ScalarType dtype, const at::Device& device);
// Writes config.json (torch_dtype = the stored dtype) and the weights (sharded above
// max_shard_bytes). Saving a loaded model unchanged in its own dtype reproduces the tensors bit for bit.
void save_model(const QwenVLImpl& model, const std::string& dir,
                c10::optional<at::ScalarType> dtype = c10::nullopt, uint64_t max_shard_bytes = 5ull << 30);

}  // namespace lvrl::model
