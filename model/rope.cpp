// get_rope_index follows transformers' Qwen2_5_VLModel.get_rope_index (docs/model.md#3-d-position-ids) on the
// valid (mask 1) tokens of each row, with one difference: where transformers jumps over t·h·w/4
// tokens without looking, we check that the block really holds that many pad tokens, because a
// mismatch would otherwise surface later as a silently misaligned embedding merge.
#include "model/rope.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace lvrl::model {
namespace {

std::string grid_string(const GridTHW& grid) {
  return fmt::format("({}, {}, {})", grid[0], grid[1], grid[2]);
}

// τ_pos of temporal grid index τ (docs/model.md#3-d-position-ids).
int64_t temporal_position(int64_t tau, double second_per_grid_t, double tokens_per_second,
                          TemporalRule rule) {
  if (rule == TemporalRule::IntegerCastFirst) {
    // torch.as_tensor(second_per_grid_t, dtype=int64) truncates first; then × tokens_per_second, .long().
    const auto whole = static_cast<int64_t>(second_per_grid_t);
    return static_cast<int64_t>(std::floor(static_cast<double>(tau * whole) * tokens_per_second));
  }
  return static_cast<int64_t>(std::floor(static_cast<double>(tau) * second_per_grid_t * tokens_per_second));
}

}  // namespace

