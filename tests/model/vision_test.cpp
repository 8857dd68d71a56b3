// The vision tower: the window partition (docs/model.md#window-partition, with its 644×476 example), the
// module tree's checkpoint names, and the forward (#vision-forward) against an independent float64 reference
// that never reorders rows: it walks the raster grid window by window and runs plain dense
// attention on each segment.
#include "model/vision.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "core/error.h"
#include "core/tensor_compare.h"

namespace lvrl::model {
namespace {

const VisionConfig& tiny_vision() {
  static const VisionConfig config = QwenConfig::preset("tiny").vision;
  return config;
}

std::vector<int64_t> to_vector(const at::Tensor& tensor) {
  at::Tensor t = tensor.to(at::kLong).contiguous();
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

int64_t patch_count(const std::vector<GridTHW>& grids) {
  int64_t n = 0;
  for (const GridTHW& grid : grids) n += grid[0] * grid[1] * grid[2];
  return n;
}

TEST(WindowPartition, SpecExample644x476) {
  // 644×476 → grid (1, 34, 46) → 17×23 units, padded to 20×24 → 5×6 windows.
  const WindowPartition partition = partition_windows(tiny_vision(), {{1, 34, 46}});
  const std::vector<int64_t> cu = to_vector(partition.cu_window_seqlens);
  ASSERT_EQ(cu.size(), 31u);
  const int64_t row_units[] = {4, 4, 4, 4, 1}, col_units[] = {4, 4, 4, 4, 4, 3};
  for (int64_t wh = 0; wh < 5; ++wh) {
    for (int64_t ww = 0; ww < 6; ++ww) {
      const int64_t w = wh * 6 + ww;
      EXPECT_EQ(cu[w + 1] - cu[w], row_units[wh] * col_units[ww] * 4)
          << "window (" << wh << ", " << ww << ")";
    }
  }
  EXPECT_EQ(cu.back(), 34 * 46);
  const std::vector<int64_t> index = to_vector(partition.window_index);
  ASSERT_EQ(index.size(), 17u * 23u);
  for (int64_t k = 0; k < 16; ++k) EXPECT_EQ(index[k], (k / 4) * 23 + k % 4);  // window (0, 0)
  EXPECT_EQ(std::vector<int64_t>(index.end() - 3, index.end()), (std::vector<int64_t>{388, 389, 390}));
  EXPECT_EQ(to_vector(partition.cu_seqlens), (std::vector<int64_t>{0, 34 * 46}));
}

TEST(WindowPartition, MultipleOfTheWindowDropsTheExtraEmptyRow) {
  // lh = lw = 8: transformers pads by a whole window (4) on each side; those windows are empty.
  const WindowPartition partition = partition_windows(tiny_vision(), {{1, 16, 16}});
  EXPECT_EQ(to_vector(partition.cu_window_seqlens), (std::vector<int64_t>{0, 64, 128, 192, 256}));
  const std::vector<int64_t> index = to_vector(partition.window_index);
  EXPECT_EQ(std::vector<int64_t>(index.begin() + 16, index.begin() + 20), (std::vector<int64_t>{4, 5, 6, 7}));
}

TEST(WindowPartition, CuSeqlensArePerTemporalSlice) {
  const WindowPartition partition = partition_windows(tiny_vision(), {{2, 4, 6}, {3, 2, 2}});
  EXPECT_EQ(to_vector(partition.cu_seqlens), (std::vector<int64_t>{0, 24, 48, 52, 56, 60}));
  // A slice of (4, 6) is 2×3 units: one window each; the (2, 2) slices one unit each.
  EXPECT_EQ(to_vector(partition.cu_window_seqlens), (std::vector<int64_t>{0, 24, 48, 52, 56, 60}));
}

TEST(WindowPartition, WindowIndexIsAPermutationOfWindowsInsideSlices) {
  const std::vector<std::vector<GridTHW>> cases = {
      {{1, 34, 46}},
      {{3, 16, 16}},
      {{2, 10, 6}, {1, 4, 4}, {4, 2, 18}},
      {{1, 2, 2}},
      {{5, 18, 34}, {1, 34, 46}},
  };
  for (const auto& grids : cases) {
    const WindowPartition partition = partition_windows(tiny_vision(), grids);
    const int64_t units = patch_count(grids) / 4;
    const std::vector<int64_t> index = to_vector(partition.window_index);
    std::vector<int64_t> sorted = index;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> expected(units);
    for (int64_t i = 0; i < units; ++i) expected[i] = i;
    EXPECT_EQ(sorted, expected) << "grids[0] = (" << grids[0][0] << ", " << grids[0][1] << ", " << grids[0][2]
                                << ")";

    // Unit id → (slice, unit row, unit column); every window sits in one slice, spans ≤ 4×4 units.
    std::vector<std::array<int64_t, 3>> where;
    int64_t slice = 0;
    for (const GridTHW& grid : grids) {
      for (int64_t t = 0; t < grid[0]; ++t, ++slice) {
        for (int64_t r = 0; r < grid[1] / 2; ++r) {
          for (int64_t c = 0; c < grid[2] / 2; ++c) where.push_back({slice, r, c});
        }
      }
    }
    const std::vector<int64_t> cu = to_vector(partition.cu_window_seqlens);
    EXPECT_EQ(cu.back(), units * 4);
    for (size_t w = 0; w + 1 < cu.size(); ++w) {
      ASSERT_GT(cu[w + 1], cu[w]) << "empty window " << w;
      ASSERT_EQ(cu[w] % 4, 0);
      const auto& first = where[index[cu[w] / 4]];
      for (int64_t k = cu[w] / 4; k < cu[w + 1] / 4; ++k) {
        const auto& unit = where[index[k]];
        EXPECT_EQ(unit[0], first[0]);
        EXPECT_EQ(unit[1] / 4, first[1] / 4);
        EXPECT_EQ(unit[2] / 4, first[2] / 4);
      }
    }

    // Reorder then restore (argsort) is the identity, exactly.
    const at::Tensor x = at::randn({units * 4, 5}, at::kDouble);
    const at::Tensor window_order =
        x.view({units, 4, 5}).index_select(0, partition.window_index).view({units * 4, 5});
    const at::Tensor restored = window_order.view({units, 4, 5})
                                    .index_select(0, at::argsort(partition.window_index))
                                    .view({units * 4, 5});
    EXPECT_TRUE(at::equal(restored, x));
  }
}

TEST(WindowPartition, OddGridsAreInputErrors) {
  EXPECT_THROW(partition_windows(tiny_vision(), {{1, 3, 4}}), InputError);
  EXPECT_THROW(partition_windows(tiny_vision(), {{0, 4, 4}}), InputError);
}

TEST(VisionTower, ParameterNamesAreTheCheckpointNames) {
  VisionTower tower(tiny_vision());
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& item : tower->named_parameters()) shapes[item.key()] = item.value().sizes().vec();
  const std::map<std::string, std::vector<int64_t>> expected = {
      {"patch_embed.proj.weight", {32, 3, 2, 14, 14}},
      {"blocks.1.norm1.weight", {32}},
      {"blocks.1.norm2.weight", {32}},
      {"blocks.1.attn.qkv.weight", {96, 32}},
      {"blocks.1.attn.qkv.bias", {96}},
      {"blocks.1.attn.proj.weight", {32, 32}},
      {"blocks.1.attn.proj.bias", {32}},
      {"blocks.1.mlp.gate_proj.weight", {64, 32}},
      {"blocks.1.mlp.gate_proj.bias", {64}},
      {"blocks.1.mlp.up_proj.weight", {64, 32}},
      {"blocks.1.mlp.up_proj.bias", {64}},
      {"blocks.1.mlp.down_proj.weight", {32, 64}},
      {"blocks.1.mlp.down_proj.bias", {32}},
      {"merger.ln_q.weight", {32}},
      {"merger.mlp.0.weight", {128, 128}},
      {"merger.mlp.0.bias", {128}},
      {"merger.mlp.2.weight", {64, 128}},
      {"merger.mlp.2.bias", {64}},
  };
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(shapes.count(name)) << name;
    EXPECT_EQ(shapes[name], shape) << name;
  }
  EXPECT_EQ(shapes.size(), 1u + 2u * 12u + 5u);  // no conv bias, nothing else
}

// Random weights large enough that every layer matters: weights N(0, 0.2²), biases N(0, 0.1²),
// norm weights 1 + N(0, 0.1²).
void randomize(torch::nn::Module& module, uint64_t seed) {
  at::manual_seed(seed);
  at::NoGradGuard no_grad;
  for (auto& item : module.named_parameters()) {
    at::Tensor p = item.value();
    const std::string& name = item.key();
    if (name.find("norm") != std::string::npos || name.find("ln_q") != std::string::npos) {
      p.copy_(1 + 0.1 * at::randn(p.sizes(), p.options()));
    } else if (name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0) {
      p.copy_(0.1 * at::randn(p.sizes(), p.options()));
    } else {
      p.copy_(0.2 * at::randn(p.sizes(), p.options()));
    }
  }
}

// ---- float64 reference, written from the spec, in patchify row order throughout ----

at::Tensor param(torch::nn::Module& module, const std::string& name) {
  return module.named_parameters()[name].detach();
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return x * at::rsqrt(x.pow(2).mean(-1, true) + eps) * weight;
}

at::Tensor linear(const at::Tensor& x, torch::nn::Module& module, const std::string& prefix) {
  return at::matmul(x, param(module, prefix + ".weight").t()) + param(module, prefix + ".bias");
}

struct PatchPlace {
  int64_t slice;     // global temporal slice
  int64_t row, col;  // patch row and column in the slice
};

// Patchify row order (docs/model.md#patch-order): per slice, 2×2 blocks in raster order, (mh, mw) inside.
std::vector<PatchPlace> patch_places(const std::vector<GridTHW>& grids) {
  std::vector<PatchPlace> places;
  int64_t slice = 0;
  for (const GridTHW& grid : grids) {
    for (int64_t t = 0; t < grid[0]; ++t, ++slice) {
      for (int64_t bh = 0; bh < grid[1] / 2; ++bh) {
        for (int64_t bw = 0; bw < grid[2] / 2; ++bw) {
          for (int64_t mh = 0; mh < 2; ++mh) {
            for (int64_t mw = 0; mw < 2; ++mw) places.push_back({slice, bh * 2 + mh, bw * 2 + mw});
          }
        }
      }
    }
  }
  return places;
}

// Segments of patch rows: per slice (full attention) or per 8×8-patch window of the raster grid.
std::vector<std::vector<int64_t>> segments(const std::vector<PatchPlace>& places, bool windows) {
  std::map<std::array<int64_t, 3>, std::vector<int64_t>> groups;
  for (size_t i = 0; i < places.size(); ++i) {
    const PatchPlace& p = places[i];
    // A window is 112 px = 8 patches a side (4 merged units).
    const std::array<int64_t, 3> key = windows ? std::array<int64_t, 3>{p.slice, p.row / 8, p.col / 8}
                                               : std::array<int64_t, 3>{p.slice, 0, 0};
    groups[key].push_back(static_cast<int64_t>(i));
  }
  std::vector<std::vector<int64_t>> out;
  for (auto& [key, rows] : groups) out.push_back(rows);
  return out;
}

at::Tensor reference_tower(torch::nn::Module& tower, const VisionConfig& config, const at::Tensor& pixels,
                           const std::vector<GridTHW>& grids) {
  const int64_t n = pixels.size(0), c = config.hidden_size, heads = config.num_heads, hd = config.head_dim();
  const std::vector<PatchPlace> places = patch_places(grids);
  // Patch embedding as the matmul of docs/model.md#patch-embedding.
  at::Tensor x = at::matmul(pixels, param(tower, "patch_embed.proj.weight").reshape({c, -1}).t());  // [N, C]

  // Rotary angles: the spec's fp32 inv_freq (from arange(0, dim, 2) / dim), fp32 products r·f, q·f.
  const int64_t dim = hd / 2, freqs = dim / 2;
  const at::Tensor inv_freq =
      at::reciprocal(at::pow(10000.0, at::arange(0, dim, 2, at::kLong).to(at::kFloat) / dim));
  at::Tensor angles = at::empty({n, hd}, at::kDouble);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < freqs; ++j) {
      const float f = inv_freq[j].item<float>();
      const double a_row = static_cast<float>(places[i].row) * f;
      const double a_col = static_cast<float>(places[i].col) * f;
      angles[i][j] = a_row;
      angles[i][freqs + j] = a_col;
      angles[i][dim + j] = a_row;
      angles[i][dim + freqs + j] = a_col;
    }
  }
  const at::Tensor cos = angles.cos().unsqueeze(1), sin = angles.sin().unsqueeze(1);  // [N, 1, hd]
  auto rotate = [&](const at::Tensor& t) {                                            // [N, H, hd]
    const at::Tensor rotated = at::cat({-t.narrow(-1, dim, dim), t.narrow(-1, 0, dim)}, -1);
    return t * cos + rotated * sin;
  };

  const auto windows = segments(places, /*windows=*/true), slices = segments(places, /*windows=*/false);
  for (int64_t b = 0; b < config.depth; ++b) {
    const std::string prefix = "blocks." + std::to_string(b);
    const bool full = std::find(config.fullatt_block_indexes.begin(), config.fullatt_block_indexes.end(),
                                b) != config.fullatt_block_indexes.end();
    at::Tensor h = rms_norm(x, param(tower, prefix + ".norm1.weight"), 1e-6);
    at::Tensor qkv = linear(h, tower, prefix + ".attn.qkv").view({n, 3, heads, hd});
    at::Tensor q = rotate(qkv.select(1, 0)), k = rotate(qkv.select(1, 1)), v = qkv.select(1, 2);
    at::Tensor attn = at::zeros({n, heads, hd}, at::kDouble);
    for (const std::vector<int64_t>& rows : full ? slices : windows) {
      const at::Tensor idx = at::tensor(at::ArrayRef<int64_t>(rows), at::kLong);
      const at::Tensor qs = q.index_select(0, idx).transpose(0, 1);  // [H, n_s, hd]
      const at::Tensor ks = k.index_select(0, idx).transpose(0, 1);
      const at::Tensor vs = v.index_select(0, idx).transpose(0, 1);
      const at::Tensor p =
          at::softmax(at::matmul(qs, ks.transpose(1, 2)) / std::sqrt(static_cast<double>(hd)), -1);
      attn.index_copy_(0, idx, at::matmul(p, vs).transpose(0, 1));
    }
    x = x + linear(attn.reshape({n, c}), tower, prefix + ".attn.proj");
    h = rms_norm(x, param(tower, prefix + ".norm2.weight"), 1e-6);
    const at::Tensor gate = linear(h, tower, prefix + ".mlp.gate_proj");
    x = x + linear(gate * at::sigmoid(gate) * linear(h, tower, prefix + ".mlp.up_proj"), tower,
                   prefix + ".mlp.down_proj");
  }
  // Merger: the 4 patches of a unit are consecutive rows; exact-erf GELU.
  at::Tensor m = rms_norm(x, param(tower, "merger.ln_q.weight"), 1e-6).reshape({n / 4, 4 * c});
  m = linear(m, tower, "merger.mlp.0");
  m = 0.5 * m * (1 + at::erf(m / std::sqrt(2.0)));
  return linear(m, tower, "merger.mlp.2");
}

