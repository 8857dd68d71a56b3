// Follows qwen-vl-utils' vision_process.py as shipped with Qwen2.5-VL (0.0.10/0.0.11: smart_resize
// clamps the shrunk side to at least `factor`; the 0.0.14 copy in the Qwen3-VL repository dropped
// that clamp and can return 0) and the HF Qwen2-VL processor's patch flattening (docs/model.md#processor).
// Python evaluates these formulas in double with true division; so do we, in the same order, so the
// floor/ceil/round steps see the same doubles.
#include "video/qwen_preprocess.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor_format.h"

namespace lvrl::video {
namespace {

constexpr double kMaxAspectRatio = 200;
constexpr int64_t kFrameFactor = 2;  // qwen-vl-utils' FRAME_FACTOR: frame counts are even

// Python's round(): half to even. nearbyint honours the current rounding mode, which is
// round-to-nearest-even unless someone changed it; std::round would round halves away from zero.
double round_half_even(double x) {
  return std::nearbyint(x);
}

std::string size_text(int height, int width) {
  return fmt::format("{}x{} (height x width)", height, width);
}

// smart_resize with real-valued bounds: video_frame_size's budget, total_pixels / frames · 2, is a
// Python float, and both the comparison and beta use it unrounded.
std::pair<int, int> smart_resize_real(int height, int width, int factor, double min_pixels,
                                      double max_pixels) {
  if (height <= 0 || width <= 0) {
    throw InputError({"", 0, "size", size_text(height, width)}, "frame sides must be positive");
  }
  if (factor <= 0) throw InputError({"", 0, "factor", std::to_string(factor)}, "must be positive");
  const double h = height, w = width, f = factor;
  const double aspect = std::max(h, w) / std::min(h, w);
  if (aspect > kMaxAspectRatio) {
    throw InputError({"", 0, "size", size_text(height, width)},
                     fmt::format("aspect ratio {:.6g} is over {}, the most Qwen's smart_resize accepts",
                                 aspect, kMaxAspectRatio));
  }
  int64_t h_bar = std::max<int64_t>(factor, static_cast<int64_t>(round_half_even(h / f)) * factor);
  int64_t w_bar = std::max<int64_t>(factor, static_cast<int64_t>(round_half_even(w / f)) * factor);
  const double area = static_cast<double>(int64_t{height} * width);  // exact: < 2^53
  if (static_cast<double>(h_bar * w_bar) > max_pixels) {
    const double beta = std::sqrt(area / max_pixels);
    h_bar = std::max<int64_t>(factor, static_cast<int64_t>(std::floor(h / beta / f)) * factor);
    w_bar = std::max<int64_t>(factor, static_cast<int64_t>(std::floor(w / beta / f)) * factor);
  } else if (static_cast<double>(h_bar * w_bar) < min_pixels) {
    const double beta = std::sqrt(min_pixels / area);
    h_bar = static_cast<int64_t>(std::ceil(h * beta / f)) * factor;
    w_bar = static_cast<int64_t>(std::ceil(w * beta / f)) * factor;
  }
  return {static_cast<int>(h_bar), static_cast<int>(w_bar)};
}

void check_frames(const at::Tensor& frames, const QwenVisionParams& params) {
  const auto shape_text = [&] { return frames.defined() ? fmt::format("{}", frames.sizes()) : "undefined"; };
  if (!frames.defined() || frames.dim() != 4 || frames.size(3) != 3 || frames.size(0) == 0) {
    throw InputError({"", 0, "frames", shape_text()}, "expected a [T, H, W, 3] RGB tensor with T >= 1");
  }
  if (frames.scalar_type() != at::kByte) {
    throw InputError({"", 0, "frames", std::string(c10::toString(frames.scalar_type()))},
                     "expected uint8 RGB frames");
  }
  if (params.patch_size <= 0 || params.temporal_patch_size <= 0 || params.merge_size <= 0) {
    throw InputError({"", 0, "vision params",
                      fmt::format("patch {} temporal {} merge {}", params.patch_size,
                                  params.temporal_patch_size, params.merge_size)},
                     "patch, temporal patch and merge sizes must be positive");
  }
  const int64_t factor = int64_t{params.patch_size} * params.merge_size;
  if (frames.size(1) % factor != 0 || frames.size(2) % factor != 0) {
    throw InputError({"", 0, "frames", shape_text()},
                     fmt::format("H and W must be multiples of patch_size x merge_size = {}; "
                                 "resize with smart_resize first",
                                 factor));
  }
}

}  // namespace

std::pair<int, int> smart_resize(int height, int width, int factor, int64_t min_pixels, int64_t max_pixels) {
  return smart_resize_real(height, width, factor, static_cast<double>(min_pixels),
                           static_cast<double>(max_pixels));
}

std::pair<int, int> video_frame_size(int height, int width, int64_t frames, int64_t min_pixels,
                                     int64_t max_pixels, int64_t total_pixels, int factor) {
  if (frames <= 0) throw InputError({"", 0, "frames", std::to_string(frames)}, "must be positive");
  // max(min(VIDEO_MAX_PIXELS, total_pixels / nframes * FRAME_FACTOR), int(min_pixels * 1.05)):
  // the budget stays a double; int() truncates. With max_pixels = kQwenVideoMaxPixels this is
  // qwen-vl-utils with no per-element max_pixels; a per-element max_pixels m between
  // int(1.05·min_pixels) and kQwenVideoMaxPixels gives the same result passed here as max_pixels.
  const double budget = static_cast<double>(total_pixels) / static_cast<double>(frames) * kFrameFactor;
  const double floor_pixels = std::trunc(static_cast<double>(min_pixels) * 1.05);
  const double max_px = std::max(std::min(static_cast<double>(max_pixels), budget), floor_pixels);
  return smart_resize_real(height, width, factor, static_cast<double>(min_pixels), max_px);
}

int64_t smart_nframes(int64_t total_frames, double video_fps, double fps, int64_t min_frames,
                      int64_t max_frames) {
  if (total_frames <= 0) {
    throw InputError({"", 0, "total_frames", std::to_string(total_frames)}, "the video has no frames");
  }
  if (!(video_fps > 0) || !(fps > 0)) {
    throw InputError({"", 0, "fps", fmt::format("video {} sampling {}", video_fps, fps)},
                     "frame rates must be positive");
  }
  // ceil_by_factor / floor_by_factor on integers, exactly as Python's math.ceil(m / 2) * 2 does.
  const double min_even = std::ceil(static_cast<double>(min_frames) / kFrameFactor) * kFrameFactor;
  const double max_even = std::floor(static_cast<double>(max_frames) / kFrameFactor) * kFrameFactor;
  double n = static_cast<double>(total_frames) / video_fps * fps;
  // min(min(max(n, min_f), max_f), total): qwen-vl-utils' default max_f is min(768, total), which
  // gives the same result as passing 768 because `total` caps it here anyway.
  n = std::min(std::min(std::max(n, min_even), max_even), static_cast<double>(total_frames));
  const auto frames = static_cast<int64_t>(std::floor(n / kFrameFactor)) * kFrameFactor;
  if (frames < kFrameFactor || frames > total_frames) {
    throw InputError(
        {"", 0, "frames to sample", std::to_string(frames)},
        fmt::format("must be within [{}, {}] (total_frames {} at {} fps, fps {}, min_frames "
                    "{}, max_frames {})",
                    kFrameFactor, total_frames, total_frames, video_fps, fps, min_frames, max_frames));
  }
  return frames;
}

std::vector<int64_t> qwen_frame_indices(int64_t total_frames, int64_t n) {
  if (total_frames <= 0 || n <= 0) {
    throw InputError({"", 0, "frames", fmt::format("{} of {}", n, total_frames)},
                     "need at least one frame to take and one to take it from");
  }
  std::vector<int64_t> indices(static_cast<size_t>(n), 0);
  if (n == 1) return indices;  // torch.linspace with one step returns the start
  // torch's CPU linspace kernel (2.1+) in float32: step = (end - start) / (steps - 1); the first
  // steps / 2 points are start + step·i, the rest end - step·(steps - 1 - i). Each float op is
  // evaluated in double and rounded to float once, which equals the float op exactly (double has
  // more than 2·24 + 2 bits, so there is no double-rounding error) and leaves the compiler nothing
  // to contract into an FMA. torch's own AVX2/AVX512 builds do contract the second form into an FMA,
  // which moves some values by an ulp but, checked against torch 2.11 on 6.9M points, never a
  // rounded index. torch < 2.1 vectorized this kernel and differs at a few exact halves.
  const auto f32 = [](double x) { return static_cast<float>(x); };
  const float start = 0.0f;
  const float end = static_cast<float>(total_frames - 1);
  const float step = f32((double{end} - double{start}) / static_cast<double>(static_cast<float>(n - 1)));
  const int64_t halfway = n / 2;
  for (int64_t i = 0; i < n; ++i) {
    float value;
    if (i < halfway) {
      value = f32(double{start} + double{f32(double{step} * static_cast<float>(i))});
    } else {
      value = f32(double{end} - double{f32(double{step} * static_cast<float>(n - 1 - i))});
    }
    indices[static_cast<size_t>(i)] =
        static_cast<int64_t>(std::nearbyint(value));  // torch.round: half to even
  }
  return indices;
}

PixelPatches patchify_video(const at::Tensor& frames, const QwenVisionParams& params) {
  check_frames(frames, params);
  const int64_t p = params.patch_size, tp = params.temporal_patch_size, m = params.merge_size;
  at::Tensor clip = frames.contiguous();  // [T, H, W, 3] uint8; a no-op for decoder output
  if (const int64_t rest = clip.size(0) % tp; rest != 0) {
    // Rare (qwen-vl-utils always yields an even count): repeat the last frame, as HF does.
    clip = at::cat({clip, clip.narrow(0, clip.size(0) - 1, 1).expand({tp - rest, -1, -1, -1})}, 0);
  }
  const int64_t gt = clip.size(0) / tp, gh = clip.size(1) / p, gw = clip.size(2) / p;

  // [gt, tp, gh/m, m(mh), p(py), gw/m, m(mw), p(px), 3(c)] → the Conv3d-kernel order
  // [gt, gh/m, gw/m, mh, mw, c, tp, py, px]: rows walk 2×2 merge blocks in raster order (each 4 rows
  // are one LLM token), columns are a flattened (C, T, p, p) kernel.
  const at::Tensor blocks =
      clip.view({gt, tp, gh / m, m, p, gw / m, m, p, 3}).permute({0, 2, 5, 3, 6, 8, 1, 4, 7});
  // One strided gather + uint8→float32 conversion into the final layout, then normalize in place.
  at::Tensor pixel_values = at::empty(blocks.sizes(), clip.options().dtype(at::kFloat));
  pixel_values.copy_(blocks);
  // x = (u8/255 - mean_c)/std_c, evaluated as HF's fast (torchvision) processors fuse it, which
  // includes every Qwen2VLVideoProcessor: (u8 - fl32(mean_c·255)) / fl32(std_c·255) in float32.
  // Checked bit for bit against transformers 5.17; the unfused order (the slow image processor of
  // older releases) differs from it in the last bit of ~70% of values.
  std::vector<float> mean_255, std_255;  // [3]
  for (int c = 0; c < 3; ++c) {
    mean_255.push_back(static_cast<float>(params.mean[c]) * 255.0f);
    std_255.push_back(static_cast<float>(params.std[c]) * 255.0f);
  }
  const auto options = pixel_values.options();
  at::Tensor per_channel = pixel_values.view({gt * gh * gw, 3, tp * p * p});  // [N, C, tp·p·p]
  per_channel.sub_(at::tensor(mean_255, options).view({1, 3, 1}))
      .div_(at::tensor(std_255, options).view({1, 3, 1}));
  return {pixel_values.view({gt * gh * gw, 3 * tp * p * p}), {gt, gh, gw}};
}

}  // namespace lvrl::video