RopeIndex get_rope_index(const QwenConfig& config, const RopeIndexInput& input) {
  LVRL_ASSERT(input.input_ids.defined() && input.input_ids.dim() == 2, "input_ids must be [B, S]");
  const at::Tensor ids = input.input_ids.to(at::kCPU, at::kLong).contiguous();
  const int64_t batch = ids.size(0), length = ids.size(1);
  at::Tensor mask = input.attention_mask.defined() ? input.attention_mask.to(at::kCPU, at::kLong).contiguous()
                                                   : at::ones({batch, length}, at::kLong);
  LVRL_ASSERT(mask.sizes() == ids.sizes(), "attention_mask must have input_ids' shape");
  if (!input.second_per_grid_ts.empty() && input.second_per_grid_ts.size() != input.video_grids.size()) {
    throw InputError({"", 0, "second_per_grid_ts", std::to_string(input.second_per_grid_ts.size())},
                     fmt::format("expected one value per video ({} videos)", input.video_grids.size()));
  }

  const int64_t merge = config.vision.spatial_merge_size;
  const bool text_only = input.image_grids.empty() && input.video_grids.empty();
  at::Tensor positions = at::ones({3, batch, length}, at::kLong);
  at::Tensor deltas = at::zeros({batch}, at::kLong);
  auto id_at = ids.accessor<int64_t, 2>();
  auto mask_at = mask.accessor<int64_t, 2>();
  auto pos_at = positions.accessor<int64_t, 3>();
  auto delta_at = deltas.accessor<int64_t, 1>();
  size_t next_image = 0, next_video = 0;

  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int64_t> valid;  // column of each valid token
    for (int64_t s = 0; s < length; ++s) {
      if (mask_at[b][s] != 0) valid.push_back(s);
    }
    const int64_t n = static_cast<int64_t>(valid.size());
    int64_t next = 0;  // max id so far + 1
    auto set = [&](int64_t i, int64_t t, int64_t h, int64_t w) {
      pos_at[0][b][valid[i]] = t;
      pos_at[1][b][valid[i]] = h;
      pos_at[2][b][valid[i]] = w;
    };
    for (int64_t i = 0; i < n;) {
      const int64_t token = id_at[b][valid[i]];
      const bool is_image = token == config.image_token_id, is_video = token == config.video_token_id;
      const bool opens_block = i > 0 && id_at[b][valid[i - 1]] == config.vision_start_token_id;
      if (!is_image && !is_video) {
        set(i, next, next, next);
        ++next, ++i;
        continue;
      }
      const char* kind = is_image ? "image" : "video";
      if (!opens_block) {
        throw InputError({"", 0, "input_ids", fmt::format("row {}, token {}", b, valid[i])},
                         fmt::format("a <|{}_pad|> token outside a <|vision_start|> block", kind));
      }
      int64_t run = 0;
      while (i + run < n && id_at[b][valid[i + run]] == token) ++run;
      const std::vector<GridTHW>& grids = is_image ? input.image_grids : input.video_grids;
      size_t& grid_index = is_image ? next_image : next_video;
      if (grid_index >= grids.size()) {
        throw InputError(
            {"", 0, fmt::format("{}_grids", kind), std::to_string(grids.size())},
            fmt::format("more {} blocks in input_ids than grids: {} block {} (row {}, token {}) has no grid",
                        kind, kind, grid_index, b, valid[i]));
      }
      const GridTHW grid = grids[grid_index];
      if (grid[0] <= 0 || grid[1] <= 0 || grid[2] <= 0 || grid[1] % merge != 0 || grid[2] % merge != 0) {
        throw InputError({"", 0, fmt::format("{}_grids[{}]", kind, grid_index), grid_string(grid)},
                         fmt::format("expected positive t and h, w multiples of {}", merge));
      }
      const int64_t lh = grid[1] / merge, lw = grid[2] / merge;
      const int64_t expected = grid[0] * lh * lw;
      if (run != expected) {
        throw InputError(
            {"", 0, fmt::format("{}_grids[{}]", kind, grid_index), grid_string(grid)},
            fmt::format("{} block {} (row {}, token {}) has {} <|{}_pad|> tokens but its grid needs {}", kind,
                        grid_index, b, valid[i], run, kind, expected));
      }
      double second_per_grid_t = 1.0;
      if (is_video && !input.second_per_grid_ts.empty())
        second_per_grid_t = input.second_per_grid_ts[grid_index];
      const int64_t start = next;
      int64_t block_max = start;
      int64_t k = i;
      for (int64_t tau = 0; tau < grid[0]; ++tau) {
        const int64_t t = is_image ? 0
                                   : temporal_position(tau, second_per_grid_t,
                                                       config.vision.tokens_per_second, input.temporal_rule);
        for (int64_t r = 0; r < lh; ++r) {
          for (int64_t c = 0; c < lw; ++c, ++k) {
            set(k, start + t, start + r, start + c);
            block_max = std::max({block_max, start + t, start + r, start + c});
          }
        }
      }
      ++grid_index;
      i += run;
      next = block_max + 1;
    }
    int64_t max_id = next - 1;  // -1 for a row without valid tokens
    // transformers' text-only path takes the max over the whole row, padding's id 1 included.
    if (text_only && n < length) max_id = std::max<int64_t>(max_id, 1);
    delta_at[b] = max_id + 1 - length;
  }
  if (next_image != input.image_grids.size() || next_video != input.video_grids.size()) {
    const bool images = next_image != input.image_grids.size();
    const char* kind = images ? "image" : "video";
    const size_t grids = images ? input.image_grids.size() : input.video_grids.size();
    throw InputError({"", 0, fmt::format("{}_grids", kind), std::to_string(grids)},
                     fmt::format("{} {} grids but input_ids hold {} {} blocks", grids, kind,
                                 images ? next_image : next_video, kind));
  }
  const at::Device device = input.input_ids.device();
  return {positions.to(device), deltas.to(device)};
}

at::Tensor decode_positions(const at::Tensor& start, const at::Tensor& rope_deltas, int64_t n) {
  LVRL_ASSERT(start.dim() == 1 && rope_deltas.dim() == 1 && start.size(0) == rope_deltas.size(0),
              "start and rope_deltas must both be [B]");
  at::Tensor offsets = at::arange(n, start.options().dtype(at::kLong));  // [n]
  at::Tensor row =
      (start.to(at::kLong) + rope_deltas.to(start.device(), at::kLong)).unsqueeze(1) + offsets;  // [B, n]
  return row.unsqueeze(0).expand({3, row.size(0), n}).contiguous();
}

