// Qwen2.5-VL: vision tower + language model + LM head (docs/model.md), one module whose
// named_parameters() are the checkpoint's tensor names (visual.*, model.*, lm_head.*).
//
// The three ways the rest of lvrl runs it:
//  - scoring / training: hidden_states() over whole sequences, then token_logprobs() on the rows
//    that carry a loss (never full logits);
//  - generation: prefill() a batch of prompts into a KVCache, then decode() one token per row;
//  - preprocessing: encode_video() alone (its output is what the embedding cache stores).
// Video embeddings enter either as pixels (encoded here) or precomputed (the cache path); both are
// scattered into the <|video_pad|> rows in order, and the counts must match exactly.
#pragma once

#include <ATen/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <memory>
#include <vector>

#include "model/attention.h"
#include "model/kv_cache.h"
#include "model/qwen_config.h"
#include "model/rope.h"
#include "model/text_model.h"
#include "model/token_logprobs.h"
#include "model/vision.h"

namespace lvrl::model {

using PrefillProgress = std::function<void(int64_t done, int64_t total)>;

struct ModelInput {
  at::Tensor input_ids;       // [B, S] int64 (CPU or the model's device)
  at::Tensor attention_mask;  // [B, S], undefined = all valid; rows are right-padded
  // Videos in prompt order over the batch, as pixels or as precomputed embeddings (not both):
  at::Tensor pixel_values_videos;  // [Σ t·h·w, patch_dim] (video::patchify_video rows, concatenated)
  at::Tensor video_embeds;         // [Σ t·h·w/4, D]
  std::vector<GridTHW> video_grids;
  std::vector<double> second_per_grid_ts;  // per video; empty = 1.0 each
  TemporalRule temporal_rule = TemporalRule::FloatThenFloor;
};

class QwenVLImpl : public torch::nn::Module {
 public:
  explicit QwenVLImpl(const QwenConfig& config);

  const QwenConfig& config() const { return config_; }
  // One backend for both towers (sp/ installs its sequence-parallel one on the language model).
  void set_attention(std::shared_ptr<AttentionBackend> attention);
  void set_text_attention(std::shared_ptr<AttentionBackend> attention);

  at::Tensor encode_video(const at::Tensor& pixel_values,
                          const std::vector<GridTHW>& grids);  // → [Σ t·h·w/4, D]
  // Token embeddings with video embeddings scattered into the <|video_pad|> rows: [B, S, D].
  at::Tensor embed(const at::Tensor& input_ids, const at::Tensor& video_embeds);
  RopeIndex positions(const ModelInput& input) const;

  // Final-normed hidden states [B, S, D] of the whole sequences (training, scoring).
  at::Tensor hidden_states(const ModelInput& input);
  // The LM head's weight [V, D] (embed_tokens' when tied).
  at::Tensor lm_head_weight() const;
  at::Tensor logits(const at::Tensor& hidden) const;  // [..., D] → [..., V] float32; for few rows only

  // Runs the prompts into `cache` (rows right-padded by attention_mask) and returns the logits of
  // each row's last valid token, [B, V] float32. The cache must be empty. chunk > 0: the prompts go
  // through the model `chunk` tokens at a time (activation memory bounded by the chunk).
  // progress: called after each pass with (tokens done, total); may be empty.
  at::Tensor prefill(const ModelInput& input, DenseKVCache& cache, int64_t chunk = 0,
                     const PrefillProgress& progress = {});
  // One new token per row ([B] int64; the cache's rows, whichever kind) → next-token logits [B, V]
  // float32.
  at::Tensor decode(const at::Tensor& tokens, KVCache& cache);

  VisionTower visual{nullptr};
  TextModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // absent (nullptr) when tie_word_embeddings

 private:
  QwenConfig config_;
};
TORCH_MODULE(QwenVL);

// Normal(0, 0.02) for Linear/Conv/Embedding weights, zero biases, ones for norms; deterministic for
// a seed whatever the device.
void init_weights(QwenVLImpl& model, uint64_t seed);

}  // namespace lvrl::model
