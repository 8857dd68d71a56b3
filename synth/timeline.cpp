#include "synth/timeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "video/qwen_preprocess.h"

namespace lvrl::synth {

int64_t Timeline::slot_of(int64_t frame) const {
  LVRL_ASSERT(frame >= 0 && frame < frames, "Timeline::slot_of: frame outside the clip");
  return static_cast<int64_t>(std::upper_bound(slot_start.begin(), slot_start.end(), frame) -
                              slot_start.begin()) -
         1;
}

Timeline make_timeline(double duration_s, int fps, const SampleGrid& grid) {
  LVRL_ASSERT(fps > 0, "make_timeline: fps must be positive");
  const InputWhere where{"", 0, "--duration", fmt::format("{}", duration_s)};
  if (!(duration_s > 0) || duration_s > 86400) throw InputError(where, "expected seconds in (0, 86400]");
  Timeline timeline;
  timeline.fps = fps;
  timeline.frames = std::llround(duration_s * fps);
  int64_t n = 0;
  try {
    n = video::smart_nframes(timeline.frames, fps, grid.fps, grid.min_frames, grid.max_frames);
  } catch (const InputError& e) {
    throw InputError(where, "too short to sample: " + e.problem());
  }
  if (n < kMinSlots) {
    throw InputError(
        where, fmt::format("the recipe (fps {}, {}..{} frames) samples {} frames from {} frames at "
                           "{} fps; the questions need at least {}",
                           grid.fps, grid.min_frames, grid.max_frames, n, timeline.frames, fps, kMinSlots));
  }
  timeline.sampled = video::qwen_frame_indices(timeline.frames, n);
  timeline.slot_start.push_back(0);
  for (size_t j = 1; j < timeline.sampled.size(); ++j) {
    LVRL_ASSERT(timeline.sampled[j] > timeline.sampled[j - 1], "sampled frame indices must increase");
    timeline.slot_start.push_back((timeline.sampled[j - 1] + timeline.sampled[j] + 1) / 2);
  }
  timeline.slot_start.push_back(timeline.frames);
  return timeline;
}

}  // namespace lvrl::synth
