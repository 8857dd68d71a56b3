// Sampling plans → target timestamps. Targets are times, never frame numbers: container frame
// counts lie for VFR and damaged files, timestamps do not.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

#include "core/error.h"
#include "video/sampling.h"

namespace lvrl::video {

SamplingPlan SamplingPlan::uniform(int64_t frames) {
  if (frames <= 0)
    throw InputError({"", 0, "frames", std::to_string(frames)}, "expected a positive frame count");
  SamplingPlan plan;
  plan.kind_ = Kind::Uniform;
  plan.frames_ = frames;
  return plan;
}

SamplingPlan SamplingPlan::at_fps(double fps, int64_t max_frames) {
  if (!(fps > 0) || !std::isfinite(fps)) {
    throw InputError({"", 0, "fps", fmt::format("{}", fps)}, "expected a positive frame rate");
  }
  if (max_frames < 0) {
    throw InputError({"", 0, "max_frames", std::to_string(max_frames)},
                     "expected 0 (no cap) or a positive cap");
  }
  SamplingPlan plan;
  plan.kind_ = Kind::Fps;
  plan.fps_ = fps;
  plan.frames_ = max_frames;
  return plan;
}

SamplingPlan SamplingPlan::at_times(std::vector<double> seconds) {
  if (seconds.empty()) throw InputError({"", 0, "timestamps", ""}, "expected at least one timestamp");
  for (double t : seconds) {
    if (!std::isfinite(t))
      throw InputError({"", 0, "timestamps", fmt::format("{}", t)}, "expected finite seconds");
  }
  SamplingPlan plan;
  plan.kind_ = Kind::Timestamps;
  plan.times_ = std::move(seconds);
  return plan;
}

std::vector<double> SamplingPlan::targets(double duration_s) const {
  if (kind_ == Kind::Timestamps) return times_;
  if (!(duration_s > 0)) {
    throw InputError({"", 0, "duration", fmt::format("{}", duration_s)},
                     "the video's duration is unknown or zero: use explicit timestamps");
  }
  int64_t count = frames_;
  if (kind_ == Kind::Fps) {
    int64_t at_rate = static_cast<int64_t>(std::ceil(duration_s * fps_ - 1e-9));  // t = k/fps < duration
    if (frames_ == 0 || at_rate <= frames_) {
      std::vector<double> times;
      for (int64_t k = 0; k < std::max<int64_t>(at_rate, 1); ++k) times.push_back(k / fps_);
      return times;
    }
  }
  std::vector<double> times(count);
  for (int64_t i = 0; i < count; ++i) times[i] = (i + 0.5) * duration_s / count;
  return times;
}

std::string SamplingPlan::describe() const {
  switch (kind_) {
    case Kind::Uniform:
      return fmt::format("uniform {}", frames_);
    case Kind::Fps:
      return frames_ > 0 ? fmt::format("fps {} max {}", fps_, frames_) : fmt::format("fps {}", fps_);
    default:
      return fmt::format("timestamps [{}]", fmt::join(times_, ", "));
  }
}

}  // namespace lvrl::video
