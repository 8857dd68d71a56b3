// Frame-exact sampling. A plan becomes target timestamps (seconds from the first frame; VFR-safe,
// container frame counts are never trusted); the frame for target t is the last frame whose pts <= t
// (the first frame when t precedes it). Targets are visited in increasing order, seeking to a
// keyframe only when that costs less than decoding forward, and only the chosen frames are
// converted to RGB (with the stream's colour matrix and range, rotation applied).
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "video/on_damage.h"
#include "video/probe.h"
#include "video/qwen_preprocess.h"

namespace lvrl::video {

class SamplingPlan {
 public:
  // N targets at the centres of N equal spans of [0, duration): t_i = (i + 0.5)·duration/N.
  static SamplingPlan uniform(int64_t frames);
  // One target every 1/fps seconds from 0 while t < duration; more than max_frames (> 0) of them
  // become uniform(max_frames) instead.
  static SamplingPlan at_fps(double fps, int64_t max_frames = 0);
  // Explicit targets, seconds from the first frame, in any order; frames come back in this order.
  static SamplingPlan at_times(std::vector<double> seconds);

  std::vector<double> targets(double duration_s) const;
  std::string describe() const;  // "uniform 64", "fps 1 max 3600", "timestamps [0.5, 1.25]"

 private:
  enum class Kind { Uniform, Fps, Timestamps } kind_ = Kind::Uniform;
  int64_t frames_ = 0;
  double fps_ = 0;
  std::vector<double> times_;
};

// Output size: explicit width × height (both > 0), or Qwen smart_resize of the displayed size with
// the per-frame pixel bounds and a total-pixel budget across all frames (video/qwen_preprocess.h).
struct OutputSize {
  int width = 0, height = 0;
  int64_t min_pixels = kQwenVideoMinPixels;
  int64_t max_pixels = kQwenVideoMaxPixels;
  int64_t total_pixels = kQwenVideoTotalPixels;
};

enum class Accuracy {
  Exact,     // the last frame with pts <= target
  Keyframe,  // the nearest keyframe at or before the target: far faster, not exact
};

struct SampleOptions {
  OpenOptions open;
  Accuracy accuracy = Accuracy::Exact;
  OnDamage on_damage = OnDamage::Previous;  // Exact only: a keyframe either decodes or is an error
  int64_t packet_budget = 0;  // packets one call may read; 0 = 4 × the stream's packets + 10000
};

struct DecodeStats {
  int64_t packets_read = 0;
  int64_t frames_decoded = 0;
  int64_t seeks = 0;
};

struct SampledFrames {
  at::Tensor frames;            // [N, H, W, 3] uint8 RGB, N = number of targets (fewer under OnDamage::Drop)
  at::Tensor timestamps;        // [N] float64: pts of each returned frame, seconds from the first frame
  std::vector<double> targets;  // [N] the requested times, same order
  // [N] the target's own frame did not decode (it lies in a damaged span, or the stream ends before
  // it): the frame returned stands in for it, chosen by the OnDamage policy.
  std::vector<bool> damaged;
  std::vector<DamagedSpan> damaged_spans;  // where damaged targets fell, ascending, each once
  std::vector<double> dropped;             // OnDamage::Drop: the targets left out, request order
  OnDamage on_damage = OnDamage::Previous;
  std::vector<std::string> warnings;  // damaged spans that were skipped, with their times
  DecodeStats stats;
  VideoInfo info;
};

// Throws InputError (file + reason) for unusable input. A partially damaged file yields the frames
// that decode plus warnings naming the damaged span; a target whose own frame does not decode gets
// what options.on_damage says (OnDamage::Error: an InputError naming the file and the span), marked
// in `damaged`; a target with no decodable frame at all is an error, never a substituted frame.
SampledFrames sample_frames(const std::string& path, const SamplingPlan& plan, const OutputSize& size,
                            const SampleOptions& options = {});

// Many videos at once, one decoder thread each, `parallel` videos in flight. Each result is either
// frames or the error text for that file (other files still succeed). An error that is no file's
// fault (out of memory, a bug) is rethrown once every worker has stopped.
struct BatchResult {
  std::string path;
  bool ok = false;
  SampledFrames sampled;
  std::string error;
};
std::vector<BatchResult> sample_many(const std::vector<std::string>& paths, const SamplingPlan& plan,
                                     const OutputSize& size, int parallel, SampleOptions options = {});

}  // namespace lvrl::video
