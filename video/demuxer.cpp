#include "video/demuxer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <thread>

#include "core/error.h"
#include "video/av_check.h"
#include "video/ffmpeg_log.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libavutil/time.h>
}

namespace lvrl::video {
namespace {
constexpr int kMaxSide = 16384;  // larger frames are damaged headers, not video we can train on

std::string codec_name(AVCodecID id) {
  const AVCodecDescriptor* descriptor = avcodec_descriptor_get(id);
  return descriptor != nullptr ? descriptor->name : fmt::format("codec id {}", static_cast<int>(id));
}
}  // namespace

void FrameDeleter::operator()(AVFrame* frame) const {
  av_frame_free(&frame);
}
void PacketDeleter::operator()(AVPacket* packet) const {
  av_packet_free(&packet);
}

FramePtr make_frame() {
  AVFrame* frame = av_frame_alloc();
  LVRL_ASSERT(frame != nullptr, "av_frame_alloc: out of memory");
  return FramePtr(frame);
}

PacketPtr make_packet() {
  AVPacket* packet = av_packet_alloc();
  LVRL_ASSERT(packet != nullptr, "av_packet_alloc: out of memory");
  return PacketPtr(packet);
}

Demuxer::Demuxer(const std::string& path, const OpenOptions& options) : path_(path) {
  LVRL_ASSERT(options.io_timeout_s > 0, "io_timeout_s must be positive");
  timeout_us_ = static_cast<int64_t>(options.io_timeout_s * 1e6);
  route_ffmpeg_log();
  try {
    open_input(options);
    open_decoder(options);
    build_keyframe_index();
    find_origin();
    describe();
  } catch (...) {
    avcodec_free_context(&decoder_);
    avformat_close_input(&format_);
    throw;
  }
}

Demuxer::~Demuxer() {
  avcodec_free_context(&decoder_);
  avformat_close_input(&format_);
}

int Demuxer::interrupt(void* self) {
  return av_gettime_relative() > static_cast<Demuxer*>(self)->deadline_us_ ? 1 : 0;
}

void Demuxer::arm_deadline() {
  deadline_us_ = av_gettime_relative() + timeout_us_;
}

void Demuxer::open_input(const OpenOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path_, ec)) throw InputError({path_, 0, "", ""}, "no such file");
  if (fs::is_directory(path_, ec)) throw InputError({path_, 0, "", ""}, "is a directory, not a video file");
  if (fs::is_regular_file(path_, ec) && fs::file_size(path_, ec) == 0) {
    throw InputError({path_, 0, "", ""}, "empty file (0 bytes)");
  }

  format_ = avformat_alloc_context();
  LVRL_ASSERT(format_ != nullptr, "avformat_alloc_context: out of memory");
  format_->interrupt_callback.callback = &Demuxer::interrupt;
  format_->interrupt_callback.opaque = this;
  arm_deadline();
  int rc = avformat_open_input(&format_, path_.c_str(), nullptr, nullptr);  // frees format_ on failure
  if (rc < 0) {
    throw InputError({path_, 0, "", ""}, "cannot open as a media file: " + av_error_text(rc));
  }
  arm_deadline();
  rc = avformat_find_stream_info(format_, nullptr);
  if (rc < 0) throw InputError({path_, 0, "", ""}, "cannot read stream information: " + av_error_text(rc));

  int best = av_find_best_stream(format_, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  auto usable = [&](int i) {
    const AVStream* st = format_->streams[i];
    return st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO && !(st->disposition & AV_DISPOSITION_ATTACHED_PIC);
  };
  stream_index_ = (best >= 0 && usable(best)) ? best : -1;
  for (unsigned i = 0; stream_index_ < 0 && i < format_->nb_streams; ++i) {
    if (usable(static_cast<int>(i))) stream_index_ = static_cast<int>(i);
  }
  if (stream_index_ < 0) {
    throw InputError({path_, 0, "", ""}, "no video stream (audio-only, cover art only, or a data file)");
  }
  for (unsigned i = 0; i < format_->nb_streams; ++i) {
    format_->streams[i]->discard = static_cast<int>(i) == stream_index_ ? AVDISCARD_DEFAULT : AVDISCARD_ALL;
  }
  stream_ = format_->streams[stream_index_];
  origin_pts_ = stream_->start_time != AV_NOPTS_VALUE ? stream_->start_time : 0;  // until find_origin()

  const AVCodecParameters* par = stream_->codecpar;
  if (par->width <= 0 || par->height <= 0 || par->width > kMaxSide || par->height > kMaxSide ||
      av_image_check_size(par->width, par->height, 0, nullptr) < 0) {
    throw InputError({path_, 0, "", fmt::format("{}x{}", par->width, par->height)},
                     fmt::format("frame size out of range (each side must be 1..{})", kMaxSide));
  }
  (void)options;
}

