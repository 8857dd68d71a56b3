// Rotary positions: get_rope_index against hand-computed 3-D ids (docs/model.md#3-d-position-ids, with its
// worked example), decode positions (#decode-positions), the M-RoPE tables and rotation against float64
// formulas (#m-rope), and the vision angle table's patch order (#vision-rotary-table, #patch-order).
#include "model/rope.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "tests/support/expect_error.h"

namespace lvrl::model {
namespace {

constexpr int64_t kVs = 151652, kVe = 151653, kImage = 151655, kVideo = 151656;
constexpr int64_t kA = 32, kB = 33, kC = 34;  // ordinary text tokens

const QwenConfig& tiny() {
  static const QwenConfig config = QwenConfig::preset("tiny");
  return config;
}

at::Tensor row_tensor(const std::vector<std::vector<int64_t>>& rows) {
  const int64_t b = static_cast<int64_t>(rows.size()), s = static_cast<int64_t>(rows[0].size());
  at::Tensor out = at::empty({b, s}, at::kLong);
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t j = 0; j < s; ++j) out[i][j] = rows[i][j];
  }
  return out;
}

std::vector<int64_t> axis_row(const at::Tensor& positions, int64_t axis, int64_t row) {
  at::Tensor r = positions[axis][row].contiguous();
  return std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
}

std::vector<int64_t> repeat(int64_t token, int64_t n) {
  return std::vector<int64_t>(n, token);
}

