// Qwen2.5-VL's vision tower (docs/model.md#vision-tower): Conv3d patch embedding (no bias) → blocks of
// RMSNorm / 2-D-rotary attention / SwiGLU MLP → PatchMerger (2×2 patches → one LLM token).
//
// Most blocks attend inside windows of window_size pixels (4×4 merged units); the blocks in
// fullatt_block_indexes attend over a whole temporal slice. To make every window a contiguous run
// of rows, the tower permutes merged units into window order up front (window_index) and restores
// raster order after the merger. Attention never crosses temporal slices or inputs: both kinds of
// segment boundaries go to the attention backend as cu_seqlens.
#pragma once

#include <ATen/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <vector>

#include "model/attention.h"
#include "model/layers.h"
#include "model/qwen_config.h"
#include "model/rope.h"

namespace lvrl::model {

struct WindowPartition {
  at::Tensor window_index;       // [N/4] int64: merged unit ids (raster order) in window order
  at::Tensor cu_window_seqlens;  // [W+1] int64 patch offsets of the windows (empty windows dropped)
  at::Tensor cu_seqlens;         // [Σt + 1] int64 patch offsets of the temporal slices
};
// docs/model.md#window-partition; grids are patch grids (h, w even).
WindowPartition partition_windows(const VisionConfig& config, const std::vector<GridTHW>& grids);

// Module trees mirror transformers' so named_parameters() are the checkpoint names
// (visual.blocks.0.attn.qkv.weight).
class VisionAttentionImpl : public torch::nn::Module {
 public:
  explicit VisionAttentionImpl(const VisionConfig& config);
  // x [N, C]; cos/sin [N, head_dim] fp32 (q and k are rotated in fp32, then cast back to x's dtype;
  // a float64 tower rotates in float64);
  // cu_seqlens segment offsets (windows or temporal slices) → [N, C]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     const at::Tensor& cu_seqlens, AttentionBackend& attention);

  torch::nn::Linear qkv{nullptr};   // [3C, C] + bias: Q, K, V row blocks, head-major within each
  torch::nn::Linear proj{nullptr};  // [C, C] + bias
 private:
  int64_t heads_, head_dim_;
};
TORCH_MODULE(VisionAttention);

class VisionBlockImpl : public torch::nn::Module {
 public:
  explicit VisionBlockImpl(const VisionConfig& config);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     const at::Tensor& cu_seqlens, AttentionBackend& attention);  // [N, C] → [N, C]

  RMSNorm norm1{nullptr}, norm2{nullptr};
  VisionAttention attn{nullptr};
  SwiGLU mlp{nullptr};  // gate_proj, up_proj, down_proj with biases
};
TORCH_MODULE(VisionBlock);

class PatchEmbedImpl : public torch::nn::Module {
 public:
  explicit PatchEmbedImpl(const VisionConfig& config);
  at::Tensor forward(const at::Tensor& pixel_values);  // [N, patch_dim] → [N, C] in the weight's dtype

  torch::nn::Conv3d proj{nullptr};  // [C, 3, 2, 14, 14], no bias
 private:
  VisionConfig config_;
};
TORCH_MODULE(PatchEmbed);

class PatchMergerImpl : public torch::nn::Module {
 public:
  explicit PatchMergerImpl(const VisionConfig& config);
  at::Tensor forward(const at::Tensor& x);  // [N, C] → [N/4, out_hidden_size]

  RMSNorm ln_q{nullptr};
  torch::nn::Sequential mlp{nullptr};  // 0: Linear 4C→4C, 1: GELU (erf), 2: Linear 4C→out_hidden_size
};
TORCH_MODULE(PatchMerger);

class VisionTowerImpl : public torch::nn::Module {
 public:
  explicit VisionTowerImpl(const VisionConfig& config);
  // pixel_values [N, patch_dim] (video::patchify_video rows, any float dtype; cast to the tower's),
  // grids one per input → [N/4, out_hidden_size] in raster unit order, inputs concatenated.
  at::Tensor forward(const at::Tensor& pixel_values, const std::vector<GridTHW>& grids);

  void set_attention(std::shared_ptr<AttentionBackend> attention) { attention_ = std::move(attention); }
  const VisionConfig& config() const { return config_; }

  PatchEmbed patch_embed{nullptr};
  torch::nn::ModuleList blocks{nullptr};  // of VisionBlock
  PatchMerger merger{nullptr};

 private:
  VisionConfig config_;
  std::shared_ptr<AttentionBackend> attention_;
};
TORCH_MODULE(VisionTower);

}  // namespace lvrl::model
