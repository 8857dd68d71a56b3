// Qwen2 decoder with M-RoPE (docs/model.md#decoder-layer): embed_tokens → layers of RMSNorm / GQA
// attention (q/k/v with bias, o_proj without) / SwiGLU MLP (no biases) → final RMSNorm. The LM head
// is not here: callers ask model::QwenVL for log-probs or logits of the positions they need only.
#pragma once

#include <ATen/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <memory>

#include "model/attention.h"
#include "model/kv_cache.h"
#include "model/layers.h"
#include "model/qwen_config.h"
#include "model/rope.h"

namespace lvrl::model {

class TextAttentionImpl : public torch::nn::Module {
 public:
  explicit TextAttentionImpl(const TextConfig& config);
  // x [B, S, D]; rope tables [B, S, head_dim]. Without a cache: causal over the S tokens. With one:
  // the cache stores k/v and attends the S queries over the row's cached keys too (kv_cache.h).
  at::Tensor forward(const at::Tensor& x, const RopeTables& rope, AttentionBackend& attention, KVCache* cache,
                     int64_t layer);

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr};  // with bias
  torch::nn::Linear o_proj{nullptr};                                    // no bias
 private:
  int64_t heads_, kv_heads_, head_dim_;
};
TORCH_MODULE(TextAttention);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DecoderLayerImpl(const TextConfig& config);
  at::Tensor forward(const at::Tensor& x, const RopeTables& rope, AttentionBackend& attention, KVCache* cache,
                     int64_t layer);  // [B, S, D] → [B, S, D]

  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  TextAttention self_attn{nullptr};
  SwiGLU mlp{nullptr};
};
TORCH_MODULE(DecoderLayer);

class TextModelImpl : public torch::nn::Module {
 public:
  explicit TextModelImpl(const TextConfig& config);
  // inputs_embeds [B, S, D], positions [3, B, S] → final-normed hidden states [B, S, D].
  // With a cache the new tokens are stored in it (the caller advances the cache afterwards).
  at::Tensor forward(const at::Tensor& inputs_embeds, const at::Tensor& positions, KVCache* cache = nullptr);

  void set_attention(std::shared_ptr<AttentionBackend> attention) { attention_ = std::move(attention); }
  const std::shared_ptr<AttentionBackend>& attention() const { return attention_; }
  const TextConfig& config() const { return config_; }
  // Activation recompute (model/recompute.h): when on, a forward with grad enabled and no cache
  // keeps only each layer's input and reruns the layer in backward. Off by default.
  void set_recompute(bool recompute) { recompute_ = recompute; }
  bool recompute() const { return recompute_; }

  torch::nn::Embedding embed_tokens{nullptr};  // [V, D]
  torch::nn::ModuleList layers{nullptr};       // of DecoderLayer
  RMSNorm norm{nullptr};

 private:
  TextConfig config_;
  std::shared_ptr<AttentionBackend> attention_;
  bool recompute_ = false;
};
TORCH_MODULE(TextModel);

// Installs an attention backend on a language model for one scope and restores the model's own
// when it ends (an SP prefill or training step leaves decoding on the local backend).
class ScopedTextAttention {
 public:
  ScopedTextAttention(TextModelImpl& model, std::shared_ptr<AttentionBackend> attention)
      : model_(model), saved_(model.attention()) {
    model_.set_attention(std::move(attention));
  }
  ~ScopedTextAttention() { model_.set_attention(saved_); }
  ScopedTextAttention(const ScopedTextAttention&) = delete;
  ScopedTextAttention& operator=(const ScopedTextAttention&) = delete;

 private:
  TextModelImpl& model_;
  std::shared_ptr<AttentionBackend> saved_;
};

// Sets activation recompute for one scope (a training step) and restores the earlier setting when
// it ends, on an exception too.
class ScopedRecompute {
 public:
  ScopedRecompute(TextModelImpl& model, bool recompute) : model_(model), saved_(model.recompute()) {
    model_.set_recompute(recompute);
  }
  ~ScopedRecompute() { model_.set_recompute(saved_); }
  ScopedRecompute(const ScopedRecompute&) = delete;
  ScopedRecompute& operator=(const ScopedRecompute&) = delete;

 private:
  TextModelImpl& model_;
  bool saved_;
};

}  // namespace lvrl::model
