// What each OnDamage policy returns for targets whose own frame does not decode, on an H.264 file
// with random bytes over P-frames in three GOPs. The reference is worked out by hand, never from
// the sampler: the damaged frames are each flipped frame up to the next keyframe (closed GOPs, no
// B-frames: every later frame of the GOP references it), the ffmpeg CLI confirms that every frame
// outside those spans still decodes to its own index and the flipped ones do not, and from that
// list each policy's frame for each target follows (previous: the last decodable at or before it;
// nearest: the closer of that and the first decodable after it, in stream ticks, a tie to the
// earlier; drop: left out; error: refused naming the file and span). The same rules are checked on
// the `lvrl` binary (exit status, stderr, --json, safetensors metadata), and FFmpeg's own log lines
// must stay off stderr unless the log level is debug.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/safetensors.h"
#include "tests/support/run_process.h"
#include "tests/video/test_videos.h"
#include "video/on_damage.h"
#include "video/sampling.h"

namespace {
namespace tv = lvrl::testing_video;
using lvrl::video::OnDamage;
using lvrl::video::OutputSize;
using lvrl::video::SampledFrames;
using lvrl::video::SampleOptions;
using lvrl::video::SamplingPlan;

constexpr double kDeadline = 30;  // seconds; each sampling takes well under one

tv::VideoSpec damage_spec() {
  tv::VideoSpec spec;
  spec.name = "h264_mp4_for_damage_policies";
  spec.frames = 150;
  spec.gop = 30;  // keyframes 0, 30, 60, 90, 120
  spec.bframes = 0;
  return spec;
}

// One damaged copy shared by every test here (fixed seed: the same bytes each run). Frame 1 is
// among the frames opening a file decodes (stream info, the first frame's time), so even `probe`
// meets the damage and FFmpeg logs about it.
const tv::DamagedVideo& damaged_video() {
  static const tv::DamagedVideo video =
      tv::damage_frames(tv::make_video(damage_spec()), {1, 41, 95}, "h264_mp4_damaged_3_gops.mp4", 20261207);
  return video;
}

struct Target {
  double seconds;  // what is asked for
  int64_t tick;    // the same, stream ticks
};

// Every frame's own time and every midpoint between neighbours: the midpoints make ties for
// `nearest` impossible to hide behind frame-exact targets, the frame times make exact ties.
std::vector<Target> targets_of(const tv::ReferenceFrames& reference) {
  std::vector<Target> targets;
  const int64_t first = reference.ticks.front();
  auto seconds = [&](int64_t tick) {
    return static_cast<double>(tick - first) * reference.time_base_num /
           static_cast<double>(reference.time_base_den);
  };
  for (size_t i = 0; i < reference.ticks.size(); ++i) {
    targets.push_back({seconds(reference.ticks[i]), reference.ticks[i]});
    if (i + 1 < reference.ticks.size()) {
      const int64_t middle = (reference.ticks[i] + reference.ticks[i + 1]) / 2;
      targets.push_back({seconds(middle), middle});
    }
  }
  return targets;
}

// The hand-made reference: which frames decode, and what each policy returns for a target.
struct Expected {
  std::vector<bool> decodes;  // [frames]
  const tv::ReferenceFrames* reference;

