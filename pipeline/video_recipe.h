// How one video becomes the vision tower's input — which frames, at what size, as which patches —
// exactly as qwen-vl-utils' fetch_video + the HF processor do it (docs/model.md#video-path), and the two
// texts that name the recipe inside embedding cache keys (cache/content_key.h).
//
// Why frames are chosen this way:
//  - qwen-vl-utils picks frame *indices*: n = smart_nframes(...) (fps mode) or the element's
//    nframes rounded to even (count mode), then round(linspace(0, n_total - 1, n)). Embeddings must
//    match what a Python pipeline feeds the same checkpoint, so we pick the same indices.
//  - The sampler works in timestamps (container frame counts lie for VFR and truncated files), so
//    index i becomes the time i / video_fps, and n_total = round(duration · average frame rate):
//    on constant-rate video both are exact (the frame for target t is the last with pts <= t).
//  - The frame size is Qwen's smart_resize under the per-frame bounds and the whole-clip pixel
//    budget (video::video_frame_size, applied by the sampler for the frame count).
// A recipe's descriptions change whenever anything that changes the pixels changes, so a new recipe
// is a cache miss, never a stale hit. The video bytes themselves are the key's other part.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "video/probe.h"
#include "video/qwen_preprocess.h"
#include "video/sampling.h"

namespace lvrl::pipeline {

enum class FrameSelection {
  Fps,    // qwen-vl-utils' default: `fps` frames per second, within [min_frames, max_frames]
  Count,  // a fixed count (qwen-vl-utils' `nframes`), rounded to even, spread over the whole video
};

struct VideoRecipe {
  FrameSelection selection = FrameSelection::Fps;
  double fps = video::kQwenDefaultFps;
  int64_t min_frames = video::kQwenFpsMinFrames;
  int64_t max_frames = video::kQwenFpsMaxFrames;
  int64_t frames = 16;                                  // Count only
  int64_t min_pixels = video::kQwenVideoMinPixels;      // per frame
  int64_t max_pixels = video::kQwenVideoMaxPixels;      // per frame
  int64_t total_pixels = video::kQwenVideoTotalPixels;  // over the whole clip
  video::QwenVisionParams vision;                       // patch, temporal patch and merge sizes: the model's
  video::OnDamage on_damage = video::OnDamage::Previous;  // never Drop: the frame count is the recipe's

  // Values that disagree with each other (min above max, a patch grid the resize rule cannot
  // produce, frames dropped for damage): an InputError naming the preprocess.* or video.* key.
  void check() const;
  // Key parts: "qwen-vl-utils fps=2 min_frames=4 max_frames=768; ...; exact frames, on damage previous",
  // "qwen2.5-vl smart_resize ...".
  std::string sampling_description() const;
  std::string preprocessing_description() const;
};

// The frames qwen-vl-utils would take from a video described by `info`.
struct FramePick {
  std::vector<double> times;  // [n] seconds from the first frame, ascending
  int64_t total_frames = 0;   // n_total = round(duration · frame rate)
  double video_fps = 0;       // the stream's average frame rate
  double sample_fps = 0;      // n / n_total · video_fps: the processor's `fps` (second_per_grid_t = 2 / it)
};
// A video too short for the recipe (fewer than 2 frames to take) or without a frame rate or
// duration: InputError.
FramePick pick_frames(const VideoRecipe& recipe, const video::VideoInfo& info);

struct PreparedVideo {
  video::PixelPatches patches;           // pixel_values [T/2·h·w, 3·2·14·14] float32, grid_thw
  std::vector<double> frame_timestamps;  // [n] pts of each sampled frame, seconds from the first frame
  FramePick pick;
  video::VideoInfo info;
  std::vector<std::string> warnings;  // damaged spans the sampler skipped (see sample_frames)
  std::vector<bool> damaged;          // [n] the frame stands in for one that did not decode (on_damage)
  std::vector<video::DamagedSpan> damaged_spans;
};

// Probes, picks the frames, samples them (exact, damage handled as recipe.on_damage says) and
// patchifies. Unusable input (missing, not a video, undecodable at a target, too short, damaged
// under OnDamage::Error) is an InputError naming the file.
PreparedVideo prepare_video(const std::string& path, const VideoRecipe& recipe,
                            const video::SampleOptions& options = {});

// One warning naming the file, how many frames stand in for damaged ones and the damaged spans, when
// any frame does (nothing otherwise): what a run tells its user about a video it encodes anyway.
void warn_if_damaged(const std::string& path, const PreparedVideo& video, const VideoRecipe& recipe);

}  // namespace lvrl::pipeline
