// When things happen in a synthetic video, in units the model will actually see. A question is
// answerable only if the frames the preprocessing recipe samples show its events, so events are not
// timed in seconds but in *slots*: the recipe's n sampled frame indices (qwen-vl-utils' rule,
// video/qwen_preprocess.h) split the clip into n runs of frames, one per sampled frame, with
// boundaries half-way between neighbouring samples. An event lasting k slots is on exactly k sampled
// frames, and stays so if a decoder's sample lands a frame early or late.
#pragma once

#include <cstdint>
#include <vector>

namespace lvrl::synth {

// The frame-selection part of the recipe events are timed for. The defaults are configs/demo.yaml's
// preprocess section (qwen-vl-utils' fps mode, 2 frames/s, 4..16 frames).
struct SampleGrid {
  double fps = 2.0;
  int64_t min_frames = 4;
  int64_t max_frames = 16;
};

// The questions need 16 slots: four flashes, each on for 2 sampled frames with 2 dark between them
// and one dark frame at either end.
constexpr int64_t kMinSlots = 16;

struct Timeline {
  int fps = 0;                      // video frame rate; frame f is shown at f / fps seconds
  int64_t frames = 0;               // T = round(duration · fps)
  std::vector<int64_t> sampled;     // [n] the frame indices the recipe takes, ascending
  std::vector<int64_t> slot_start;  // [n + 1] first frame of each slot; slot_start[n] = T

  int64_t slots() const { return static_cast<int64_t>(sampled.size()); }
  int64_t slot_of(int64_t frame) const;  // the slot holding `frame`
  double seconds(int64_t frame) const { return static_cast<double>(frame) / fps; }
};

// A duration the recipe samples fewer than kMinSlots frames from is an InputError naming
// --duration and what the recipe makes of it.
Timeline make_timeline(double duration_s, int fps, const SampleGrid& grid);

}  // namespace lvrl::synth
