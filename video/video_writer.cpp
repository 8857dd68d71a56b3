#include "video/video_writer.h"

#include <fmt/format.h>

#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "video/av_check.h"
#include "video/ffmpeg_log.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/dict.h>
#include <libavutil/opt.h>
}

namespace lvrl::video {
namespace {

// BT.601 limited range in 8-bit fixed point (the coefficients of ITU-R BT.601 scaled by 256, as
// in Microsoft's "YUV formats" note). Offsets keep every intermediate non-negative, so the shifts
// are plain divisions. Chroma is taken from the mean of each 2 × 2 block (sums of 4, shift by 10).
uint8_t luma(int r, int g, int b) {
  return static_cast<uint8_t>(((66 * r + 129 * g + 25 * b + 128) >> 8) + 16);
}
uint8_t chroma_u(int r4, int g4, int b4) {
  return static_cast<uint8_t>((-38 * r4 - 74 * g4 + 112 * b4 + 512 + (128 << 10)) >> 10);
}
uint8_t chroma_v(int r4, int g4, int b4) {
  return static_cast<uint8_t>((112 * r4 - 94 * g4 - 18 * b4 + 512 + (128 << 10)) >> 10);
}

// Fills every byte of the planes, the alignment padding past each row's end included: x264's SIMD
// copies read whole vectors, so no byte it may read is left as memory happened to hold it.
void rgb_to_yuv420(const uint8_t* rgb, int width, int height, AVFrame* frame) {
  for (int plane = 0; plane < 3; ++plane) {
    const int rows = plane == 0 ? height : height / 2, used = plane == 0 ? width : width / 2;
    for (int y = 0; y < rows; ++y) {
      uint8_t* row = frame->data[plane] + static_cast<ptrdiff_t>(y) * frame->linesize[plane];
      std::memset(row + used, 0, static_cast<size_t>(frame->linesize[plane] - used));
    }
  }
  for (int y = 0; y < height; ++y) {
    const uint8_t* row = rgb + static_cast<size_t>(y) * width * 3;
    uint8_t* out = frame->data[0] + static_cast<ptrdiff_t>(y) * frame->linesize[0];
    for (int x = 0; x < width; ++x) out[x] = luma(row[3 * x], row[3 * x + 1], row[3 * x + 2]);
  }
  for (int y = 0; y < height / 2; ++y) {
    const uint8_t* top = rgb + static_cast<size_t>(2 * y) * width * 3;
    const uint8_t* bottom = top + static_cast<size_t>(width) * 3;
    uint8_t* u = frame->data[1] + static_cast<ptrdiff_t>(y) * frame->linesize[1];
    uint8_t* v = frame->data[2] + static_cast<ptrdiff_t>(y) * frame->linesize[2];
    for (int x = 0; x < width / 2; ++x) {
      int sum[3];
      for (int c = 0; c < 3; ++c) {
        const int i = 6 * x + c;
        sum[c] = top[i] + top[i + 3] + bottom[i] + bottom[i + 3];
      }
      u[x] = chroma_u(sum[0], sum[1], sum[2]);
      v[x] = chroma_v(sum[0], sum[1], sum[2]);
    }
  }
}

}  // namespace

VideoWriter::~VideoWriter() {
  if (format_ != nullptr) {
    close();
    std::remove(path_.c_str());  // unfinished: not a file anyone should read
  }
}

void VideoWriter::close() {
  if (format_ != nullptr && format_->pb != nullptr) avio_closep(&format_->pb);
  avformat_free_context(format_);
  format_ = nullptr;
  stream_ = nullptr;
  avcodec_free_context(&encoder_);
  av_frame_free(&frame_);
  av_packet_free(&packet_);
}

void VideoWriter::open(const std::string& path, int width, int height, int fps, int gop, int crf) {
  route_ffmpeg_log();  // libx264's and the muxer's lines through lvrl's logger
  LVRL_ASSERT(format_ == nullptr, "VideoWriter::open on a writer already open");
  const InputWhere where{path, 0, "video",
                         fmt::format("{}x{} at {} fps, gop {}, crf {}", width, height, fps, gop, crf)};
  if (width < 16 || height < 16 || width % 2 != 0 || height % 2 != 0) {
    throw InputError(where, "width and height must be even (4:2:0 chroma) and at least 16");
  }
  if (fps < 1 || fps > 240 || gop < 1 || crf < 0 || crf > 51) {
    throw InputError(where, "expected fps in [1, 240], gop >= 1 and crf in [0, 51]");
  }
  path_ = path;
  width_ = width;
  height_ = height;
  frames_ = 0;
  try {
    LVRL_AV_CHECK(avformat_alloc_output_context2(&format_, nullptr, "mp4", path.c_str()));
    format_->flags |= AVFMT_FLAG_BITEXACT;
    const AVCodec* codec = nullptr;
    LVRL_CHECK_GEN("FFmpeg", codec = avcodec_find_encoder_by_name("libx264"), lvrl_rc != nullptr,
                   std::string("this libavcodec was built without libx264"));
    stream_ = avformat_new_stream(format_, nullptr);
    encoder_ = avcodec_alloc_context3(codec);
    frame_ = av_frame_alloc();
    packet_ = av_packet_alloc();
    LVRL_ASSERT(stream_ != nullptr && encoder_ != nullptr && frame_ != nullptr && packet_ != nullptr,
                "FFmpeg allocation failed: out of memory");

    encoder_->width = width;
    encoder_->height = height;
    encoder_->pix_fmt = AV_PIX_FMT_YUV420P;
    encoder_->time_base = AVRational{1, fps};
    encoder_->framerate = AVRational{fps, 1};
    encoder_->gop_size = gop;
    encoder_->keyint_min = gop;
    encoder_->max_b_frames = 0;
    encoder_->thread_count = 1;
    encoder_->colorspace = AVCOL_SPC_SMPTE170M;
    encoder_->color_primaries = AVCOL_PRI_SMPTE170M;
    encoder_->color_trc = AVCOL_TRC_SMPTE170M;
    encoder_->color_range = AVCOL_RANGE_MPEG;
    encoder_->flags |= AV_CODEC_FLAG_BITEXACT;
    if ((format_->oformat->flags & AVFMT_GLOBALHEADER) != 0) encoder_->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    AVDictionary* options = nullptr;
    av_dict_set(&options, "preset", "fast", 0);
    av_dict_set(&options, "crf", std::to_string(crf).c_str(), 0);
    // log=1: x264 warnings and errors only (it prints its settings and statistics for every file).
    // mbtree=0: with x264's macroblock tree, a file's bytes depended on what other encoders in the
    // process did (6 videos on 2 threads: 2 files differed from run to run); without it, 1- and
    // 2-thread runs of 12 videos gave identical files 5 times out of 5.
    av_dict_set(&options, "x264-params", "scenecut=0:open-gop=0:log=1:mbtree=0", 0);
    const int rc = avcodec_open2(encoder_, codec, &options);
    av_dict_free(&options);
    LVRL_AV_CHECK(rc);
    LVRL_AV_CHECK(avcodec_parameters_from_context(stream_->codecpar, encoder_));
    stream_->time_base = encoder_->time_base;

    frame_->format = AV_PIX_FMT_YUV420P;
    frame_->width = width;
    frame_->height = height;
    LVRL_AV_CHECK(av_frame_get_buffer(frame_, 0));

    const int io = avio_open(&format_->pb, path.c_str(), AVIO_FLAG_WRITE);
    if (io < 0) throw InputError({path, 0, "", ""}, "cannot create the video file: " + av_error_text(io));
    LVRL_AV_CHECK(avformat_write_header(format_, nullptr));
  } catch (...) {
    close();
    std::remove(path.c_str());
    throw;
  }
}

void VideoWriter::write_rgb(const uint8_t* rgb) {
  LVRL_ASSERT(format_ != nullptr, "VideoWriter::write_rgb before open (or after finish)");
  LVRL_AV_CHECK(av_frame_make_writable(frame_));  // the encoder may still hold the last frame
  rgb_to_yuv420(rgb, width_, height_, frame_);
  frame_->pts = frames_++;
  encode(frame_);
}

void VideoWriter::encode(const AVFrame* frame) {
  LVRL_AV_CHECK(avcodec_send_frame(encoder_, frame));
  for (;;) {
    const int rc = avcodec_receive_packet(encoder_, packet_);
    if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
    LVRL_AV_CHECK(rc);
    // Every frame lasts one tick of 1/fps; without it the MP4 gives the last frame no duration and
    // the stream reads one frame short (7.9 s for 80 frames at 10 fps), which changes the frames a
    // duration-based recipe picks.
    packet_->duration = 1;
    av_packet_rescale_ts(packet_, encoder_->time_base, stream_->time_base);
    packet_->stream_index = stream_->index;
    LVRL_AV_CHECK(av_interleaved_write_frame(format_, packet_));  // takes the packet's data
  }
}

void VideoWriter::finish() {
  LVRL_ASSERT(format_ != nullptr, "VideoWriter::finish before open (or twice)");
  encode(nullptr);
  LVRL_AV_CHECK(av_write_trailer(format_));
  close();
}

}  // namespace lvrl::video
