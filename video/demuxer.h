// One open video stream: the demuxer with an I/O deadline, its decoder, and its keyframe index.
// Every FFmpeg object is owned here (RAII), so the sampler above it deals only in packets, frames
// and timestamps. Timestamps leaving this class are seconds relative to the stream's first frame.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "video/probe.h"

extern "C" {
struct AVFormatContext;
struct AVCodecContext;
struct AVStream;
struct AVPacket;
struct AVFrame;
}

namespace lvrl::video {

struct FrameDeleter {
  void operator()(AVFrame* frame) const;
};
struct PacketDeleter {
  void operator()(AVPacket* packet) const;
};
using FramePtr = std::unique_ptr<AVFrame, FrameDeleter>;
using PacketPtr = std::unique_ptr<AVPacket, PacketDeleter>;
FramePtr make_frame();
PacketPtr make_packet();

struct Keyframe {
  int64_t seek_ts;   // the index's timestamp, stream time base: a dts for MP4/MOV/AVI indexes, else a pts
  int64_t pos = -1;  // byte position (scanned indexes), -1 unknown
  double time_s;     // presentation time, seconds from the first frame (a dts index shifted by the
                     // stream's reorder delay; AVI without pts: decode time)
};

class Demuxer {
 public:
  // Opens `path`, picks the best video stream (never cover art), discards the others and opens its
  // decoder (libdav1d for AV1). Bad files are InputErrors naming the file and the reason.
  Demuxer(const std::string& path, const OpenOptions& options);
  ~Demuxer();
  Demuxer(const Demuxer&) = delete;
  Demuxer& operator=(const Demuxer&) = delete;

  const std::string& path() const { return path_; }
  AVCodecContext* decoder() const { return decoder_; }
  AVStream* stream() const { return stream_; }
  AVFormatContext* format() const { return format_; }

  // The next packet of our stream: 0, AVERROR_EOF, or another AVERROR for a damaged spot (the
  // caller may go on reading). Fails when the I/O deadline passes or the packet budget is spent.
  int read_packet(AVPacket* packet);
  void set_packet_budget(int64_t packets) { packet_budget_ = packets; }
  int64_t packets_read() const { return packets_read_; }

  // False when packets carry no pts (AVI with B-frames): frame times are then guessed from the decode
  // history, which a seek throws away, so such streams are decoded forward from the start.
  bool timestamps_survive_seeks() const { return packets_have_pts_; }

  // Repositions at keyframe `index` of keyframes() (0 = the start of the stream) and flushes the
  // decoder.
  void seek_to_keyframe(size_t index);

  // Keyframes in ascending time: the container's index where it lists every sample (MP4/MOV, AVI),
  // else a demux-only scan (Matroska cues list one keyframe per cluster, MPEG-TS has no index).
  const std::vector<Keyframe>& keyframes() const { return keyframes_; }
  // The last keyframe at or before `time_s` (0 when `time_s` precedes them all).
  size_t keyframe_at_or_before(double time_s) const;

  // Stream time base → seconds from the first frame: the first frame presented is 0 by definition
  // (decoded once at open), whatever start_time the container claims.
  double seconds(int64_t ts) const;
  int64_t timestamp(double s) const;  // the inverse
  const VideoInfo& info() const { return info_; }

 private:
  void open_input(const OpenOptions& options);
  void open_decoder(const OpenOptions& options);
  void build_keyframe_index();
  void scan_keyframes();
  void find_origin();
  void describe();
  void arm_deadline();
  static int interrupt(void* self);

  std::string path_;
  AVFormatContext* format_ = nullptr;
  AVCodecContext* decoder_ = nullptr;
  AVStream* stream_ = nullptr;
  int stream_index_ = -1;
  int64_t origin_pts_ = 0;        // pts of the first frame presented
  bool index_holds_dts_ = false;  // container index (MP4/MOV/AVI): seek times are decode times
  bool byte_seek_ = false;
  bool packets_have_pts_ = true;
  int64_t reorder_delay_ = 0;  // pts - dts of the first keyframe         // scanned MPEG-TS / elementary
                               // streams: seek to byte positions
  int64_t timeout_us_ = 0;
  int64_t deadline_us_ = 0;  // av_gettime_relative() after which blocking I/O is interrupted
  int64_t packet_budget_ = 0;
  int64_t packets_read_ = 0;
  std::vector<Keyframe> keyframes_;
  int64_t scan_end_pts_ = INT64_MIN;  // end of the last packet seen by the scan (INT64_MIN: no scan)
  VideoInfo info_;
};

}  // namespace lvrl::video