  int64_t exact(int64_t tick) const {  // the frame for the target, damaged or not
    int64_t frame = 0;
    while (frame + 1 < static_cast<int64_t>(reference->ticks.size()) && reference->ticks[frame + 1] <= tick)
      ++frame;
    return frame;
  }
  bool damaged(int64_t tick) const { return !decodes[exact(tick)]; }
  // The policy's frame index; -1 for drop.
  int64_t frame(OnDamage policy, int64_t tick) const {
    int64_t frame = exact(tick);
    if (decodes[frame]) return frame;
    if (policy == OnDamage::Drop) return -1;
    int64_t before = frame, after = frame;
    while (before >= 0 && !decodes[before]) --before;
    while (after < static_cast<int64_t>(decodes.size()) && !decodes[after]) ++after;
    if (policy == OnDamage::Nearest && after < static_cast<int64_t>(decodes.size()) &&
        reference->ticks[after] - tick < tick - reference->ticks[before]) {
      return after;
    }
    return before;
  }
};

Expected expected_for(const tv::DamagedVideo& video, const tv::ReferenceFrames& reference) {
  Expected expected{std::vector<bool>(reference.ticks.size(), true), &reference};
  for (const auto& [first, end] : video.spans) {
    for (int frame = first; frame < end; ++frame) expected.decodes[frame] = false;
  }
  return expected;
}

OutputSize size_of(const tv::VideoSpec& spec) {
  OutputSize size;
  size.width = spec.width;
  size.height = spec.height;
  return size;
}

SampledFrames sample(const std::string& path, const std::vector<Target>& targets, OnDamage policy,
                     int threads) {
  std::vector<double> seconds;
  for (const Target& target : targets) seconds.push_back(target.seconds);
  SampleOptions options;
  options.on_damage = policy;
  options.open.threads = threads;
  return tv::run_with_deadline(kDeadline, "sampling " + path, [&] {
    return lvrl::video::sample_frames(path, SamplingPlan::at_times(seconds), size_of(damage_spec()), options);
  });
}

// The spans in the sampler's own terms: first undecodable frame to the next decodable one.
std::vector<lvrl::video::DamagedSpan> expected_spans(const tv::DamagedVideo& video,
                                                     const tv::ReferenceFrames& reference) {
  std::vector<lvrl::video::DamagedSpan> spans;
  for (const auto& [first, end] : video.spans)
    spans.push_back({reference.times[first], reference.times[end]});
  return spans;
}

// The reference holds: the CLI decodes every frame outside the spans to its own index, and none of
// the flipped frames.
TEST(DamagePolicy, ReferenceAgreesWithTheFfmpegCli) {
  const tv::DamagedVideo& video = damaged_video();
  const tv::ReferenceFrames& reference = tv::reference_frames(tv::make_video(damage_spec()));
  const Expected expected = expected_for(video, reference);
  std::vector<int> cli = tv::cli_frame_indices(video.path, damage_spec().width, damage_spec().height, 0);
  const std::set<int> decoded(cli.begin(), cli.end());
  for (size_t frame = 0; frame < expected.decodes.size(); ++frame) {
    if (expected.decodes[frame]) {
      EXPECT_EQ(decoded.count(static_cast<int>(frame)), 1u) << "frame " << frame;
    }
  }
  for (const auto& span : video.spans)
    EXPECT_EQ(decoded.count(span.first), 0u) << "flipped frame " << span.first;
  ASSERT_EQ(video.spans.size(), 3u);
}

// One decoder thread: errors surface at the bad packet itself, so the sampler's damaged frames are
// exactly the hand-made spans and every policy's frames must match the table.
TEST(DamagePolicy, EachPolicyReturnsTheFramesWorkedOutByHand) {
  const tv::DamagedVideo& video = damaged_video();
  const tv::ReferenceFrames& reference = tv::reference_frames(tv::make_video(damage_spec()));
  const Expected expected = expected_for(video, reference);
  const std::vector<Target> targets = targets_of(reference);
  for (OnDamage policy : {OnDamage::Previous, OnDamage::Nearest, OnDamage::Drop}) {
    const std::string name = lvrl::video::on_damage_name(policy);
    SampledFrames got = sample(video.path, targets, policy, 1);
    std::vector<int64_t> want;  // frame per kept target
    std::vector<bool> want_damaged;
    std::vector<double> want_dropped;
    for (const Target& target : targets) {
      const int64_t frame = expected.frame(policy, target.tick);
      if (frame < 0) {
        want_dropped.push_back(target.seconds);
        continue;
      }
      want.push_back(frame);
      want_damaged.push_back(expected.damaged(target.tick));
    }
    ASSERT_EQ(got.frames.size(0), static_cast<int64_t>(want.size())) << name;
    ASSERT_EQ(got.damaged.size(), want.size()) << name;
    EXPECT_EQ(got.dropped, want_dropped) << name;
    const double* times = got.timestamps.data_ptr<double>();
    int mismatches = 0;
    for (size_t i = 0; i < want.size() && mismatches < 10; ++i) {
      const int index = tv::frame_index(got.frames, static_cast<int64_t>(i));
      const bool ok = index == want[i] && std::abs(times[i] - reference.times[want[i]]) < 1e-3 &&
                      got.damaged[i] == want_damaged[i];
      mismatches += !ok;
      EXPECT_TRUE(ok) << name << " target " << got.targets[i] << " s: expected frame " << want[i]
                      << (want_damaged[i] ? " (damaged)" : "") << ", got frame " << index << " at "
                      << times[i] << " s" << (got.damaged[i] ? " (damaged)" : "");
    }
    const auto spans = expected_spans(video, reference);
    ASSERT_EQ(got.damaged_spans.size(), spans.size()) << name;
    for (size_t i = 0; i < spans.size(); ++i) {
      EXPECT_NEAR(got.damaged_spans[i].begin_s, spans[i].begin_s, 1e-3) << name << " span " << i;
      EXPECT_NEAR(got.damaged_spans[i].end_s, spans[i].end_s, 1e-3) << name << " span " << i;
    }
  }
  // drop gives fewer frames: one per damaged frame time and one per midpoint inside a span.
  size_t damaged_targets = 0;
  for (const Target& target : targets) damaged_targets += expected.damaged(target.tick);
  EXPECT_GT(damaged_targets, 2 * 25u);
}

TEST(DamagePolicy, ErrorNamesTheFileAndTheSpan) {
  const tv::DamagedVideo& video = damaged_video();
  const tv::ReferenceFrames& reference = tv::reference_frames(tv::make_video(damage_spec()));
  const std::string first_span = lvrl::video::span_text(expected_spans(video, reference).front());
  std::string message = tv::run_with_deadline(kDeadline, "sampling " + video.path, [&]() -> std::string {
    try {
      sample(video.path, targets_of(reference), OnDamage::Error, 1);
      return "no error";
    } catch (const lvrl::InputError& e) {
      return e.file() == video.path ? e.what() : std::string("another file: ") + e.what();
    }
  });
  EXPECT_NE(message.find(video.path), std::string::npos) << message;
  EXPECT_NE(message.find(first_span), std::string::npos) << first_span << " in: " << message;
  // A file without damage passes under `error`.
  SampledFrames clean = sample(tv::make_video(damage_spec()), targets_of(reference), OnDamage::Error, 1);
  EXPECT_EQ(std::count(clean.damaged.begin(), clean.damaged.end(), true), 0);
}

// Frame threads report an error a few packets late, so frames just before the damage may be given
// up as well; the sampler must still return only frames that are what their timestamps say, mark
// every target in a hand-made span, and keep `nearest` and `drop` consistent with its own marks.
TEST(DamagePolicy, FrameThreadsKeepThePoliciesHonest) {
  const tv::DamagedVideo& video = damaged_video();
  const tv::VideoSpec spec = damage_spec();
  const std::string original = tv::make_video(spec);
  const tv::ReferenceFrames& reference = tv::reference_frames(original);
  const Expected expected = expected_for(video, reference);
  const std::vector<Target> targets = targets_of(reference);
  SampledFrames previous = sample(video.path, targets, OnDamage::Previous, 4);
  SampledFrames nearest = sample(video.path, targets, OnDamage::Nearest, 4);
  SampledFrames dropped = sample(video.path, targets, OnDamage::Drop, 4);
  for (const SampledFrames* got : {&previous, &nearest, &dropped}) {
    std::string report = tv::consistency_report(*got, original, 0, "frame threads");
    EXPECT_TRUE(report.empty()) << report;
  }
  ASSERT_EQ(previous.damaged.size(), targets.size());
  size_t marked = 0;
  const double* previous_times = previous.timestamps.data_ptr<double>();
  const double* nearest_times = nearest.timestamps.data_ptr<double>();
  for (size_t i = 0; i < targets.size(); ++i) {
    marked += previous.damaged[i];
    if (expected.damaged(targets[i].tick)) {
      EXPECT_TRUE(previous.damaged[i]) << "target " << targets[i].seconds;
    }
    EXPECT_EQ(previous.damaged[i], nearest.damaged[i]) << "target " << targets[i].seconds;
    EXPECT_LE(previous_times[i], targets[i].seconds + 1e-9) << "previous gave a later frame";
    if (!previous.damaged[i]) {
      EXPECT_EQ(nearest_times[i], previous_times[i]) << "target " << targets[i].seconds;
    }
  }
  EXPECT_EQ(dropped.frames.size(0), static_cast<int64_t>(targets.size() - marked));
  EXPECT_EQ(dropped.dropped.size(), marked);
}

// ---- The binary ---------------------------------------------------------------------------------

lvrl::test::ProcessResult run_lvrl(const std::vector<std::string>& args, const std::string& log_level = "") {
  lvrl::test::ProcessOptions options;
  options.separate_stderr = true;
  if (!log_level.empty()) options.env["LVRL_LOG_LEVEL"] = log_level;
  return lvrl::test::run_lvrl(args, options);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  return lines;
}

std::string frame_times_argument(const tv::ReferenceFrames& reference) {
  std::string text;
  for (double t : reference.times) text += (text.empty() ? "" : ",") + fmt::format("{}", t);  // round-trips
  return text;
}

TEST(DamagePolicy, SampleCommandStatesThePolicy) {
  const tv::DamagedVideo& video = damaged_video();
  const tv::ReferenceFrames& reference = tv::reference_frames(tv::make_video(damage_spec()));
  const Expected expected = expected_for(video, reference);
  const std::string out = tv::video_dir() + "/damage_policy_sample.safetensors";
  const std::vector<std::string> base = {
      "video",   "sample", video.path, "--timestamps", frame_times_argument(reference),
      "--width", "160",    "--height", "96",           "--threads",
      "1",       "--out",  out};

  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return run_lvrl(args);
  };
  lvrl::test::ProcessResult error = with({"--on-damage", "error"});
  EXPECT_EQ(error.exit_code, 2) << error.error_output;
  EXPECT_NE(error.error_output.find(video.path), std::string::npos) << error.error_output;
  EXPECT_NE(error.error_output.find(lvrl::video::span_text(expected_spans(video, reference).front())),
            std::string::npos)
      << error.error_output;

