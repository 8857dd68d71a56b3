#include "pipeline/video_recipe.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/log.h"

namespace lvrl::pipeline {

void VideoRecipe::check() const {
  if (on_damage == video::OnDamage::Drop) {
    throw InputError({"", 0, "video.on_damage", "drop"},
                     "preprocess needs the recipe's frame count (the patch grid and the frame times follow "
                     "from it): use previous, nearest or error");
  }
  if (min_pixels > max_pixels) {
    throw InputError({"", 0, "preprocess.min_pixels", std::to_string(min_pixels)},
                     fmt::format("must not exceed preprocess.max_pixels ({})", max_pixels));
  }
  if (selection == FrameSelection::Fps && min_frames > max_frames) {
    throw InputError({"", 0, "preprocess.min_frames", std::to_string(min_frames)},
                     fmt::format("must not exceed preprocess.max_frames ({})", max_frames));
  }
  // The sampler resizes to multiples of 28 (video_frame_size's factor): the model's patch grid must
  // be that, or the patches would not tile the frames.
  if (vision.patch_size * vision.merge_size != 28 || vision.temporal_patch_size != 2) {
    throw InputError({"", 0, "vision config",
                      fmt::format("patch_size {} spatial_merge_size {} temporal_patch_size {}",
                                  vision.patch_size, vision.merge_size, vision.temporal_patch_size)},
                     "lvrl preprocesses for Qwen2.5-VL's 14 x 2 (x2 in time) patches only");
  }
}

std::string VideoRecipe::sampling_description() const {
  const std::string frames_text =
      selection == FrameSelection::Fps
          ? fmt::format("qwen-vl-utils fps={} min_frames={} max_frames={}", fps, min_frames, max_frames)
          : fmt::format("qwen-vl-utils nframes={}", frames);
  return frames_text +
         "; indices round(linspace(0, n_total-1, n)) at index/avg_fps; exact frames, on damage " +
         video::on_damage_name(on_damage);
}

std::string VideoRecipe::preprocessing_description() const {
  return fmt::format(
      "qwen2.5-vl smart_resize factor=28 min_pixels={} max_pixels={} total_pixels={} swscale-bicubic rgb24; "
      "patch={} temporal={} merge={} mean=[{}] std=[{}] float32",
      min_pixels, max_pixels, total_pixels, vision.patch_size, vision.temporal_patch_size, vision.merge_size,
      fmt::join(vision.mean, ", "), fmt::join(vision.std, ", "));
}

FramePick pick_frames(const VideoRecipe& recipe, const video::VideoInfo& info) {
  if (!(info.frame_rate > 0) || !(info.duration_s > 0)) {
    throw InputError(
        {info.path, 0, "", fmt::format("{} fps, {} s", info.frame_rate, info.duration_s)},
        "the stream's frame rate or duration is unknown: cannot choose frames as qwen-vl-utils does");
  }
  FramePick pick;
  pick.video_fps = info.frame_rate;
  pick.total_frames = std::llround(info.duration_s * info.frame_rate);
  int64_t n = 0;
  try {
    if (recipe.selection == FrameSelection::Fps) {
      n = video::smart_nframes(pick.total_frames, pick.video_fps, recipe.fps, recipe.min_frames,
                               recipe.max_frames);
    } else {
      // qwen-vl-utils: round_by_factor(nframes, 2), Python's round (half to even).
      n = static_cast<int64_t>(std::nearbyint(static_cast<double>(recipe.frames) / 2)) * 2;
      if (n < 2 || n > pick.total_frames) {
        throw InputError({"", 0, "frames to sample", std::to_string(n)},
                         fmt::format("must be within [2, {}] (the video's frames)", pick.total_frames));
      }
    }
  } catch (const InputError& e) {  // name the file: the problem is this video being too short
    throw InputError({info.path, 0, e.key(), e.value()}, "too short for the sampling recipe: " + e.problem());
  }
  pick.sample_fps = static_cast<double>(n) / static_cast<double>(pick.total_frames) * pick.video_fps;
  for (int64_t index : video::qwen_frame_indices(pick.total_frames, n)) {
    pick.times.push_back(static_cast<double>(index) / pick.video_fps);
  }
  return pick;
}

PreparedVideo prepare_video(const std::string& path, const VideoRecipe& recipe,
                            const video::SampleOptions& options) {
  PreparedVideo out;
  out.info = video::probe(path, options.open);
  out.pick = pick_frames(recipe, out.info);
  video::OutputSize size;
  size.min_pixels = recipe.min_pixels;
  size.max_pixels = recipe.max_pixels;
  size.total_pixels = recipe.total_pixels;
  video::SampleOptions sample_options = options;
  sample_options.on_damage = recipe.on_damage;
  video::SampledFrames sampled =
      video::sample_frames(path, video::SamplingPlan::at_times(out.pick.times), size, sample_options);
  at::Tensor timestamps = sampled.timestamps.contiguous();
  out.frame_timestamps.assign(timestamps.data_ptr<double>(),
                              timestamps.data_ptr<double>() + timestamps.numel());
  out.warnings = std::move(sampled.warnings);
  out.damaged = std::move(sampled.damaged);
  out.damaged_spans = std::move(sampled.damaged_spans);
  out.patches = video::patchify_video(sampled.frames, recipe.vision);
  return out;
}

void warn_if_damaged(const std::string& path, const PreparedVideo& video, const VideoRecipe& recipe) {
  const auto damaged = std::count(video.damaged.begin(), video.damaged.end(), true);
  if (damaged == 0) return;
  std::vector<std::string> spans;
  for (const video::DamagedSpan& span : video.damaged_spans) spans.push_back(video::span_text(span));
  LVRL_WARN("{}: {} of {} frames stand in for frames that do not decode (damaged {}; video.on_damage={})",
            path, damaged, video.damaged.size(), fmt::join(spans, ", "),
            video::on_damage_name(recipe.on_damage));
}

}  // namespace lvrl::pipeline
