// Opening a video safely and describing it. Every open has an I/O deadline (a file on a stalled
// network mount fails instead of hanging), cover art and other streams are discarded, and the
// keyframe index comes from the container when it has one (MP4/MOV) or from a demux-only scan.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace lvrl::video {

struct OpenOptions {
  double io_timeout_s = 30;  // any open or single read blocking longer than this fails
  int threads = 0;           // decoder threads; 0 = cores + 1 (at most 8)
};

struct VideoInfo {
  std::string path;
  std::string container;                  // demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
  std::string codec;                      // decoder name actually used, e.g. "h264", "libdav1d"
  int width = 0, height = 0;              // as displayed: after rotation
  int coded_width = 0, coded_height = 0;  // as decoded
  int rotation = 0;                       // clockwise degrees applied for display: 0, 90, 180, 270
  double start_s = 0;  // first frame's pts in the stream, seconds (timestamps we return are relative to it)
  double duration_s = 0;     // from the first frame to the end of the stream
  double frame_rate = 0;     // average frames per second
  int64_t frame_count = -1;  // what the container claims; -1 unknown. Never trusted for sampling.
  int64_t keyframe_count = 0;
  std::vector<double> keyframe_times;  // presentation times, seconds from the first frame, ascending
                                       // (AVI streams without pts: decode times)
  std::string pixel_format;            // e.g. "yuv420p10le"
  std::string color_matrix;            // e.g. "bt709", "unknown"
  std::string color_range;             // "tv", "pc" or "unknown"

  nlohmann::json to_json() const;  // what `lvrl video probe` prints (without keyframe_times)
};

// Throws InputError naming the file and the reason: missing, not a media file, no video stream,
// zero-length, absurd dimensions, unsupported codec.
VideoInfo probe(const std::string& path, const OpenOptions& options = {});

}  // namespace lvrl::video
