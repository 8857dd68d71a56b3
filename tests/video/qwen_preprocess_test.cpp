// Qwen preprocessing against independent references: the spec's worked numbers (docs/model.md#processor),
// values from running qwen-vl-utils' own Python formulas, smart_resize restated in exact integer
// arithmetic, frame indices from exact rational linspace, and pixel patches rebuilt element by
// element in float64 from the spec's explicit row/column index formula.
#include "video/qwen_preprocess.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "tests/support/expect_error.h"

namespace {
using lvrl::InputError;
using namespace lvrl::video;
using Size = std::pair<int, int>;  // (height, width)

constexpr int64_t kImageMinPixels = 4 * 28 * 28;      // qwen-vl-utils MIN_PIXELS
constexpr int64_t kImageMaxPixels = 16384 * 28 * 28;  // qwen-vl-utils MAX_PIXELS

using lvrl::test::expect_input_error_mentioning;

// ---------------------------------------------------------------------------------------------
// smart_resize / video_frame_size

TEST(QwenPreprocessSmartResize, SpecImageExamples) {
  // docs/model.md#image-path: 640×480 → 644×476 → 391 tokens; 1920×1080 → 1932×1092 → 2691 tokens.
  const Size vga = smart_resize(480, 640, 28, kImageMinPixels, kImageMaxPixels);
  EXPECT_EQ(vga, Size(476, 644));
  EXPECT_EQ((vga.first / 28) * (vga.second / 28), 391);
  const Size full_hd = smart_resize(1080, 1920, 28, kImageMinPixels, kImageMaxPixels);
  EXPECT_EQ(full_hd, Size(1092, 1932));
  EXPECT_EQ((full_hd.first / 28) * (full_hd.second / 28), 2691);
}

TEST(QwenPreprocessSmartResize, RoundsHalfToEvenLikePython) {
  // x/28 = 2.5 → 2 (70 becomes 56, not 84), 3.5 → 4, 4.5 → 4, 1.5 → 2.
  EXPECT_EQ(smart_resize(70, 280, 28, kImageMinPixels, kImageMaxPixels), Size(56, 280));
  EXPECT_EQ(smart_resize(98, 280, 28, kImageMinPixels, kImageMaxPixels), Size(112, 280));
  EXPECT_EQ(smart_resize(126, 280, 28, kImageMinPixels, kImageMaxPixels), Size(112, 280));
  EXPECT_EQ(smart_resize(42, 280, 28, kImageMinPixels, kImageMaxPixels), Size(56, 280));
}

TEST(QwenPreprocessSmartResize, GrowsBelowMinPixels) {
  // 28×28 = 784 < 3136: beta = sqrt(3136/1200); ceil(30β/28) = 2, ceil(40β/28) = 3.
  EXPECT_EQ(smart_resize(30, 40, 28, kImageMinPixels, kImageMaxPixels), Size(56, 84));
  // 140×252 < 100352: beta = sqrt(100352/36864); ceil(144β/28) = 9, ceil(256β/28) = 16.
  EXPECT_EQ(smart_resize(144, 256, 28, kQwenVideoMinPixels, kQwenVideoMaxPixels), Size(252, 448));
}

TEST(QwenPreprocessSmartResize, ShrinksAboveMaxPixels) {
  // beta = sqrt(921600/602112) = 1.237; floor(720/β/28) = 20, floor(1280/β/28) = 36.
  EXPECT_EQ(smart_resize(720, 1280, 28, kQwenVideoMinPixels, kQwenVideoMaxPixels), Size(560, 1008));
  EXPECT_EQ(smart_resize(1080, 1920, 28, kQwenVideoMinPixels, kQwenVideoMaxPixels), Size(560, 1008));
}

TEST(QwenPreprocessSmartResize, ClampsTinySidesToFactor) {
  EXPECT_EQ(smart_resize(10, 10, 28, 0, kImageMaxPixels), Size(28, 28));  // round(0.36) = 0 → 28
  EXPECT_EQ(smart_resize(10, 1000, 28, 0, kImageMaxPixels), Size(28, 1008));
  EXPECT_EQ(smart_resize(1, 200, 28, kImageMinPixels, kImageMaxPixels), Size(28, 196));  // ratio 200 is fine
  // Shrinking by beta = 2 takes the short side to floor(14/28) = 0; qwen-vl-utils keeps 28.
  EXPECT_EQ(smart_resize(28, 5600, 28, 0, 39200), Size(28, 2800));
}

TEST(QwenPreprocessSmartResize, RejectsAspectOver200AndEmptySides) {
  expect_input_error_mentioning([] { smart_resize(1, 201, 28, kImageMinPixels, kImageMaxPixels); },
                                {"1x201", "200"});
  expect_input_error_mentioning([] { smart_resize(5628, 28, 28, kImageMinPixels, kImageMaxPixels); },
                                {"5628x28", "201"});
  expect_input_error_mentioning([] { smart_resize(0, 28, 28, kImageMinPixels, kImageMaxPixels); }, {"0x28"});
  expect_input_error_mentioning(
      [] { video_frame_size(2010, 10, 20, kQwenVideoMinPixels, kQwenVideoMaxPixels, kQwenVideoTotalPixels); },
      {"2010x10"});
}

// smart_resize restated with no floating point at all, for a brute-force comparison:
//  - round half-even of side/f from the integer quotient and remainder;
//  - the shrink branch's floor(side/β/f), β = sqrt(H·W/max), is the largest k with
//    (f·k)²·other <= side·max; the grow branch's ceil(side·β/f), β = sqrt(min/(H·W)), is the
//    smallest k with (f·k)²·other >= side·min.
// Where (f·k)²·other equals side·bound exactly, the true quotient is the integer k and a
// floating-point evaluation (Python's too) may land just either side of it: the implementation may
// then give k or its neighbour, and the test accepts both.
struct ExactSide {
  int64_t value;
  bool tie;  // an exact integer boundary: value ± factor is also acceptable
};

int64_t round_half_even_ratio(int64_t numerator, int64_t denominator) {
  int64_t quotient = numerator / denominator;
  const int64_t twice_remainder = 2 * (numerator % denominator);
  if (twice_remainder > denominator || (twice_remainder == denominator && quotient % 2 == 1)) ++quotient;
  return quotient;
}

ExactSide exact_shrink(int64_t side, int64_t other, int64_t max_pixels, int64_t factor) {
  const int64_t target = side * max_pixels;
  const auto fits = [&](int64_t k) { return (factor * k) * (factor * k) * other <= target; };
  int64_t k = static_cast<int64_t>(std::sqrt(static_cast<double>(target) / other) / factor);  // a guess
  while (k > 0 && !fits(k)) --k;
  while (fits(k + 1)) ++k;
  const bool tie = k > 0 && (factor * k) * (factor * k) * other == target;
  return {std::max(factor, k * factor), tie};
}

ExactSide exact_grow(int64_t side, int64_t other, int64_t min_pixels, int64_t factor) {
  const int64_t target = side * min_pixels;
  const auto reaches = [&](int64_t k) { return (factor * k) * (factor * k) * other >= target; };
  int64_t k = static_cast<int64_t>(std::sqrt(static_cast<double>(target) / other) / factor);  // a guess
  while (!reaches(k)) ++k;
  while (k > 0 && reaches(k - 1)) --k;
  return {k * factor, (factor * k) * (factor * k) * other == target};
}

std::pair<ExactSide, ExactSide> exact_smart_resize(int64_t h, int64_t w, int64_t factor, int64_t min_pixels,
                                                   int64_t max_pixels) {
  const int64_t h_bar = std::max(factor, round_half_even_ratio(h, factor) * factor);
  const int64_t w_bar = std::max(factor, round_half_even_ratio(w, factor) * factor);
  if (h_bar * w_bar > max_pixels) {
    return {exact_shrink(h, w, max_pixels, factor), exact_shrink(w, h, max_pixels, factor)};
  }
  if (h_bar * w_bar < min_pixels) {
    return {exact_grow(h, w, min_pixels, factor), exact_grow(w, h, min_pixels, factor)};
  }
  return {{h_bar, false}, {w_bar, false}};
}

bool side_matches(int got, ExactSide expected, int64_t factor, bool shrink) {
  if (got == expected.value) return true;
  if (!expected.tie) return false;
  return shrink ? got == std::max(factor, expected.value - factor) : got == expected.value + factor;
}

TEST(QwenPreprocessSmartResize, MatchesExactIntegerReferenceOnGrid) {
  std::vector<int> sides;
  for (int s = 1; s <= 64; ++s) sides.push_back(s);
  for (int s = 65; s <= 4200; s += 13) sides.push_back(s);
  std::mt19937 rng(20241127);
  std::uniform_int_distribution<int> random_side(1, 8000);
  for (int i = 0; i < 200; ++i) sides.push_back(random_side(rng));

  struct Bounds {
    int64_t min_pixels, max_pixels;
  };
  const std::vector<Bounds> settings = {{kImageMinPixels, kImageMaxPixels},
                                        {kQwenVideoMinPixels, kQwenVideoMaxPixels},
                                        {784, 39200},
                                        {0, 28 * 28}};
  const int64_t factor = 28;
  int64_t compared = 0, ties = 0, rejected = 0;
  for (const auto& bounds : settings) {
    for (int h : sides) {
      for (int w : sides) {
        if (std::max(h, w) > 200 * std::min(h, w)) {
          EXPECT_THROW(smart_resize(h, w, factor, bounds.min_pixels, bounds.max_pixels), InputError);
          ++rejected;
          continue;
        }
        const Size got = smart_resize(h, w, factor, bounds.min_pixels, bounds.max_pixels);
        const auto [eh, ew] = exact_smart_resize(h, w, factor, bounds.min_pixels, bounds.max_pixels);
        const bool shrink = std::max<int64_t>(factor, round_half_even_ratio(h, factor) * factor) *
                                std::max<int64_t>(factor, round_half_even_ratio(w, factor) * factor) >
                            bounds.max_pixels;
        ++compared;
        ties += eh.tie || ew.tie;
        ASSERT_TRUE(side_matches(got.first, eh, factor, shrink) &&
                    side_matches(got.second, ew, factor, shrink))
            << h << "x" << w << " min " << bounds.min_pixels << " max " << bounds.max_pixels << ": got "
            << got.first << "x" << got.second << ", exact " << eh.value << "x" << ew.value
            << " (rng seed 20241127)";
      }
    }
  }
  RecordProperty("compared", std::to_string(compared));
  RecordProperty("exact_ties", std::to_string(ties));
  EXPECT_GT(compared, 400000);
  EXPECT_GT(rejected, 0);
}

TEST(QwenPreprocessVideoFrameSize, SpecWorkedExample) {
  // docs/model.md#video-path: 1280×720, 30 fps, 10 s → 20 frames, max_px 602112, 560×1008, grid [10, 40, 72],
  // 10·20·36 = 7200 video tokens.
  const int64_t frames = smart_nframes(300, 30.0, kQwenDefaultFps, kQwenFpsMinFrames, kQwenFpsMaxFrames);
  ASSERT_EQ(frames, 20);
  const Size size =
      video_frame_size(720, 1280, frames, kQwenVideoMinPixels, kQwenVideoMaxPixels, kQwenVideoTotalPixels);
  EXPECT_EQ(size, Size(560, 1008));
  const std::array<int64_t, 3> grid_thw = {frames / 2, size.first / 14, size.second / 14};
  EXPECT_EQ(grid_thw, (std::array<int64_t, 3>{10, 40, 72}));
  EXPECT_EQ(grid_thw[0] * (grid_thw[1] / 2) * (grid_thw[2] / 2), 7200);
}

TEST(QwenPreprocessVideoFrameSize, TotalBudgetAndMinimumFloor) {
  // 768 frames: 90316800/768·2 = 235200 per frame beats 602112 → 336×644 (qwen-vl-utils gives the same).
  EXPECT_EQ(video_frame_size(720, 1280, 768, kQwenVideoMinPixels, kQwenVideoMaxPixels, kQwenVideoTotalPixels),
            Size(336, 644));
  // 4000 frames: the budget 45158.4 is below int(100352·1.05) = 105369, which wins → 224×420.
  EXPECT_EQ(
      video_frame_size(720, 1280, 4000, kQwenVideoMinPixels, kQwenVideoMaxPixels, kQwenVideoTotalPixels),
      Size(224, 420));
  expect_input_error_mentioning(
      [] { video_frame_size(720, 1280, 0, kQwenVideoMinPixels, kQwenVideoMaxPixels, 1); }, {"frames"});
}

TEST(QwenPreprocessVideoFrameSize, BudgetStaysFractional) {
  // 560×1008 = 564480 pixels. total 1128959 over 4 frames gives a budget of 564479.5: just under,
  // so qwen-vl-utils shrinks (to 532×980); a budget truncated or rounded to 564480 would not.
  EXPECT_EQ(video_frame_size(560, 1008, 4, kQwenVideoMinPixels, kQwenVideoMaxPixels, 1128959),
            Size(532, 980));
  EXPECT_EQ(video_frame_size(560, 1008, 4, kQwenVideoMinPixels, kQwenVideoMaxPixels, 1128960),
            Size(560, 1008));
}

// ---------------------------------------------------------------------------------------------
// smart_nframes / qwen_frame_indices

TEST(QwenPreprocessFrames, SmartNframesMatchesQwenVlUtils) {
  const auto nframes = [](int64_t total, double video_fps, double fps = 2.0, int64_t min_frames = 4,
                          int64_t max_frames = 768) {
    return smart_nframes(total, video_fps, fps, min_frames, max_frames);
  };
  EXPECT_EQ(nframes(300, 30), 20);                   // spec example: 10 s at 30 fps, 2 fps
  EXPECT_EQ(nframes(30, 30), 4);                     // 1 s → 2 frames, raised to min_frames
  EXPECT_EQ(nframes(30, 30, 2.0, 5), 6);             // odd min_frames rounds up to even
  EXPECT_EQ(nframes(108000, 30), 768);               // 1 h → 7200, capped at max_frames
  EXPECT_EQ(nframes(108000, 30, 2.0, 4, 101), 100);  // odd max_frames rounds down to even
  EXPECT_EQ(nframes(10, 1), 10);                     // 20 wanted, only 10 exist
  EXPECT_EQ(nframes(9, 1), 8);                       // capped at 9, then even
  EXPECT_EQ(nframes(301, 29.97), 20);                // 20.087 → 20
  EXPECT_EQ(nframes(3000, 30, 0.5), 50);
  // Passing 768 is the same as qwen-vl-utils' default min(768, total) (total caps it anyway).
  for (int64_t total : {5, 7, 100, 767, 768, 769, 2000}) {
    EXPECT_EQ(nframes(total, 1.0, 3.0), nframes(total, 1.0, 3.0, 4, std::min<int64_t>(768, total))) << total;
  }
  expect_input_error_mentioning([&] { nframes(1, 30); }, {"[2, 1]"});  // one frame: nothing to sample
  expect_input_error_mentioning([&] { nframes(0, 30); }, {"total_frames"});
  expect_input_error_mentioning([&] { nframes(100, 0); }, {"fps"});
}

// round half-even of (N - 1)·i / (n - 1), exactly, in integers.
int64_t exact_linspace_index(int64_t total_frames, int64_t n, int64_t i) {
  return round_half_even_ratio((total_frames - 1) * i, n - 1);
}

TEST(QwenPreprocessFrames, IndicesForSpecExample) {
  const std::vector<int64_t> expected = {0,   16,  31,  47,  63,  79,  94,  110, 126, 142,
                                         157, 173, 189, 205, 220, 236, 252, 268, 283, 299};
  EXPECT_EQ(qwen_frame_indices(300, 20), expected);  // round(linspace(0, 299, 20))
  for (int64_t i = 0; i < 20; ++i) EXPECT_EQ(expected[i], exact_linspace_index(300, 20, i));
}

TEST(QwenPreprocessFrames, ExactHalvesRoundToEven) {
  EXPECT_EQ(qwen_frame_indices(6, 3), (std::vector<int64_t>{0, 2, 5}));  // 2.5 → 2
  EXPECT_EQ(qwen_frame_indices(4, 3), (std::vector<int64_t>{0, 2, 3}));  // 1.5 → 2
  EXPECT_EQ(qwen_frame_indices(8, 3), (std::vector<int64_t>{0, 4, 7}));  // 3.5 → 4
  EXPECT_EQ(qwen_frame_indices(1, 1), (std::vector<int64_t>{0}));
  EXPECT_EQ(qwen_frame_indices(10, 1), (std::vector<int64_t>{0}));  // linspace(.., 1) = [start]
  expect_input_error_mentioning([] { qwen_frame_indices(10, 0); }, {"frames"});
}

TEST(QwenPreprocessFrames, Float32LinspaceDiffersFromExactOnlyAtHalves) {
  // float32 linspace is off from the exact rational value by a few ulps, which changes the rounded
  // index only where the exact value is (almost) a half. Everywhere else the indices must agree with
  // exact arithmetic; at those few points they must be one of the two neighbours. (Checked once
  // against torch 2.11 itself, AVX512, AVX2 and default kernels: the emulation gave the same rounded
  // indices on all 6.9M points of linspace(0, N-1, n), N <= 1600, n <= 80 and n in
  // {100, 128, 256, 500, 768}.)
  int64_t compared = 0, differing = 0;
  for (int64_t total = 2; total <= 2500; ++total) {
    for (int64_t n = 2; n <= std::min<int64_t>(total, 80); ++n) {
      const std::vector<int64_t> got = qwen_frame_indices(total, n);
      ASSERT_EQ(static_cast<int64_t>(got.size()), n);
      for (int64_t i = 0; i < n; ++i, ++compared) {
        const int64_t exact = exact_linspace_index(total, n, i);
        if (got[i] == exact) continue;
        ++differing;
        const double value = static_cast<double>((total - 1) * i) / static_cast<double>(n - 1);
        const double distance_from_half = std::abs(value - std::floor(value) - 0.5);
        const double few_float_ulps = 8.0 * static_cast<double>(total) * std::ldexp(1.0, -24);
        EXPECT_LE(distance_from_half, few_float_ulps)
            << "linspace(0, " << total - 1 << ", " << n << ")[" << i << "] = " << value << ": got " << got[i]
            << ", exact " << exact;
        EXPECT_EQ(std::abs(got[i] - exact), 1);
      }
      EXPECT_EQ(got.front(), 0);
      EXPECT_EQ(got.back(), total - 1);
    }
  }
  EXPECT_LT(differing * 1000, compared) << differing << " of " << compared;
  // A documented case: linspace(0, 125, 31)[15] is exactly 62.5 (→ 62 half-even), but float32 gives
  // 125 - fl(fl(125/30)·15) = 62.5000038, which torch 2.11 rounds to 63. (torch < 2.1 vectorized
  // this kernel and gets 62.5 → 62 here, e.g. Debian's LibTorch 1.13.)
  EXPECT_EQ(exact_linspace_index(126, 31, 15), 62);
  EXPECT_EQ(qwen_frame_indices(126, 31)[15], 63);
}

// ---------------------------------------------------------------------------------------------
// patchify_video

at::Tensor random_frames(int64_t t, int64_t h, int64_t w, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  at::Tensor frames = at::empty({t, h, w, 3}, at::kByte);
  uint8_t* data = frames.data_ptr<uint8_t>();
  for (int64_t i = 0; i < frames.numel(); ++i) data[i] = static_cast<uint8_t>(byte(rng));
  return frames;
}

// Every element of `patches` against the spec's index formula evaluated in float64: the patch at
// row r = bh·m + mh, column q = bw·m + mw of temporal slice g sits at row
// g·gh·gw + ((bh·(gw/m) + bw)·m² + mh·m + mw), and its pixel (c, frame tp, py, px) at column
// c·(tp_size·p·p) + tp·(p·p) + py·p + px. Frames past the end repeat the last one.
void expect_matches_reference(const at::Tensor& frames, const PixelPatches& patches,
                              const QwenVisionParams& params, uint32_t seed) {
  const int64_t p = params.patch_size, tps = params.temporal_patch_size, m = params.merge_size;
  const int64_t t = frames.size(0), h = frames.size(1), w = frames.size(2);
  const int64_t gt = (t + tps - 1) / tps, gh = h / p, gw = w / p;
  ASSERT_EQ(patches.grid_thw, (std::array<int64_t, 3>{gt, gh, gw}));
  ASSERT_EQ(patches.pixel_values.scalar_type(), at::kFloat);
  ASSERT_EQ(patches.pixel_values.sizes(), (at::IntArrayRef{gt * gh * gw, 3 * tps * p * p}));
  ASSERT_TRUE(patches.pixel_values.is_contiguous());
  const auto in = frames.accessor<uint8_t, 4>();
  const auto out = patches.pixel_values.accessor<float, 2>();
  std::vector<uint8_t> visited(static_cast<size_t>(patches.pixel_values.numel()), 0);
  double worst = 0;
  for (int64_t g = 0; g < gt; ++g)
    for (int64_t bh = 0; bh < gh / m; ++bh)
      for (int64_t bw = 0; bw < gw / m; ++bw)
        for (int64_t mh = 0; mh < m; ++mh)
          for (int64_t mw = 0; mw < m; ++mw) {
            const int64_t row = g * gh * gw + ((bh * (gw / m) + bw) * m * m + mh * m + mw);
            for (int64_t c = 0; c < 3; ++c)
              for (int64_t tp = 0; tp < tps; ++tp)
                for (int64_t py = 0; py < p; ++py)
                  for (int64_t px = 0; px < p; ++px) {
                    const int64_t col = c * (tps * p * p) + tp * (p * p) + py * p + px;
                    const int64_t frame = std::min(g * tps + tp, t - 1);
                    const int64_t y = (bh * m + mh) * p + py, x = (bw * m + mw) * p + px;
                    const double expected = (in[frame][y][x][c] / 255.0 - params.mean[c]) / params.std[c];
                    const double error = std::abs(static_cast<double>(out[row][col]) - expected);
                    worst = std::max(worst, error);
                    ++visited[static_cast<size_t>(row * out.size(1) + col)];
                    if (error > 1e-6) {
                      FAIL() << "row " << row << " col " << col << " (g " << g << " bh " << bh << " bw " << bw
                             << " mh " << mh << " mw " << mw << " c " << c << " tp " << tp << " py " << py
                             << " px " << px << "): got " << out[row][col] << ", expected " << expected
                             << "; frames " << t << "x" << h << "x" << w << ", seed " << seed;
                    }
                  }
          }
  for (size_t i = 0; i < visited.size(); ++i)
    ASSERT_EQ(visited[i], 1) << "element " << i << " covered wrongly";
  ::testing::Test::RecordProperty("worst_abs_error", std::to_string(worst));
}

TEST(QwenPreprocessPatchify, MatchesFloat64ReferenceLayout) {
  const QwenVisionParams params;
  struct Case {
    int64_t t, h, w;
  };
  uint32_t seed = 7;
  for (const Case& c : {Case{4, 56, 84}, Case{2, 28, 28}, Case{2, 84, 56}, Case{6, 28, 56}}) {
    const at::Tensor frames = random_frames(c.t, c.h, c.w, ++seed);
    expect_matches_reference(frames, patchify_video(frames, params), params, seed);
  }
}

TEST(QwenPreprocessPatchify, OddFrameCountRepeatsTheLastFrame) {
  const QwenVisionParams params;
  const uint32_t seed = 31;
  const at::Tensor frames = random_frames(3, 56, 56, seed);
  const PixelPatches patches = patchify_video(frames, params);
  expect_matches_reference(frames, patches, params, seed);
  // The second temporal slice pairs frame 2 with a copy of itself: tp = 1 columns equal tp = 0.
  const int64_t per_slice = patches.grid_thw[1] * patches.grid_thw[2];
  const at::Tensor last_slice =
      patches.pixel_values.narrow(0, per_slice, per_slice).view({per_slice, 3, 2, 196});
  EXPECT_TRUE(at::equal(last_slice.select(2, 0), last_slice.select(2, 1)));
}

TEST(QwenPreprocessPatchify, OtherPatchGeometry) {
  // The layout generalises: patch 4, temporal 3, merge 2 (and odd T = 4 → padded to 6).
  QwenVisionParams params;
  params.patch_size = 4;
  params.temporal_patch_size = 3;
  params.mean = {0.5, 0.25, 0.125};
  params.std = {0.5, 1.0, 2.0};
  const uint32_t seed = 99;
  const at::Tensor frames = random_frames(4, 16, 24, seed);
  expect_matches_reference(frames, patchify_video(frames, params), params, seed);
}

TEST(QwenPreprocessPatchify, AcceptsNonContiguousFrames) {
  // Frames viewed from a [T, 3, H, W] tensor: same values, same patches.
  const at::Tensor frames = random_frames(2, 28, 56, 5);
  const at::Tensor channels_first = frames.permute({0, 3, 1, 2}).contiguous();  // [T, 3, H, W]
  const at::Tensor strided = channels_first.permute({0, 2, 3, 1});              // [T, H, W, 3] view
  ASSERT_FALSE(strided.is_contiguous());
  EXPECT_TRUE(at::equal(patchify_video(strided).pixel_values, patchify_video(frames).pixel_values));
}

TEST(QwenPreprocessPatchify, NormalizesExtremesLikeTheSpec) {
  // 0 → -mean/std and 255 → (1 - mean)/std per channel, in float32.
  const QwenVisionParams params;
  at::Tensor frames = at::zeros({2, 28, 28, 3}, at::kByte);
  frames.select(0, 1).fill_(255);
  const at::Tensor values = patchify_video(frames, params).pixel_values.view({4, 3, 2, 196});
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(values[0][c][0][0].item<float>(), -params.mean[c] / params.std[c], 1e-6);
    EXPECT_NEAR(values[0][c][1][0].item<float>(), (1.0 - params.mean[c]) / params.std[c], 1e-6);
  }
}