  lvrl::test::ProcessResult nearest = with({"--on-damage", "nearest", "--json"});
  ASSERT_EQ(nearest.exit_code, 0) << nearest.error_output;
  const nlohmann::json summary = nlohmann::json::parse(nearest.output);
  const nlohmann::json& records = summary["frame_records"];
  ASSERT_EQ(records.size(), reference.times.size()) << nearest.output;
  for (size_t i = 0; i < reference.times.size(); ++i) {
    const int64_t want = expected.frame(OnDamage::Nearest, reference.ticks[i]);
    EXPECT_NEAR(records[i]["target"].get<double>(), reference.times[i], 1e-6) << i;
    EXPECT_NEAR(records[i]["time"].get<double>(), reference.times[want], 1e-3) << i;
    EXPECT_EQ(records[i]["damaged"].get<bool>(), !expected.decodes[i]) << i;
  }
  EXPECT_EQ(summary["damaged_spans"].size(), video.spans.size());
  // The safetensors file says the same.
  auto file = lvrl::safetensors::File::open(out);
  EXPECT_EQ(nlohmann::json::parse(file->metadata().at("frame_records")), records);
  EXPECT_EQ(file->metadata().at("on_damage"), "nearest");

  lvrl::test::ProcessResult drop = with({"--on-damage", "drop", "--json"});
  ASSERT_EQ(drop.exit_code, 0) << drop.error_output;
  const nlohmann::json dropped = nlohmann::json::parse(drop.output);
  const auto decodable = std::count(expected.decodes.begin(), expected.decodes.end(), true);
  EXPECT_EQ(dropped["frames"].get<int64_t>(), decodable);
  EXPECT_EQ(dropped["dropped_targets"].size(), reference.times.size() - decodable);
}