void Demuxer::open_decoder(const OpenOptions& options) {
  const AVCodecParameters* par = stream_->codecpar;
  // Debian's built-in av1 decoder needs hardware; dav1d is the software one.
  const AVCodec* codec = par->codec_id == AV_CODEC_ID_AV1 ? avcodec_find_decoder_by_name("libdav1d")
                                                          : avcodec_find_decoder(par->codec_id);
  if (codec == nullptr) {
    throw InputError({path_, 0, "", codec_name(par->codec_id)}, "no decoder for this codec");
  }
  decoder_ = avcodec_alloc_context3(codec);
  LVRL_ASSERT(decoder_ != nullptr, "avcodec_alloc_context3: out of memory");
  LVRL_AV_CHECK(avcodec_parameters_to_context(decoder_, par));
  decoder_->pkt_timebase = stream_->time_base;
  // Auto: one more thread than cores, as FFmpeg's own auto setting does (keeps the pipeline full).
  int threads = options.threads > 0
                    ? options.threads
                    : std::clamp(static_cast<int>(std::thread::hardware_concurrency()) + 1, 2, 8);
  decoder_->thread_count = threads;
  decoder_->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;  // frame threading: several times faster
  // Report bitstream errors instead of concealing them: a concealed frame shows another frame's
  // picture under this one's timestamp (frame threads do not reliably flag it), exactly the
  // substitution we must never return.
  decoder_->err_recognition |= AV_EF_EXPLODE;

  int rc = avcodec_open2(decoder_, codec, nullptr);
  if (rc < 0) {
    throw InputError({path_, 0, "", codec->name}, "cannot open the decoder: " + av_error_text(rc));
  }
}

void Demuxer::build_keyframe_index() {
  // MP4/MOV sample tables and AVI idx1 list every packet; other indexes (Matroska cues) are sparse.
  std::string name = format_->iformat->name;
  bool complete_index = name.find("mov") != std::string::npos || name == "avi";
  if (complete_index) {
    int entries = avformat_index_get_entries_count(stream_);
    for (int i = 0; i < entries; ++i) {
      const AVIndexEntry* entry = avformat_index_get_entry(stream_, i);
      if ((entry->flags & AVINDEX_KEYFRAME) && !(entry->flags & AVINDEX_DISCARD_FRAME)) {
        keyframes_.push_back({entry->timestamp, -1, 0});
      }
    }
    index_holds_dts_ = !keyframes_.empty();
  }
  if (keyframes_.empty()) scan_keyframes();
  std::sort(keyframes_.begin(), keyframes_.end(),
            [](const Keyframe& a, const Keyframe& b) { return a.seek_ts < b.seek_ts; });
  keyframes_.erase(std::unique(keyframes_.begin(), keyframes_.end(),
                               [](const Keyframe& a, const Keyframe& b) { return a.seek_ts == b.seek_ts; }),
                   keyframes_.end());
}

void Demuxer::scan_keyframes() {
  // A demux-only pass: cheap next to decoding, and it gives the true frame count and end time.
  std::string name = format_->iformat->name;
  byte_seek_ = !(format_->iformat->flags & AVFMT_NO_BYTE_SEEK) &&
               (name == "mpegts" || name == "mpeg" || name == "h264" || name == "hevc" || name == "m4v");
  PacketPtr packet = make_packet();
  int64_t frames = 0, end_pts = AV_NOPTS_VALUE;
  // Every packet takes at least a byte of the file: a scan past that many is a looping demuxer.
  int64_t file_bytes = format_->pb != nullptr ? avio_size(format_->pb) : -1;
  set_packet_budget(file_bytes > 0 ? file_bytes + 10000 : INT64_MAX);
  while (true) {
    int rc = read_packet(packet.get());
    if (rc == AVERROR_EOF) break;
    if (rc < 0) break;  // a damaged tail: the index covers what precedes it
    ++frames;
    int64_t ts = packet->pts != AV_NOPTS_VALUE ? packet->pts : packet->dts;
    if (ts != AV_NOPTS_VALUE) {
      if (packet->flags & AV_PKT_FLAG_KEY) keyframes_.push_back({ts, packet->pos, 0});
      int64_t end = ts + std::max<int64_t>(packet->duration, 0);
      end_pts = end_pts == AV_NOPTS_VALUE ? end : std::max(end_pts, end);
    }
    av_packet_unref(packet.get());
  }
  packets_read_ = 0;
  info_.frame_count = frames;
  if (frames == 0) throw InputError({path_, 0, "", ""}, "the video stream holds no frames");
  if (keyframes_.empty()) throw InputError({path_, 0, "", ""}, "the video stream holds no keyframe");
  scan_end_pts_ = end_pts;
}