TEST(VisionTower, MatchesAFloat64ReferenceFromTheSpec) {
  const VisionConfig& config = tiny_vision();  // depth 2: block 0 windowed, block 1 full
  const uint64_t seed = 1234;
  VisionTower tower(config);
  tower->to(at::kDouble);
  randomize(*tower, seed);
  // Partial windows on both edges, two slices, and a second input.
  const std::vector<GridTHW> grids = {{2, 12, 20}, {1, 4, 6}, {1, 18, 10}};
  const at::Tensor pixels = at::randn({patch_count(grids), config.patch_dim()}, at::kDouble);
  at::NoGradGuard no_grad;
  const at::Tensor got = tower->forward(pixels, grids);
  ASSERT_EQ(got.sizes(), (at::IntArrayRef{patch_count(grids) / 4, config.out_hidden_size}));
  ASSERT_EQ(got.scalar_type(), at::kDouble);
  const at::Tensor expected = reference_tower(*tower, config, pixels, grids);
  EXPECT_LE(max_relative_difference(got, expected), 1e-10)
      << "seed " << seed << ", tiny vision config, grids (2,12,20) (1,4,6) (1,18,10)";

  // A float32 input is cast to the tower's dtype.
  EXPECT_TRUE(at::equal(tower->forward(pixels.to(at::kFloat), grids),
                        tower->forward(pixels.to(at::kFloat).to(at::kDouble), grids)));
}