// A dump from another implementation: transformers 5.17's Qwen2VLVideoProcessor (torch 2.11,
// do_resize=False) on this deterministic 4×56×84 clip. 36 of its values, and an FNV-1a hash of all
// 48×1176 little-endian float32s: patchify_video must reproduce them bit for bit.
at::Tensor formula_clip(int64_t t_size, int64_t h_size, int64_t w_size) {
  at::Tensor frames = at::empty({t_size, h_size, w_size, 3}, at::kByte);
  auto pixels = frames.accessor<uint8_t, 4>();
  for (int64_t t = 0; t < t_size; ++t)
    for (int64_t y = 0; y < h_size; ++y)
      for (int64_t x = 0; x < w_size; ++x)
        for (int64_t c = 0; c < 3; ++c)
          pixels[t][y][x][c] = (t * 37 + y * 11 + x * 7 + c * 101 + (y * x) % 13) % 256;
  return frames;
}

TEST(QwenPreprocessPatchify, BitIdenticalToHfVideoProcessor) {
  struct Value {
    int64_t row, col;
    float hf;
  };
  const std::vector<Value> hf_values = {
      {0, 0, -0x1.cad1b8p+0f},    {0, 197, -0x1.2661eep+0f},  {0, 392, -0x1.e3f7d8p-3f},
      {0, 601, 0x1.af474cp+0f},   {0, 999, -0x1.fe5464p-1f},  {0, 1175, 0x1.9b0452p+0f},
      {5, 0, -0x1.3cce44p+0f},    {5, 197, -0x1.30bcf4p-1f},  {5, 392, 0x1.55ff88p-2f},
      {5, 601, -0x1.964664p+0f},  {5, 999, -0x1.a7a4dep-2f},  {5, 1175, 0x1.12acc2p+1f},
      {13, 0, 0x1.b4f062p-2f},    {13, 197, 0x1.192554p+0f},  {13, 392, 0x1.05be3cp+1f},
      {13, 601, 0x1.fb6324p-4f},  {13, 999, 0x1.22e2cp+0f},   {13, 1175, 0x1.035fdcp-3f},
      {22, 0, -0x1.724bacp-2f},   {22, 197, 0x1.13ed2cp-3f},  {22, 392, 0x1.3c04d4p+0f},
      {22, 601, -0x1.5f82e6p-1f}, {22, 999, 0x1.306c64p-2f},  {22, 1175, -0x1.485012p-1f},
      {31, 0, -0x1.9a3c54p+0f},   {31, 197, -0x1.e41fa2p-1f}, {31, 392, -0x1.519af8p-5f},
      {31, 601, 0x1.e1396ep+0f},  {31, 999, -0x1.c41592p-1f}, {31, 1175, 0x1.ca575cp+0f},
      {47, 0, -0x1.bbded4p+0f},   {47, 197, -0x1.0c38ep+0f},  {47, 392, -0x1.690646p-3f},
      {47, 601, 0x1.bea57ep+0f},  {47, 999, -0x1.06720cp+0f}, {47, 1175, 0x1.a99406p+0f},
  };
  const PixelPatches patches = patchify_video(formula_clip(4, 56, 84));
  ASSERT_EQ(patches.grid_thw, (std::array<int64_t, 3>{2, 4, 6}));
  const auto out = patches.pixel_values.accessor<float, 2>();
  for (const Value& v : hf_values) {
    EXPECT_EQ(out[v.row][v.col], v.hf) << "row " << v.row << " col " << v.col << std::hexfloat << ": got "
                                       << out[v.row][v.col] << ", HF " << v.hf;
  }
  uint64_t hash = 1469598103934665603ull;  // FNV-1a 64
  const auto* bytes = static_cast<const unsigned char*>(patches.pixel_values.data_ptr());
  for (int64_t i = 0; i < patches.pixel_values.numel() * 4; ++i) hash = (hash ^ bytes[i]) * 1099511628211ull;
  EXPECT_EQ(hash, 0x27143cad85ebccedull) << "some value differs from HF's in its last bits";
}

TEST(QwenPreprocessPatchify, RejectsBadFramesClearly) {
  expect_input_error_mentioning([] { patchify_video(at::zeros({2, 28, 28, 3}, at::kFloat)); }, {"uint8"});
  expect_input_error_mentioning(
      [] {
        patchify_video(at::zeros({2, 30, 28, 3}, at::kByte));
      },
      {"[2, 30, 28, 3]", "multiples", "28"});
  expect_input_error_mentioning(
      [] {
        patchify_video(at::zeros({2, 28, 42, 3}, at::kByte));
      },
      {"[2, 28, 42, 3]", "28"});
  expect_input_error_mentioning(
      [] {
        patchify_video(at::zeros({28, 28, 3}, at::kByte));
      },
      {"[28, 28, 3]", "[T, H, W, 3]"});
  expect_input_error_mentioning(
      [] {
        patchify_video(at::zeros({2, 28, 28, 4}, at::kByte));
      },
      {"[2, 28, 28, 4]", "RGB"});
  expect_input_error_mentioning([] { patchify_video(at::zeros({0, 28, 28, 3}, at::kByte)); }, {"T >= 1"});
  expect_input_error_mentioning([] { patchify_video(at::Tensor()); }, {"undefined"});
}

}  // namespace
