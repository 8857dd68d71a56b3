// The tower's forward mirrors transformers' Qwen2_5_VisionTransformerPretrainedModel.forward
// (docs/model.md#vision-forward) step by step, so a bf16 run rounds where the reference rounds: the conv on
// bf16 pixels, the fp32 rotary tables and q/k rotation, RMSNorm's cast before the weight, exact-erf
// GELU in the merger. A float64 tower computes everything (rotation, cos/sin of the fp32 angles)
// in float64, which is what the reference tests compare against.
#include "model/vision.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/nn/modules/activation.h>

#include <algorithm>

#include "core/error.h"

namespace lvrl::model {
namespace {

// Rotation and cos/sin run in fp32 for every activation dtype except float64.
at::ScalarType rotary_dtype(at::ScalarType activation) {
  return activation == at::kDouble ? at::kDouble : at::kFloat;
}

void check_grids(const VisionConfig& config, const std::vector<GridTHW>& grids) {
  for (size_t i = 0; i < grids.size(); ++i) {
    const GridTHW& grid = grids[i];
    if (grid[0] <= 0 || grid[1] <= 0 || grid[2] <= 0 || grid[1] % config.spatial_merge_size != 0 ||
        grid[2] % config.spatial_merge_size != 0) {
      throw InputError(
          {"", 0, fmt::format("grid_thw[{}]", i), fmt::format("({}, {}, {})", grid[0], grid[1], grid[2])},
          fmt::format("expected positive t, h, w with h and w multiples of spatial_merge_size {}",
                      config.spatial_merge_size));
    }
  }
}

at::Tensor int64_tensor(const std::vector<int64_t>& values) {
  return at::tensor(at::ArrayRef<int64_t>(values), at::kLong);
}

}  // namespace

WindowPartition partition_windows(const VisionConfig& config, const std::vector<GridTHW>& grids) {
  check_grids(config, grids);
  const int64_t merge = config.spatial_merge_size;
  const int64_t unit = config.merge_units();
  const int64_t ws = config.window_size / merge / config.patch_size;  // window side in merged units
  LVRL_ASSERT(ws > 0, "window_size must cover at least one merged unit (QwenConfig::validate)");

  std::vector<int64_t> window_index;
  std::vector<int64_t> cu_windows = {0};
  std::vector<int64_t> cu_slices = {0};
  int64_t unit_offset = 0;
  for (const GridTHW& grid : grids) {
    const int64_t t = grid[0], lh = grid[1] / merge, lw = grid[2] / merge;
    // transformers pads by ws - (l mod ws), a whole extra window row/column when l is a multiple
    // of ws; those windows are empty and dropped below, exactly as unique_consecutive drops them.
    const int64_t windows_h = (lh + ws - lh % ws) / ws, windows_w = (lw + ws - lw % ws) / ws;
    for (int64_t s = 0; s < t; ++s) {
      for (int64_t wh = 0; wh < windows_h; ++wh) {
        for (int64_t ww = 0; ww < windows_w; ++ww) {
          int64_t count = 0;
          for (int64_t r = wh * ws; r < std::min(lh, (wh + 1) * ws); ++r) {
            for (int64_t c = ww * ws; c < std::min(lw, (ww + 1) * ws); ++c, ++count) {
              window_index.push_back(unit_offset + (s * lh + r) * lw + c);
            }
          }
          if (count > 0) cu_windows.push_back(cu_windows.back() + count * unit);
        }
      }
      cu_slices.push_back(cu_slices.back() + grid[1] * grid[2]);
    }
    unit_offset += t * lh * lw;
  }
  return {int64_tensor(window_index), int64_tensor(cu_windows), int64_tensor(cu_slices)};
}

VisionAttentionImpl::VisionAttentionImpl(const VisionConfig& config)
    : heads_(config.num_heads), head_dim_(config.head_dim()) {
  const int64_t c = config.hidden_size;
  qkv = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(c, 3 * c).bias(true)));
  proj = register_module("proj", torch::nn::Linear(torch::nn::LinearOptions(c, c).bias(true)));
}

at::Tensor VisionAttentionImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                        const at::Tensor& cu_seqlens, AttentionBackend& attention) {
  const int64_t n = x.size(0);
  at::Tensor packed = qkv(x).view({n, 3, heads_, head_dim_});  // [N, 3, H, Dh]
  const at::ScalarType compute = rotary_dtype(x.scalar_type());
  at::Tensor c = cos.to(compute).unsqueeze(0);  // [1, N, Dh]
  at::Tensor s = sin.to(compute).unsqueeze(0);
  auto rotate = [&](int64_t which) {  // → [1, N, H, Dh] in x's dtype
    return apply_rotary(packed.select(1, which).to(compute).unsqueeze(0), c, s)
        .to(x.scalar_type())
        .contiguous();
  };
  at::Tensor q = rotate(0), k = rotate(1);
  at::Tensor v = packed.select(1, 2).unsqueeze(0).contiguous();
  AttentionSpec spec;
  spec.mask = MaskKind::Full;
  spec.cu_seqlens = cu_seqlens;
  at::Tensor out = attention.forward(q, k, v, spec).out;  // [1, N, H, Dh]
  return proj(out.reshape({n, heads_ * head_dim_}));
}

