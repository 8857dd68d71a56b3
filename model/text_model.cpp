#include "model/text_model.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/error.h"
#include "core/tensor_format.h"
#include "model/recompute.h"

namespace lvrl::model {

namespace {
torch::nn::Linear linear(int64_t in, int64_t out, bool bias) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}
}  // namespace

TextAttentionImpl::TextAttentionImpl(const TextConfig& config)
    : heads_(config.num_attention_heads),
      kv_heads_(config.num_key_value_heads),
      head_dim_(config.head_dim()) {
  q_proj = register_module("q_proj", linear(config.hidden_size, heads_ * head_dim_, true));
  k_proj = register_module("k_proj", linear(config.hidden_size, kv_heads_ * head_dim_, true));
  v_proj = register_module("v_proj", linear(config.hidden_size, kv_heads_ * head_dim_, true));
  o_proj = register_module("o_proj", linear(heads_ * head_dim_, config.hidden_size, false));
}

at::Tensor TextAttentionImpl::forward(const at::Tensor& x, const RopeTables& rope,
                                      AttentionBackend& attention, KVCache* cache, int64_t layer) {
  const int64_t batch = x.size(0), seq = x.size(1);
  at::Tensor q = apply_rotary(q_proj(x).view({batch, seq, heads_, head_dim_}), rope.cos, rope.sin);
  at::Tensor k = apply_rotary(k_proj(x).view({batch, seq, kv_heads_, head_dim_}), rope.cos, rope.sin);
  at::Tensor v = v_proj(x).view({batch, seq, kv_heads_, head_dim_});
  at::Tensor out;  // [B, S, H, hd]
  if (cache != nullptr) {
    out = cache->attend(layer, q, k, v, attention);
  } else {
    AttentionSpec spec;
    spec.mask = MaskKind::Causal;
    out = attention.forward(q, k, v, spec).out;
  }
  return o_proj(out.reshape({batch, seq, heads_ * head_dim_}));
}

DecoderLayerImpl::DecoderLayerImpl(const TextConfig& config) {
  input_layernorm = register_module("input_layernorm", RMSNorm(config.hidden_size, config.rms_norm_eps));
  self_attn = register_module("self_attn", TextAttention(config));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(config.hidden_size, config.rms_norm_eps));
  mlp = register_module("mlp", SwiGLU(config.hidden_size, config.intermediate_size, /*bias=*/false));
}

at::Tensor DecoderLayerImpl::forward(const at::Tensor& x, const RopeTables& rope, AttentionBackend& attention,
                                     KVCache* cache, int64_t layer) {
  at::Tensor h = x + self_attn->forward(input_layernorm(x), rope, attention, cache, layer);
  return h + mlp(post_attention_layernorm(h));
}

TextModelImpl::TextModelImpl(const TextConfig& config) : config_(config) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(config.vocab_size, config.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) layers->push_back(DecoderLayer(config));
  norm = register_module("norm", RMSNorm(config.hidden_size, config.rms_norm_eps));
  attention_ = make_blockwise_attention();
}

at::Tensor TextModelImpl::forward(const at::Tensor& inputs_embeds, const at::Tensor& positions,
                                  KVCache* cache) {
  LVRL_ASSERT(inputs_embeds.dim() == 3 && positions.dim() == 3 && positions.size(0) == 3 &&
                  positions.size(1) == inputs_embeds.size(0) && positions.size(2) == inputs_embeds.size(1),
              fmt::format("inputs_embeds {} with positions {}", inputs_embeds.sizes(), positions.sizes()));
  RopeTables rope = mrope_tables(config_, positions, inputs_embeds.scalar_type(), inputs_embeds.device());
  at::Tensor x = inputs_embeds;
  const bool recompute = recompute_ && cache == nullptr && at::GradMode::is_enabled();
  for (size_t i = 0; i < layers->size(); ++i) {
    const auto index = static_cast<int64_t>(i);
    if (recompute) {
      x = recompute_decoder_layer(DecoderLayer(layers->ptr<DecoderLayerImpl>(i)), x, rope, attention_, index);
    } else {
      x = layers[i]->as<DecoderLayer>()->forward(x, rope, *attention_, cache, index);
    }
  }
  return norm(x);
}

}  // namespace lvrl::model
