// `lvrl dataset synth`: a synthetic video QA dataset with known answers, for tests and the demo.
//
// DIR/videos/clipNNNNN.mp4   H.264 (video/video_writer.h), one scene each (synth/scene.h)
// DIR/train.jsonl            every question about the training videos (core/dataset.h's fields)
// DIR/test.jsonl             every question about the test videos; no video is in both
// DIR/sft.jsonl              the train rows with a `reasoning` trace beside the answer
// Read them with data.video_dir = DIR/videos.
//
// The same options give byte-identical files (on the same FFmpeg and x264 builds): every random
// choice comes from synth/rng.h's streams, frames are drawn in integer arithmetic, encoding is
// single-threaded x264 with bitexact muxing, and JSON is written in a fixed field order. Videos are
// encoded on several threads; which thread encodes which video changes nothing in any file.
#pragma once

#include <cstdint>
#include <string>

#include "synth/timeline.h"

namespace lvrl::synth {

struct SynthOptions {
  std::string out_dir;
  int64_t videos = 0;  // total; the last round(videos · test_fraction) are the test split
  uint64_t seed = 0;
  double duration_s = 8;  // 8 s at 2 frames/s gives the 16 sampled frames the questions need
  int width = 128, height = 96;
  double test_fraction = 0.2;  // in [0, 1]
  int fps = 10;                // video frame rate
  int gop = 20;                // frames per GOP (2 s)
  int crf = 20;
  SampleGrid grid;  // the recipe events are timed for
  int threads = 0;  // encoding threads; 0 = the machine's cores
};

struct SynthSummary {
  int64_t train_videos = 0, test_videos = 0;
  int64_t train_questions = 0, test_questions = 0;
  int64_t sampled_frames = 0;  // per video, under options.grid
  double seconds = 0;
};

// Bad options (no videos, an odd size, a duration too short for the questions) are InputErrors
// naming the option; an output directory that cannot be written is an InputError naming it.
SynthSummary synthesize(const SynthOptions& options);

// "clip00012.mp4": the video file of video `index`, relative to DIR/videos.
std::string video_name(int64_t index);

}  // namespace lvrl::synth