VisionBlockImpl::VisionBlockImpl(const VisionConfig& config) {
  norm1 = register_module("norm1", RMSNorm(config.hidden_size, config.rms_norm_eps));
  norm2 = register_module("norm2", RMSNorm(config.hidden_size, config.rms_norm_eps));
  attn = register_module("attn", VisionAttention(config));
  mlp = register_module("mlp", SwiGLU(config.hidden_size, config.intermediate_size, /*bias=*/true));
}

at::Tensor VisionBlockImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                    const at::Tensor& cu_seqlens, AttentionBackend& attention) {
  at::Tensor h = x + attn->forward(norm1(x), cos, sin, cu_seqlens, attention);
  return h + mlp(norm2(h));
}

PatchEmbedImpl::PatchEmbedImpl(const VisionConfig& config) : config_(config) {
  const int64_t p = config.patch_size, tp = config.temporal_patch_size;
  proj = register_module(
      "proj", torch::nn::Conv3d(torch::nn::Conv3dOptions(config.in_channels, config.hidden_size, {tp, p, p})
                                    .stride({tp, p, p})
                                    .bias(false)));
}

at::Tensor PatchEmbedImpl::forward(const at::Tensor& pixel_values) {
  if (pixel_values.dim() != 2 || pixel_values.size(1) != config_.patch_dim()) {
    throw InputError({"", 0, "pixel_values", c10::str(pixel_values.sizes())},
                     fmt::format("expected [N, {}] patch rows", config_.patch_dim()));
  }
  const at::Tensor& weight = proj->weight;  // [C, in, tp, p, p]
  // Each row is one Conv3d input voxel block; the conv (rather than a matmul) rounds as transformers does.
  at::Tensor voxels = pixel_values.to(weight.device(), weight.scalar_type())
                          .reshape({-1, config_.in_channels, config_.temporal_patch_size, config_.patch_size,
                                    config_.patch_size});
  at::Tensor out = at::conv3d(voxels, weight, {}, weight.sizes().slice(2));  // [N, C, 1, 1, 1]
  return out.reshape({-1, config_.hidden_size});
}

PatchMergerImpl::PatchMergerImpl(const VisionConfig& config) {
  const int64_t merged = config.hidden_size * config.merge_units();
  ln_q = register_module("ln_q", RMSNorm(config.hidden_size, config.rms_norm_eps));
  mlp = register_module(
      "mlp", torch::nn::Sequential(
                 torch::nn::Linear(torch::nn::LinearOptions(merged, merged).bias(true)),
                 torch::nn::GELU(torch::nn::GELUOptions().approximate("none")),
                 torch::nn::Linear(torch::nn::LinearOptions(merged, config.out_hidden_size).bias(true))));
}

at::Tensor PatchMergerImpl::forward(const at::Tensor& x) {
  at::Tensor normed = ln_q(x);  // [N, C]
  const int64_t merged = mlp[0]->as<torch::nn::Linear>()->options.in_features();
  return mlp->forward(normed.reshape({-1, merged}));  // [N/4, out]
}

VisionTowerImpl::VisionTowerImpl(const VisionConfig& config) : config_(config) {
  patch_embed = register_module("patch_embed", PatchEmbed(config));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.depth; ++i) blocks->push_back(VisionBlock(config));
  merger = register_module("merger", PatchMerger(config));
  attention_ = make_blockwise_attention();
}

at::Tensor VisionTowerImpl::forward(const at::Tensor& pixel_values, const std::vector<GridTHW>& grids) {
  check_grids(config_, grids);
  int64_t patches = 0;
  for (const GridTHW& grid : grids) patches += grid[0] * grid[1] * grid[2];
  if (pixel_values.dim() != 2 || pixel_values.size(0) != patches) {
    throw InputError({"", 0, "pixel_values", c10::str(pixel_values.sizes())},
                     fmt::format("expected {} patch rows (Σ t·h·w of the grids)", patches));
  }
  LVRL_ASSERT(attention_ != nullptr, "the vision tower has no attention backend");

  at::Tensor x = patch_embed(pixel_values);  // [N, C]
  const int64_t n = x.size(0), unit = config_.merge_units();
  const WindowPartition partition = partition_windows(config_, grids);
  // Window order: every window (and every temporal slice) becomes a contiguous run of rows.
  const at::Tensor window_index = partition.window_index.to(x.device());  // [N/4]
  auto to_window_order = [&](const at::Tensor& rows) {                    // [N, F] → [N, F]
    return rows.reshape({n / unit, unit, -1}).index_select(0, window_index).reshape({n, -1});
  };
  x = to_window_order(x);
  at::Tensor angles = to_window_order(vision_rotary_angles(config_, grids).to(x.device()));  // [N, Dh/2] fp32
  at::Tensor emb = at::cat({angles, angles}, -1).to(rotary_dtype(x.scalar_type()));          // [N, Dh]
  const at::Tensor cos = emb.cos(), sin = emb.sin();

  for (int64_t i = 0; i < config_.depth; ++i) {
    const bool full = std::find(config_.fullatt_block_indexes.begin(), config_.fullatt_block_indexes.end(),
                                i) != config_.fullatt_block_indexes.end();
    const at::Tensor& cu = full ? partition.cu_seqlens : partition.cu_window_seqlens;
    x = blocks[i]->as<VisionBlock>()->forward(x, cos, sin, cu, *attention_);
  }
  at::Tensor merged = merger(x);  // [N/4, out] in window order
  return merged.index_select(0, at::argsort(window_index));
}

}  // namespace lvrl::model
