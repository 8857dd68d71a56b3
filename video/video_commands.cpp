// `lvrl video probe FILE` and `lvrl video sample FILE ... --out OUT.safetensors`. The sample's
// safetensors metadata and its --json line record, per frame, the target time, the time of the frame
// returned and whether it stands in for a frame that did not decode (video/on_damage.h).
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/clock.h"
#include "core/command.h"
#include "core/error.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "video/probe.h"
#include "video/sampling.h"

namespace lvrl::video {
namespace {
const RegisterCommand probe_command("video probe", "Print a video's properties as JSON", [](CLI::App& app) {
  auto file = std::make_shared<std::string>();
  app.add_option("FILE", *file, "video file")->required();
  return [file] {
    std::cout << probe(*file).to_json().dump(2) << "\n";
    return 0;
  };
});

struct SampleArgs {
  std::string file, out, timestamps, accuracy = "exact", on_damage = "previous";
  bool json = false;
  int64_t frames = 0, max_frames = 0, max_pixels = 0;
  double fps = 0;
  int width = 0, height = 0, threads = 0;
};

std::vector<double> parse_times(const std::string& text) {
  std::vector<double> times;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    size_t used = 0;
    try {
      times.push_back(std::stod(item, &used));
    } catch (const std::invalid_argument&) {  // std::stod: no number at all
    } catch (const std::out_of_range&) {      // std::stod: beyond double's range
    }
    if (used == 0 || used != item.size()) {
      throw InputError({"", 0, "--timestamps", item}, "expected comma-separated seconds, e.g. 0.5,12,30.25");
    }
  }
  return times;
}

int run_sample(const SampleArgs& args) {
  SamplingPlan plan = args.frames > 0 ? SamplingPlan::uniform(args.frames)
                      : args.fps > 0  ? SamplingPlan::at_fps(args.fps, args.max_frames)
                                      : SamplingPlan::at_times(parse_times(args.timestamps));
  OutputSize size;
  size.width = args.width;
  size.height = args.height;
  if (args.max_pixels > 0) size.max_pixels = args.max_pixels;
  SampleOptions options;
  options.open.threads = args.threads;
  options.accuracy = args.accuracy == "keyframe" ? Accuracy::Keyframe : Accuracy::Exact;
  options.on_damage = parse_on_damage(args.on_damage, "--on-damage");
  if (options.accuracy == Accuracy::Keyframe && options.on_damage != OnDamage::Previous) {
    throw InputError({"", 0, "--on-damage", args.on_damage},
                     "applies to --accuracy exact only: keyframe sampling returns the keyframe or fails");
  }

  auto start = SteadyClock::now();
  SampledFrames sampled = sample_frames(args.file, plan, size, options);
  double elapsed = seconds_since(start);
  for (const std::string& warning : sampled.warnings) LVRL_WARN("{}", warning);

  at::Tensor times = sampled.timestamps.contiguous();
  const nlohmann::json records =
      frame_records(sampled.targets,
                    std::vector<double>(times.data_ptr<double>(), times.data_ptr<double>() + times.numel()),
                    sampled.damaged);
  safetensors::save(args.out, {{"frames", sampled.frames}, {"timestamps", sampled.timestamps}},
                    {{"source", args.file},
                     {"plan", plan.describe()},
                     {"accuracy", args.accuracy},
                     {"on_damage", args.on_damage},
                     {"frame_records", records.dump()},
                     {"damaged_spans", spans_json(sampled.damaged_spans).dump()},
                     {"dropped_targets", nlohmann::json(sampled.dropped).dump()}});
  if (args.json) {
    std::cout << nlohmann::json{{"command", "video sample"},
                                {"source", args.file},
                                {"out", args.out},
                                {"plan", plan.describe()},
                                {"accuracy", args.accuracy},
                                {"on_damage", args.on_damage},
                                {"frames", sampled.frames.size(0)},
                                {"width", sampled.frames.size(2)},
                                {"height", sampled.frames.size(1)},
                                {"seconds", elapsed},
                                {"frames_decoded", sampled.stats.frames_decoded},
                                {"seeks", sampled.stats.seeks},
                                {"packets", sampled.stats.packets_read},
                                {"warnings", sampled.warnings},
                                {"frame_records", records},
                                {"damaged_spans", spans_json(sampled.damaged_spans)},
                                {"dropped_targets", sampled.dropped}}
                     .dump()
              << "\n";
    return 0;
  }
  std::cout << fmt::format(
      "sampled {} frames {}x{} ({}) from {} in {:.3f} s: decoded {} frames, {} seeks, "
      "{} packets, {} warnings -> {}\n",
      sampled.frames.size(0), sampled.frames.size(2), sampled.frames.size(1), plan.describe(), args.file,
      elapsed, sampled.stats.frames_decoded, sampled.stats.seeks, sampled.stats.packets_read,
      sampled.warnings.size(), args.out);
  return 0;
}

const RegisterCommand sample_command(
    "video sample", "Sample frames (uniform, fps or explicit times) into a safetensors file",
    [](CLI::App& app) {
      auto args = std::make_shared<SampleArgs>();
      app.add_option("FILE", args->file, "video file")->required();
      auto* frames = app.add_option("--frames", args->frames, "N frames uniform over the duration")
                         ->check(CLI::PositiveNumber);
      auto* fps =
          app.add_option("--fps", args->fps, "one frame every 1/F seconds")->check(CLI::PositiveNumber);
      auto* times = app.add_option("--timestamps", args->timestamps, "explicit times in seconds: t1,t2,...");
      frames->excludes(fps)->excludes(times);
      fps->excludes(times);
      app.add_option("--max-frames", args->max_frames, "with --fps: at most M frames (then uniform)")
          ->needs(fps)
          ->check(CLI::PositiveNumber);
      auto* width = app.add_option("--width", args->width, "output width")->check(CLI::Range(1, 16384));
      auto* height = app.add_option("--height", args->height, "output height")->check(CLI::Range(1, 16384));
      width->needs(height);
      height->needs(width);
      app.add_option("--max-pixels", args->max_pixels, "Qwen smart_resize: at most P pixels per frame")
          ->excludes(width)
          ->check(CLI::PositiveNumber);
      app.add_option("--threads", args->threads, "decoder threads (0 = auto)")->check(CLI::NonNegativeNumber);
      app.add_option("--accuracy", args->accuracy,
                     "exact (default) or keyframe (nearest keyframe at or before)")
          ->check(CLI::IsMember({"exact", "keyframe"}));
      app.add_option(
             "--on-damage", args->on_damage,
             "a target whose frame does not decode gets: previous (default; the last decodable frame "
             "before it), nearest (either side), drop (left out: fewer frames) or error (exit 2 naming "
             "the damaged span)")
          ->check(CLI::IsMember({"previous", "nearest", "drop", "error"}));
      app.add_flag(
          "--json", args->json,
          "print one JSON object (figures, warnings, per-frame target/time/damaged) instead of the line");
      app.add_option("--out", args->out,
                     "output .safetensors: frames uint8 [N,H,W,3], timestamps float64 [N]")
          ->required();
      return [args] {
        if (args->frames == 0 && args->fps == 0 && args->timestamps.empty()) {
          throw InputError({"", 0, "plan", ""}, "give one of --frames N, --fps F or --timestamps t1,t2,..");
        }
        return run_sample(*args);
      };
    });
}  // namespace
}  // namespace lvrl::video