// FFmpeg's decoder lines ("[h264 @ 0x...] ...") never reach stderr raw: `video probe` prints its JSON
// and at most one warning per damaged span; `video sample` only lvrl's own warnings. At debug level
// the same lines appear through lvrl's logger.
TEST(DamagePolicy, FfmpegLogLinesGoThroughTheLogger) {
  const tv::DamagedVideo& video = damaged_video();
  lvrl::test::ProcessResult probe = run_lvrl({"video", "probe", video.path});
  ASSERT_EQ(probe.exit_code, 0) << probe.error_output;
  EXPECT_TRUE(nlohmann::json::parse(probe.output, nullptr, false).is_object()) << probe.output;
  EXPECT_LE(lines_of(probe.error_output).size(), video.spans.size()) << probe.error_output;

  const tv::ReferenceFrames& reference = tv::reference_frames(tv::make_video(damage_spec()));
  const std::vector<std::string> args = {"video",
                                         "sample",
                                         video.path,
                                         "--timestamps",
                                         frame_times_argument(reference),
                                         "--width",
                                         "160",
                                         "--height",
                                         "96",
                                         "--out",
                                         tv::video_dir() + "/damage_policy_log.safetensors"};
  lvrl::test::ProcessResult sampled = run_lvrl(args);
  ASSERT_EQ(sampled.exit_code, 0) << sampled.error_output;
  for (const std::string& line : lines_of(sampled.error_output)) {
    EXPECT_NE(line.find("[warning]"), std::string::npos) << "not one of lvrl's warnings: " << line;
  }
  EXPECT_EQ(sampled.error_output.find("[h264 @"), std::string::npos) << sampled.error_output;

  lvrl::test::ProcessResult debug = run_lvrl(args, "debug");
  ASSERT_EQ(debug.exit_code, 0) << debug.error_output;
  EXPECT_NE(debug.error_output.find("ffmpeg: [h264 @"), std::string::npos) << debug.error_output;
}

}  // namespace