void Demuxer::find_origin() {
  // Decode the first frame once: containers' start_time and decoders' best-effort guesses disagree
  // (AVI with B-frames guesses pts one frame late), so "seconds from the first frame" is measured.
  seek_to_keyframe(0);
  PacketPtr packet = make_packet();
  FramePtr frame = make_frame();
  set_packet_budget(10000);
  bool draining = false, delay_known = false;
  while (true) {
    int rc = avcodec_receive_frame(decoder_, frame.get());
    if (rc == 0) {
      int64_t pts =
          frame->best_effort_timestamp != AV_NOPTS_VALUE ? frame->best_effort_timestamp : frame->pts;
      if (pts != AV_NOPTS_VALUE) {
        origin_pts_ = pts;
        break;
      }
      av_frame_unref(frame.get());
      continue;
    }
    if (rc == AVERROR_EOF || (rc != AVERROR(EAGAIN) && draining)) {
      throw InputError({path_, 0, "", ""}, "no frame of the video stream decodes");
    }
    if (draining) continue;
    rc = read_packet(packet.get());
    if (rc < 0) {
      avcodec_send_packet(decoder_, nullptr);
      draining = true;
      continue;
    }
    if (packet->pts == AV_NOPTS_VALUE) packets_have_pts_ = false;
    if (!delay_known && packet->pts != AV_NOPTS_VALUE && packet->dts != AV_NOPTS_VALUE) {
      reorder_delay_ = packet->pts - packet->dts;  // the first keyframe's: encoders keep it constant
      delay_known = true;
    }
    avcodec_send_packet(decoder_, packet.get());  // errors here surface as no frame at all
    av_packet_unref(packet.get());
  }
  packets_read_ = 0;
  // A dts index is shifted to presentation times by the reorder delay (exact for constant-delay
  // encoders; the sampler never relies on it for correctness, only to choose where to seek).
  for (Keyframe& key : keyframes_)
    key.time_s = seconds(key.seek_ts + (index_holds_dts_ ? reorder_delay_ : 0));
  if (scan_end_pts_ != AV_NOPTS_VALUE) info_.duration_s = seconds(scan_end_pts_);
  seek_to_keyframe(0);
}

void Demuxer::describe() {
  const AVCodecParameters* par = stream_->codecpar;
  info_.path = path_;
  info_.container = format_->iformat->name;
  info_.codec = decoder_->codec->name;
  info_.coded_width = par->width;
  info_.coded_height = par->height;

  size_t side_size = 0;
  const uint8_t* matrix = av_stream_get_side_data(stream_, AV_PKT_DATA_DISPLAYMATRIX, &side_size);
  if (matrix != nullptr && side_size >= 9 * sizeof(int32_t)) {
    double counterclockwise = av_display_rotation_get(reinterpret_cast<const int32_t*>(matrix));
    if (std::isfinite(counterclockwise)) {
      int quarter_turns = static_cast<int>(std::lround(-counterclockwise / 90.0));
      info_.rotation = ((quarter_turns % 4) + 4) % 4 * 90;
    }
  }
  bool swapped = info_.rotation == 90 || info_.rotation == 270;
  info_.width = swapped ? par->height : par->width;
  info_.height = swapped ? par->width : par->height;

  info_.start_s = origin_pts_ * av_q2d(stream_->time_base);
  if (info_.duration_s <= 0) {  // no scan: the container's word, measured from our origin
    if (stream_->duration != AV_NOPTS_VALUE && stream_->duration > 0) {
      int64_t stream_start = stream_->start_time != AV_NOPTS_VALUE ? stream_->start_time : origin_pts_;
      info_.duration_s = seconds(stream_start + stream_->duration);
    } else if (format_->duration != AV_NOPTS_VALUE && format_->duration > 0) {
      double format_start =
          format_->start_time != AV_NOPTS_VALUE ? format_->start_time / double(AV_TIME_BASE) : 0;
      info_.duration_s = format_start + format_->duration / double(AV_TIME_BASE) - info_.start_s;
    }
  }
  AVRational rate = stream_->avg_frame_rate.num > 0 ? stream_->avg_frame_rate : stream_->r_frame_rate;
  info_.frame_rate = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : 0;
  if (info_.frame_count < 0 && stream_->nb_frames > 0) info_.frame_count = stream_->nb_frames;
  info_.keyframe_count = static_cast<int64_t>(keyframes_.size());
  for (const Keyframe& key : keyframes_) info_.keyframe_times.push_back(key.time_s);

  const char* pixel_format = av_get_pix_fmt_name(static_cast<AVPixelFormat>(par->format));
  info_.pixel_format = pixel_format != nullptr ? pixel_format : "unknown";
  const char* matrix_name = av_color_space_name(par->color_space);
  info_.color_matrix = matrix_name != nullptr ? matrix_name : "unknown";
  info_.color_range = par->color_range == AVCOL_RANGE_JPEG   ? "pc"
                      : par->color_range == AVCOL_RANGE_MPEG ? "tv"
                                                             : "unknown";
}