RopeTables mrope_tables(const TextConfig& config, const at::Tensor& positions, at::ScalarType dtype,
                        const at::Device& device) {
  LVRL_ASSERT(positions.dim() == 3 && positions.size(0) == 3, "positions must be [3, B, S]");
  const int64_t head_dim = config.head_dim();
  const auto float_options = at::TensorOptions().dtype(at::kFloat).device(device);
  // As transformers: arange in int64 → float, / head_dim, θ^x and 1/· all in fp32.
  at::Tensor exponents = at::arange(0, head_dim, 2, float_options.dtype(at::kLong)).to(at::kFloat) / head_dim;
  at::Tensor inv_freq = at::reciprocal(at::pow(config.rope_theta, exponents));  // [head_dim/2]
  at::Tensor ids = positions.to(device).to(at::kFloat);                         // [3, B, S]

  // Frequency j takes its angle from the axis of its mrope_section chunk; selecting before the
  // cos/sin is the same as transformers' selection after them (both are elementwise).
  std::vector<at::Tensor> chunks;
  int64_t offset = 0;
  for (size_t axis = 0; axis < config.mrope_section.size(); ++axis) {
    const int64_t width = config.mrope_section[axis];
    chunks.push_back(ids[static_cast<int64_t>(axis)].unsqueeze(-1) * inv_freq.narrow(0, offset, width));
    offset += width;
  }
  LVRL_ASSERT(offset == head_dim / 2, "mrope_section must sum to head_dim / 2 (QwenConfig::validate)");
  at::Tensor angles = at::cat(chunks, -1);         // [B, S, head_dim/2]
  at::Tensor emb = at::cat({angles, angles}, -1);  // [B, S, head_dim]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  LVRL_ASSERT(x.dim() == 4 && cos.dim() == 3 && x.size(-1) == cos.size(-1),
              "x [B, S, H, D], cos/sin [B, S, D]");
  const int64_t half = x.size(-1) / 2;
  at::Tensor c = cos.to(x.scalar_type()).unsqueeze(2);  // [B, S, 1, D]
  at::Tensor s = sin.to(x.scalar_type()).unsqueeze(2);
  at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * c + rotated * s;
}

at::Tensor vision_rotary_angles(const VisionConfig& config, const std::vector<GridTHW>& grids) {
  const int64_t dim = config.head_dim() / 2;  // angles per patch: half rows, half columns
  const int64_t merge = config.spatial_merge_size;
  at::Tensor exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / dim;
  at::Tensor inv_freq = at::reciprocal(at::pow(10000.0, exponents));  // [dim/2] fp32

  std::vector<at::Tensor> parts;
  for (const GridTHW& grid : grids) {
    const int64_t t = grid[0], h = grid[1], w = grid[2];
    LVRL_ASSERT(h % merge == 0 && w % merge == 0,
                "vision grids must have h, w multiples of spatial_merge_size");
    // Patch (row, column) in patchify order: merge blocks in raster order, (mh, mw) raster inside.
    at::Tensor rows = at::arange(h, at::kLong).unsqueeze(1).expand({h, w});
    at::Tensor cols = at::arange(w, at::kLong).unsqueeze(0).expand({h, w});
    auto block_order = [&](const at::Tensor& plane) {
      return plane.reshape({h / merge, merge, w / merge, merge}).permute({0, 2, 1, 3}).flatten();
    };
    at::Tensor r = block_order(rows).to(at::kFloat).unsqueeze(1);  // [h·w, 1]
    at::Tensor q = block_order(cols).to(at::kFloat).unsqueeze(1);
    at::Tensor angles = at::cat({r * inv_freq, q * inv_freq}, 1);  // [h·w, dim]
    parts.push_back(angles.repeat({t, 1}));
  }
  if (parts.empty()) return at::zeros({0, dim}, at::kFloat);
  return at::cat(parts, 0);
}

}  // namespace lvrl::model
