// Writing H.264 MP4 files from RGB frames: libx264 through libavcodec, the MP4 muxer of
// libavformat. Built for synthetic datasets whose files must be byte-identical from run to run:
//  - RGB → YUV 4:2:0 is done here in integer BT.601 (limited range) arithmetic, not by swscale,
//    whose SIMD paths may round differently on another CPU; the stream is labelled BT.601 so
//    decoders (video/frame_converter.h) convert back with the same matrix.
//  - libx264 runs with one thread (frame threads split the work differently per core count), a
//    fixed GOP (keyint = min-keyint = gop, no scene cuts), no B-frames and a constant CRF.
//  - The muxer and encoder run bitexact: no "Lavf…" encoder tag, no creation time.
//  x264's own SEI (its version and options) stays: it is the same on the same Debian packages.
#pragma once

#include <cstdint>
#include <string>

extern "C" {
struct AVFormatContext;
struct AVCodecContext;
struct AVStream;
struct AVFrame;
struct AVPacket;
}

namespace lvrl::video {

class VideoWriter {
 public:
  VideoWriter() = default;
  ~VideoWriter();  // a file not finished is closed and removed
  VideoWriter(const VideoWriter&) = delete;
  VideoWriter& operator=(const VideoWriter&) = delete;

  // Creates `path` (replacing it). width, height: even (4:2:0), at least 16; fps: frames per
  // second (each frame lasts 1/fps); gop: frames from one keyframe to the next; crf: x264's
  // constant rate factor, 0 (lossless) .. 51. A size or rate out of range, or a path that cannot be
  // created, is an InputError naming the file.
  void open(const std::string& path, int width, int height, int fps, int gop, int crf);

  // rgb: [height, width, 3] uint8, rows packed (width·3 bytes each).
  void write_rgb(const uint8_t* rgb);

  // Flushes the encoder and writes the MP4 index; the file is complete after this.
  void finish();

  int64_t frames_written() const { return frames_; }

 private:
  void encode(const AVFrame* frame);  // nullptr: flush
  void close();

  std::string path_;
  int width_ = 0, height_ = 0;
  int64_t frames_ = 0;
  AVFormatContext* format_ = nullptr;
  AVCodecContext* encoder_ = nullptr;
  AVStream* stream_ = nullptr;
  AVFrame* frame_ = nullptr;
  AVPacket* packet_ = nullptr;
};

}  // namespace lvrl::video
