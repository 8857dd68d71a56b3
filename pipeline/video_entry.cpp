#include "pipeline/video_entry.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "cache/content_key.h"
#include "core/error.h"
#include "video/on_damage.h"

namespace lvrl::pipeline {
namespace {

[[noreturn]] void broken(const std::string& key, const std::string& field, const std::string& problem) {
  throw Error(fmt::format("cache entry {}: metadata {} {}", key, field, problem));
}

}  // namespace

std::string video_embedding_key(const Hash128& video_hash, const VideoRecipe& recipe,
                                const std::string& fingerprint) {
  return cache::embedding_key(
      {video_hash, recipe.sampling_description(), recipe.preprocessing_description(), fingerprint});
}

cache::EmbeddingMetadata video_entry_metadata(const std::string& producer, const std::string& video_path,
                                              const Hash128& video_hash, const PreparedVideo& video,
                                              const VideoRecipe& recipe, const std::string& fingerprint) {
  cache::EmbeddingMetadata metadata;
  const auto& grid = video.patches.grid_thw;
  metadata.grid_thw.assign(grid.begin(), grid.end());
  metadata.frame_timestamps = video.frame_timestamps;
  metadata.encoder_fingerprint = fingerprint;
  const FramePick& pick = video.pick;
  metadata.extra = {
      {"producer", producer},
      {"video", video_path},
      {"video_xxh128", video_hash.hex()},
      {"sampling", recipe.sampling_description()},
      {"preprocessing", recipe.preprocessing_description()},
      {"frames", std::to_string(pick.times.size())},
      {"video_frames", std::to_string(pick.total_frames)},
      {"video_fps", fmt::format("{}", pick.video_fps)},
      // The processor's fps: second_per_grid_t = temporal_patch_size / sample_fps (mrope positions).
      {"sample_fps", fmt::format("{}", pick.sample_fps)},
      {"second_per_grid_t", fmt::format("{}", recipe.vision.temporal_patch_size / pick.sample_fps)},
      {"frame_size",
       fmt::format("{}x{}", grid[2] * recipe.vision.patch_size, grid[1] * recipe.vision.patch_size)},
      // Per frame: target time, the time of the frame used, and whether it stands in for a damaged one.
      {"frame_records", video::frame_records(pick.times, video.frame_timestamps, video.damaged).dump()},
      {"damaged_spans", video::spans_json(video.damaged_spans).dump()},
  };
  return metadata;
}

VideoEntryFacts read_video_entry(const std::string& key, const cache::EmbeddingMetadata& metadata,
                                 const video::QwenVisionParams& vision) {
  VideoEntryFacts facts;
  const auto& grid = metadata.grid_thw;
  if (grid.size() != 3 || grid[0] <= 0 || grid[1] <= 0 || grid[2] <= 0) {
    broken(key, "grid_thw",
           fmt::format("is [{}]; expected three positive numbers (one video)", fmt::join(grid, ", ")));
  }
  facts.grid_thw = {grid[0], grid[1], grid[2]};
  const int64_t frames = static_cast<int64_t>(metadata.frame_timestamps.size());
  const int64_t temporal = vision.temporal_patch_size;
  if ((frames + temporal - 1) / temporal != grid[0]) {
    broken(key, "frame_timestamps",
           fmt::format("holds {} times for {} temporal patches of {} frames", frames, grid[0], temporal));
  }
  facts.frame_timestamps = metadata.frame_timestamps;
  auto found = metadata.extra.find("second_per_grid_t");
  if (found == metadata.extra.end()) broken(key, "second_per_grid_t", "is missing");
  const char* text = found->second.c_str();
  char* end = nullptr;
  errno = 0;
  facts.second_per_grid_t = std::strtod(text, &end);
  if (end == text || *end != '\0' || errno != 0 || !(facts.second_per_grid_t > 0) ||
      !std::isfinite(facts.second_per_grid_t)) {
    broken(key, "second_per_grid_t", fmt::format("is '{}'; expected a positive number", found->second));
  }
  return facts;
}

}  // namespace lvrl::pipeline
