#include "video/probe.h"

#include <nlohmann/json.hpp>

#include "video/demuxer.h"

namespace lvrl::video {

VideoInfo probe(const std::string& path, const OpenOptions& options) {
  return Demuxer(path, options).info();
}

nlohmann::json VideoInfo::to_json() const {
  return {
      {"path", path},
      {"container", container},
      {"codec", codec},
      {"width", width},
      {"height", height},
      {"coded_width", coded_width},
      {"coded_height", coded_height},
      {"rotation", rotation},
      {"start", start_s},
      {"duration", duration_s},
      {"frame_rate", frame_rate},
      {"frame_count", frame_count >= 0 ? nlohmann::json(frame_count) : nlohmann::json(nullptr)},
      {"keyframe_count", keyframe_count},
      {"pixel_format", pixel_format},
      {"color_matrix", color_matrix},
      {"color_range", color_range},
  };
}

}  // namespace lvrl::video