std::vector<int64_t> concat(std::initializer_list<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const auto& part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

using test::expect_input_error;

// A B <vs> [video (2, 4, 4)] <ve> C: the worked example of docs/model.md#3-d-position-ids.
RopeIndexInput worked_example() {
  RopeIndexInput input;
  input.input_ids = row_tensor({concat({{kA, kB, kVs}, repeat(kVideo, 8), {kVe, kC}})});
  input.video_grids = {{2, 4, 4}};
  return input;
}

TEST(RopeIndex, WorkedExampleOfTheSpec) {
  const RopeIndex index = get_rope_index(tiny(), worked_example());
  ASSERT_EQ(index.positions.sizes(), (at::IntArrayRef{3, 1, 13}));
  EXPECT_EQ(axis_row(index.positions, 0, 0), (std::vector<int64_t>{0, 1, 2, 3, 3, 3, 3, 5, 5, 5, 5, 6, 7}));
  EXPECT_EQ(axis_row(index.positions, 1, 0), (std::vector<int64_t>{0, 1, 2, 3, 3, 4, 4, 3, 3, 4, 4, 6, 7}));
  EXPECT_EQ(axis_row(index.positions, 2, 0), (std::vector<int64_t>{0, 1, 2, 3, 4, 3, 4, 3, 4, 3, 4, 6, 7}));
  EXPECT_EQ(index.rope_deltas.item<int64_t>(), -5);
}

TEST(RopeIndex, TextOnlyIsArangeAndPaddingKeepsOne) {
  RopeIndexInput input;
  input.input_ids = row_tensor({{kA, kB, kC, kA, kB}, {kA, kB, kC, 0, 0}});
  input.attention_mask = row_tensor({{1, 1, 1, 1, 1}, {1, 1, 1, 0, 0}});
  const RopeIndex index = get_rope_index(tiny(), input);
  for (int64_t axis = 0; axis < 3; ++axis) {
    EXPECT_EQ(axis_row(index.positions, axis, 0), (std::vector<int64_t>{0, 1, 2, 3, 4}));
    EXPECT_EQ(axis_row(index.positions, axis, 1), (std::vector<int64_t>{0, 1, 2, 1, 1}));
  }
  EXPECT_EQ(index.rope_deltas[0].item<int64_t>(), 0);
  EXPECT_EQ(index.rope_deltas[1].item<int64_t>(), 3 - 5);

  // Left padding: the valid tokens still count from 0.
  input.attention_mask = row_tensor({{0, 0, 1, 1, 1}, {1, 1, 1, 1, 1}});
  const RopeIndex left = get_rope_index(tiny(), input);
  EXPECT_EQ(axis_row(left.positions, 1, 0), (std::vector<int64_t>{1, 1, 0, 1, 2}));
  EXPECT_EQ(left.rope_deltas[0].item<int64_t>(), -2);

  // transformers' text-only path takes the row max with padding's 1 included: a single valid
  // token (id 0) next to padding gives max 1, delta 2 - S.
  input.attention_mask = row_tensor({{1, 0, 0, 0, 0}, {1, 1, 1, 1, 1}});
  EXPECT_EQ(get_rope_index(tiny(), input).rope_deltas[0].item<int64_t>(), 2 - 5);
}

TEST(RopeIndex, TextAfterAVideoContinuesAfterItsLargestId) {
  // <vs> [video (3, 2, 2): one token per temporal patch] <ve> A B
  RopeIndexInput input;
  input.input_ids = row_tensor({concat({{kVs}, repeat(kVideo, 3), {kVe, kA, kB}})});
  input.video_grids = {{3, 2, 2}};
  const RopeIndex index = get_rope_index(tiny(), input);
  EXPECT_EQ(axis_row(index.positions, 0, 0), (std::vector<int64_t>{0, 1, 3, 5, 6, 7, 8}));
  EXPECT_EQ(axis_row(index.positions, 1, 0), (std::vector<int64_t>{0, 1, 1, 1, 6, 7, 8}));
  EXPECT_EQ(axis_row(index.positions, 2, 0), (std::vector<int64_t>{0, 1, 1, 1, 6, 7, 8}));
  EXPECT_EQ(index.rope_deltas.item<int64_t>(), 9 - 7);
}

TEST(RopeIndex, TwoVideosInOneRow) {
  // <vs> [video (2, 2, 4): 1×2 units, 2 slices] <ve> <vs> [video (1, 4, 2): 2×1 units] <ve> A
  RopeIndexInput input;
  input.input_ids =
      row_tensor({concat({{kVs}, repeat(kVideo, 4), {kVe, kVs}, repeat(kVideo, 2), {kVe, kA}})});
  input.video_grids = {{2, 2, 4}, {1, 4, 2}};
  const RopeIndex index = get_rope_index(tiny(), input);
  EXPECT_EQ(axis_row(index.positions, 0, 0), (std::vector<int64_t>{0, 1, 1, 3, 3, 4, 5, 6, 6, 8, 9}));
  EXPECT_EQ(axis_row(index.positions, 1, 0), (std::vector<int64_t>{0, 1, 1, 1, 1, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(axis_row(index.positions, 2, 0), (std::vector<int64_t>{0, 1, 2, 1, 2, 4, 5, 6, 6, 8, 9}));
  EXPECT_EQ(index.rope_deltas.item<int64_t>(), 10 - 11);
}

TEST(RopeIndex, BatchRowsConsumeGridsInPromptOrder) {
  // Row 0: an image (1, 2, 4) and a short video (1, 2, 2), right-padded; row 1: a video (2, 2, 2).
  // Grids are consumed per kind in prompt order over the batch: the row-1 video takes grid 1.
  const std::vector<int64_t> row0 = concat({{kA, kVs}, repeat(kImage, 2), {kVe, kVs, kVideo, kVe}, {0, 0}});
  const std::vector<int64_t> row1 = concat({{kVs}, repeat(kVideo, 2), {kVe, kA, kB, kC, kA, kB, kC}});
  RopeIndexInput input;
  input.input_ids = row_tensor({row0, row1});
  input.attention_mask = row_tensor({concat({repeat(1, 8), {0, 0}}), repeat(1, 10)});
  input.image_grids = {{1, 2, 4}};
  input.video_grids = {{1, 2, 2}, {2, 2, 2}};
  input.second_per_grid_ts = {1.0, 2.0};
  const RopeIndex index = get_rope_index(tiny(), input);
  EXPECT_EQ(axis_row(index.positions, 0, 0), (std::vector<int64_t>{0, 1, 2, 2, 4, 5, 6, 7, 1, 1}));
  EXPECT_EQ(axis_row(index.positions, 1, 0), (std::vector<int64_t>{0, 1, 2, 2, 4, 5, 6, 7, 1, 1}));
  EXPECT_EQ(axis_row(index.positions, 2, 0), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 1, 1}));
  // Row 1's video: second_per_grid_t 2 → τ_pos = 4τ.
  EXPECT_EQ(axis_row(index.positions, 0, 1), (std::vector<int64_t>{0, 1, 5, 6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(axis_row(index.positions, 1, 1), (std::vector<int64_t>{0, 1, 1, 6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(index.rope_deltas[0].item<int64_t>(), 8 - 10);
  EXPECT_EQ(index.rope_deltas[1].item<int64_t>(), 13 - 10);
}

// <vs> [video (4, 2, 2)] <ve>: T ids are 1 + τ_pos for τ = 0..3.
std::vector<int64_t> temporal_ids(double second_per_grid_t, TemporalRule rule) {
  RopeIndexInput input;
  input.input_ids = row_tensor({concat({{kVs}, repeat(kVideo, 4), {kVe}})});
  input.video_grids = {{4, 2, 2}};
  input.second_per_grid_ts = {second_per_grid_t};
  input.temporal_rule = rule;
  const std::vector<int64_t> t = axis_row(get_rope_index(tiny(), input).positions, 0, 0);
  return std::vector<int64_t>(t.begin() + 1, t.end() - 1);
}

TEST(RopeIndex, SecondPerGridUnderBothTemporalRules) {
  // tokens_per_second = 2. Float then floor: ⌊τ·s·2⌋. Integer cast first: τ·int(s)·2.
  EXPECT_EQ(temporal_ids(0.5, TemporalRule::FloatThenFloor), (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(temporal_ids(1.5, TemporalRule::FloatThenFloor), (std::vector<int64_t>{1, 4, 7, 10}));
  EXPECT_EQ(temporal_ids(0.25, TemporalRule::FloatThenFloor), (std::vector<int64_t>{1, 1, 2, 2}));
  EXPECT_EQ(temporal_ids(0.5, TemporalRule::IntegerCastFirst), (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(temporal_ids(1.5, TemporalRule::IntegerCastFirst), (std::vector<int64_t>{1, 3, 5, 7}));
  EXPECT_EQ(temporal_ids(1.0, TemporalRule::IntegerCastFirst),
            temporal_ids(1.0, TemporalRule::FloatThenFloor));

  // No second_per_grid_ts: 1.0 each, τ_pos = 2τ.
  RopeIndexInput input;
  input.input_ids = row_tensor({concat({{kVs}, repeat(kVideo, 4), {kVe}})});
  input.video_grids = {{4, 2, 2}};
  EXPECT_EQ(axis_row(get_rope_index(tiny(), input).positions, 0, 0),
            (std::vector<int64_t>{0, 1, 3, 5, 7, 8}));
}

TEST(RopeIndex, ImageBlocksHaveNoTemporalOffset) {
  // <vs> [image (2, 2, 4)] <ve>: even with two temporal patches an image's T ids stay at s.
  RopeIndexInput input;
  input.input_ids = row_tensor({concat({{kA, kVs}, repeat(kImage, 4), {kVe}})});
  input.image_grids = {{2, 2, 4}};
  const RopeIndex index = get_rope_index(tiny(), input);
  EXPECT_EQ(axis_row(index.positions, 0, 0), (std::vector<int64_t>{0, 1, 2, 2, 2, 2, 4}));
  EXPECT_EQ(axis_row(index.positions, 1, 0), (std::vector<int64_t>{0, 1, 2, 2, 2, 2, 4}));
  EXPECT_EQ(axis_row(index.positions, 2, 0), (std::vector<int64_t>{0, 1, 2, 3, 2, 3, 4}));
  EXPECT_EQ(index.rope_deltas.item<int64_t>(), 5 - 7);
}

TEST(RopeIndex, DecodeContinuesAfterThePrompt) {
  const RopeIndex index = get_rope_index(tiny(), worked_example());
  const at::Tensor next = decode_positions(at::full({1}, 13, at::kLong), index.rope_deltas, 3);
  ASSERT_EQ(next.sizes(), (at::IntArrayRef{3, 1, 3}));
  for (int64_t axis = 0; axis < 3; ++axis)
    EXPECT_EQ(axis_row(next, axis, 0), (std::vector<int64_t>{8, 9, 10}));

  const at::Tensor batch = decode_positions(row_tensor({{4, 20}})[0], row_tensor({{0, -7}})[0], 2);
  EXPECT_EQ(axis_row(batch, 2, 0), (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(axis_row(batch, 0, 1), (std::vector<int64_t>{13, 14}));
}

TEST(RopeIndex, MismatchesBetweenIdsAndGridsAreInputErrors) {
  {
    RopeIndexInput input = worked_example();
    input.input_ids = row_tensor({concat({{kA, kB, kVs}, repeat(kVideo, 7), {kVe, kC}})});
    const std::string message =
        expect_input_error([&] { get_rope_index(tiny(), input); }, "video_grids[0]").what();
    EXPECT_NE(message.find("has 7 <|video_pad|> tokens but its grid needs 8"), std::string::npos) << message;
  }
  {
    RopeIndexInput input = worked_example();
    input.input_ids = row_tensor({concat({{kVs}, repeat(kVideo, 8), {kVe, kVs}, repeat(kVideo, 8), {kVe}})});
    expect_input_error([&] { get_rope_index(tiny(), input); }, "video_grids");
  }
  {
    RopeIndexInput input = worked_example();
    input.video_grids.push_back({1, 2, 2});
    const std::string message =
        expect_input_error([&] { get_rope_index(tiny(), input); }, "video_grids").what();
    EXPECT_NE(message.find("2 video grids but input_ids hold 1"), std::string::npos) << message;
  }
  {
    RopeIndexInput input = worked_example();
    input.image_grids.push_back({1, 2, 2});
    expect_input_error([&] { get_rope_index(tiny(), input); }, "image_grids");
  }
  {
    RopeIndexInput input = worked_example();
    input.second_per_grid_ts = {1.0, 1.0};
    expect_input_error([&] { get_rope_index(tiny(), input); }, "second_per_grid_ts");
  }
  {
    RopeIndexInput input;  // a pad token without <|vision_start|> before it
    input.input_ids = row_tensor({concat({{kA}, repeat(kVideo, 8)})});
    input.video_grids = {{2, 4, 4}};
    expect_input_error([&] { get_rope_index(tiny(), input); }, "input_ids");
  }
}

// Float64 reference of the text tables from the formulas: angle = p_axis(j) · θ^(-2j/D).
struct ReferenceTables {
  std::vector<double> cos, sin;  // [B, S, D] row-major
};
ReferenceTables reference_mrope(const TextConfig& config, const at::Tensor& positions) {
  const int64_t batch = positions.size(1), length = positions.size(2), d = config.head_dim(), half = d / 2;
  ReferenceTables out{std::vector<double>(batch * length * d), std::vector<double>(batch * length * d)};
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t s = 0; s < length; ++s) {
      for (int64_t i = 0; i < d; ++i) {
        const int64_t j = i % half;
        const int64_t axis = j < config.mrope_section[0]                             ? 0
                             : j < config.mrope_section[0] + config.mrope_section[1] ? 1
                                                                                     : 2;
        const double angle =
            static_cast<double>(positions[axis][b][s].item<int64_t>()) *
            std::pow(config.rope_theta, -2.0 * static_cast<double>(j) / static_cast<double>(d));
        out.cos[(b * length + s) * d + i] = std::cos(angle);
        out.sin[(b * length + s) * d + i] = std::sin(angle);
      }
    }
  }
  return out;
}

at::Tensor as_tensor(const std::vector<double>& values, at::IntArrayRef shape) {
  return at::tensor(at::ArrayRef<double>(values), at::kDouble).reshape(shape);
}

TEST(MRope, TablesMatchTheFormulasPerSection) {
  const TextConfig& config = tiny().text;  // head_dim 16, sections [2, 3, 3]
  at::manual_seed(7);
  const at::Tensor positions = at::randint(0, 500, {3, 2, 6}, at::kLong);
  const RopeTables tables = mrope_tables(config, positions, at::kDouble, at::kCPU);
  ASSERT_EQ(tables.cos.sizes(), (at::IntArrayRef{2, 6, 16}));
  ASSERT_EQ(tables.cos.scalar_type(), at::kDouble);
  const ReferenceTables reference = reference_mrope(config, positions);
  // The tables are computed in fp32 as transformers does: angles up to 500 carry an absolute error
  // of about 500·2^-24 ≈ 3e-5; a wrong axis or frequency would be off by O(1).
  EXPECT_LT((tables.cos - as_tensor(reference.cos, {2, 6, 16})).abs().max().item<double>(), 1e-4) << "seed 7";
  EXPECT_LT((tables.sin - as_tensor(reference.sin, {2, 6, 16})).abs().max().item<double>(), 1e-4) << "seed 7";
  // Dimension i and i + D/2 share axis and frequency exactly.
  EXPECT_TRUE(at::equal(tables.cos.narrow(-1, 0, 8), tables.cos.narrow(-1, 8, 8)));
  // cos/sin are computed in fp32 and cast: the bf16 table is the float table rounded.
  const RopeTables bf16 = mrope_tables(config, positions, at::kBFloat16, at::kCPU);
  const RopeTables f32 = mrope_tables(config, positions, at::kFloat, at::kCPU);
  EXPECT_TRUE(at::equal(bf16.cos, f32.cos.to(at::kBFloat16)));
  EXPECT_TRUE(at::equal(tables.sin, f32.sin.to(at::kDouble)));
}

TEST(MRope, ApplyRotaryMatchesTheFormula) {
  const TextConfig& config = tiny().text;
  at::manual_seed(11);
  const at::Tensor positions = at::randint(0, 50, {3, 2, 5}, at::kLong);
  const RopeTables tables = mrope_tables(config, positions, at::kDouble, at::kCPU);
  const at::Tensor x = at::randn({2, 5, 3, 16}, at::kDouble);
  const at::Tensor out = apply_rotary(x, tables.cos, tables.sin);
  double worst = 0;
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t s = 0; s < 5; ++s) {
      for (int64_t h = 0; h < 3; ++h) {
        for (int64_t i = 0; i < 16; ++i) {
          const double xi = x[b][s][h][i].item<double>();
          const double partner = i < 8 ? -x[b][s][h][i + 8].item<double>() : x[b][s][h][i - 8].item<double>();
          const double expected =
              xi * tables.cos[b][s][i].item<double>() + partner * tables.sin[b][s][i].item<double>();
          worst = std::max(worst, std::abs(out[b][s][h][i].item<double>() - expected));
        }
      }
    }
  }
  EXPECT_LT(worst, 1e-14) << "seed 11";
}

TEST(MRope, EqualAxesIsPlainRope) {
  const TextConfig& config = tiny().text;
  at::manual_seed(3);
  const at::Tensor ids = at::randint(0, 300, {1, 2, 7}, at::kLong);
  const at::Tensor positions = ids.expand({3, 2, 7});
  const RopeTables tables = mrope_tables(config, positions, at::kDouble, at::kCPU);
  const at::Tensor x = at::randn({2, 7, 4, 16}, at::kDouble);
  const at::Tensor out = apply_rotary(x, tables.cos, tables.sin);
  // 1-D RoPE in float64: pairs (i, i + 8) rotate by p·θ^(-2i/16).
  at::Tensor p = ids[0].to(at::kDouble).unsqueeze(-1);                                        // [2, 7, 1]
  at::Tensor inv_freq = at::pow(config.rope_theta, -at::arange(0, 16, 2, at::kDouble) / 16);  // [8]
  at::Tensor angle = (p * inv_freq).unsqueeze(2);                                             // [2, 7, 1, 8]
  at::Tensor x1 = x.narrow(-1, 0, 8), x2 = x.narrow(-1, 8, 8);
  at::Tensor expected =
      at::cat({x1 * angle.cos() - x2 * angle.sin(), x2 * angle.cos() + x1 * angle.sin()}, -1);
  EXPECT_LT((out - expected).abs().max().item<double>(), 1e-4) << "fp32 tables; seed 3";
}

TEST(VisionRotary, AnglesFollowThePatchifyOrder) {
  const VisionConfig& config = tiny().vision;  // head_dim 16: 8 angles per patch, 4 frequencies
  const std::vector<GridTHW> grids = {{2, 4, 6}, {1, 2, 2}};
  const at::Tensor angles = vision_rotary_angles(config, grids);
  ASSERT_EQ(angles.sizes(), (at::IntArrayRef{2 * 24 + 4, 8}));
  ASSERT_EQ(angles.scalar_type(), at::kFloat);
  int64_t row = 0;
  for (const GridTHW& grid : grids) {
    for (int64_t t = 0; t < grid[0]; ++t) {
      for (int64_t k = 0; k < grid[1] * grid[2]; ++k, ++row) {
        const int64_t block = k / 4, blocks_w = grid[2] / 2;
        const int64_t r = (block / blocks_w) * 2 + (k % 4) / 2, q = (block % blocks_w) * 2 + k % 2;
        for (int64_t j = 0; j < 4; ++j) {
          const double inv_freq = std::pow(10000.0, -2.0 * static_cast<double>(j) / 8.0);
          EXPECT_NEAR(angles[row][j].item<float>(), r * inv_freq, 1e-6 * (1 + r)) << "row " << row;
          EXPECT_NEAR(angles[row][4 + j].item<float>(), q * inv_freq, 1e-6 * (1 + q)) << "row " << row;
        }
      }
    }
  }
  // Every temporal slice repeats the same table exactly.
  EXPECT_TRUE(at::equal(angles.narrow(0, 0, 24), angles.narrow(0, 24, 24)));
}

}  // namespace
}  // namespace lvrl::model