TEST(VisionTower, SlicesDoNotSeeEachOther) {
  const VisionConfig& config = tiny_vision();
  VisionTower tower(config);
  tower->to(at::kDouble);
  randomize(*tower, 99);
  const std::vector<GridTHW> grids = {{2, 10, 12}};
  const int64_t per_slice = 10 * 12;
  at::Tensor pixels = at::randn({2 * per_slice, config.patch_dim()}, at::kDouble);
  at::NoGradGuard no_grad;
  const at::Tensor before = tower->forward(pixels, grids);
  pixels.narrow(0, per_slice, per_slice).copy_(at::randn({per_slice, config.patch_dim()}, at::kDouble));
  const at::Tensor after = tower->forward(pixels, grids);
  EXPECT_TRUE(at::equal(before.narrow(0, 0, per_slice / 4), after.narrow(0, 0, per_slice / 4))) << "seed 99";
  EXPECT_FALSE(at::equal(before.narrow(0, per_slice / 4, per_slice / 4),
                         after.narrow(0, per_slice / 4, per_slice / 4)));
}

TEST(VisionTower, PixelRowsMustMatchTheGrids) {
  VisionTower tower(tiny_vision());
  const at::Tensor pixels = at::zeros({16, tiny_vision().patch_dim()});
  EXPECT_THROW(tower->forward(pixels, {{1, 4, 6}}), InputError);
  EXPECT_THROW(tower->forward(at::zeros({16, 100}), {{1, 4, 4}}), InputError);
}

}  // namespace
}  // namespace lvrl::model
