// Qwen2.5-VL's video preprocessing (spec: docs/model.md#processor): how many frames to take and which
// (smart_nframes, qwen_frame_indices), the smart_resize rule that picks a frame size, and frames →
// normalized pixel patches in exactly the order the Conv3d patch embedding flattens its kernel, plus
// grid_thw. Every number here must match qwen-vl-utils + the HF processor bit for bit, so the
// rounding rules (Python's round-half-to-even, torch.linspace in float32) are reproduced exactly.
#pragma once

#include <ATen/Tensor.h>

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

namespace lvrl::video {

// qwen-vl-utils' video defaults (docs/model.md#video-path).
constexpr int64_t kQwenVideoMinPixels = 128 * 28 * 28;  // 100352 per frame
constexpr int64_t kQwenVideoMaxPixels = 768 * 28 * 28;  // 602112 per frame
constexpr int64_t kQwenVideoTotalPixels = 90316800;     // 128000·28²·0.9 over the whole clip
constexpr double kQwenDefaultFps = 2.0;
constexpr int64_t kQwenFpsMinFrames = 4;
constexpr int64_t kQwenFpsMaxFrames = 768;

struct QwenVisionParams {
  int patch_size = 14;
  int temporal_patch_size = 2;
  int merge_size = 2;
  std::array<double, 3> mean = {0.48145466, 0.4578275, 0.40821073};  // CLIP
  std::array<double, 3> std = {0.26862954, 0.26130258, 0.27577711};
};

// (height, width) multiples of `factor` near the input's, within [min_pixels, max_pixels]; rounding
// is Python's round-half-to-even. Aspect ratio over 200 is an InputError naming the size.
std::pair<int, int> smart_resize(int height, int width, int factor, int64_t min_pixels, int64_t max_pixels);

// The per-frame size qwen-vl-utils picks for `frames` frames: the per-frame maximum shrinks so the
// whole clip stays within total_pixels (but not below 1.05 × min_pixels). max_pixels is its
// VIDEO_MAX_PIXELS (kQwenVideoMaxPixels unless the element overrides it).
std::pair<int, int> video_frame_size(int height, int width, int64_t frames, int64_t min_pixels,
                                     int64_t max_pixels, int64_t total_pixels, int factor = 28);

// How many frames qwen-vl-utils samples (its `fps` mode) from `total_frames` frames at `video_fps`:
// total_frames / video_fps · fps, clamped to [min_frames, max_frames] and total_frames, rounded down
// to an even count. Pass kQwenFpsMinFrames / kQwenFpsMaxFrames for its defaults. A result outside
// [2, total_frames] (a clip too short to sample) is an InputError.
int64_t smart_nframes(int64_t total_frames, double video_fps, double fps, int64_t min_frames,
                      int64_t max_frames);

// The frames qwen-vl-utils takes: round(torch.linspace(0, total_frames - 1, n)), with linspace in
// float32 and round half-to-even, emulated bit for bit. [n] indices, ascending.
std::vector<int64_t> qwen_frame_indices(int64_t total_frames, int64_t n);

struct PixelPatches {
  at::Tensor pixel_values;          // [T/2·(H/14)·(W/14), 3·2·14·14] float32, normalized
  std::array<int64_t, 3> grid_thw;  // {T/2, H/14, W/14}
};

// frames: [T, H, W, 3] uint8 RGB with H, W multiples of patch_size·merge_size. An odd T is padded by
// repeating the last frame (as the reference processor does). The result lives on frames' device.
PixelPatches patchify_video(const at::Tensor& frames, const QwenVisionParams& params = {});

}  // namespace lvrl::video