int Demuxer::read_packet(AVPacket* packet) {
  while (true) {
    arm_deadline();
    int rc = av_read_frame(format_, packet);
    if (rc < 0) {
      if (rc == AVERROR_EXIT) {
        throw InputError({path_, 0, "", ""},
                         fmt::format("I/O deadline of {} s passed while reading", timeout_us_ / 1e6));
      }
      return rc;
    }
    if (packet->stream_index != stream_index_) {
      av_packet_unref(packet);
      continue;
    }
    if (++packets_read_ > packet_budget_) {
      av_packet_unref(packet);
      throw InputError({path_, 0, "", ""},
                       fmt::format("read {} packets without finishing: the file's timestamps or index are "
                                   "broken (packet budget spent)",
                                   packet_budget_));
    }
    return 0;
  }
}

void Demuxer::seek_to_keyframe(size_t index) {
  LVRL_ASSERT(index < keyframes_.size(), "keyframe index out of range");
  const Keyframe& key = keyframes_[index];
  arm_deadline();
  int rc = -1;
  if (byte_seek_ && key.pos >= 0) {
    // Timestamp seeks in MPEG-TS bisect on pts and land anywhere; the scan knows the exact byte.
    rc = av_seek_frame(format_, stream_index_, key.pos, AVSEEK_FLAG_BYTE);
  }
  if (rc < 0) {
    // Demuxers take the seek time as a pts. A dts index (the mov demuxer subtracts its dts shift
    // before searching) would land one keyframe early at the index value itself: aim halfway into
    // the keyframe's GOP instead, which lands on it. The first keyframe: aim at it (nothing earlier).
    int64_t aim = key.seek_ts;
    if (index_holds_dts_ && index > 0) {
      int64_t gap = index + 1 < keyframes_.size() ? keyframes_[index + 1].seek_ts - key.seek_ts
                                                  : timestamp(1.0) - timestamp(0);
      aim += std::max<int64_t>(gap / 2, 0);
    }
    rc = avformat_seek_file(format_, stream_index_, INT64_MIN, aim, aim, 0);
    if (rc < 0) rc = av_seek_frame(format_, stream_index_, aim, AVSEEK_FLAG_BACKWARD);
  }
  if (rc < 0) {
    throw InputError({path_, 0, "", fmt::format("{:.3f} s", key.time_s)},
                     "cannot seek to this keyframe: " + av_error_text(rc));
  }
  avcodec_flush_buffers(decoder_);
}

size_t Demuxer::keyframe_at_or_before(double time_s) const {
  auto after = std::upper_bound(keyframes_.begin(), keyframes_.end(), time_s,
                                [](double t, const Keyframe& key) { return t < key.time_s; });
  return after == keyframes_.begin() ? 0 : static_cast<size_t>(after - keyframes_.begin() - 1);
}

double Demuxer::seconds(int64_t ts) const {
  return (ts - origin_pts_) * av_q2d(stream_->time_base);
}

int64_t Demuxer::timestamp(double s) const {
  return origin_pts_ + static_cast<int64_t>(std::llround(s / av_q2d(stream_->time_base)));
}

}  // namespace lvrl::video
