// `lvrl dataset synth --out DIR --videos N --seed S [--duration SEC] [--size WxH]`.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <regex>

#include "core/command.h"
#include "core/error.h"
#include "synth/synthesize.h"

namespace lvrl::synth {
namespace {

struct SynthArgs {
  SynthOptions options;
  std::string size = "128x96";
};

void parse_size(const std::string& text, SynthOptions& options) {
  std::smatch match;
  if (!std::regex_match(text, match, std::regex("([0-9]{1,5})x([0-9]{1,5})"))) {
    throw InputError({"", 0, "--size", text}, "expected WIDTHxHEIGHT, e.g. 64x48");
  }
  options.width = std::stoi(match[1]);
  options.height = std::stoi(match[2]);
}

int run_synth(SynthArgs& args) {
  parse_size(args.size, args.options);
  const SynthSummary summary = synthesize(args.options);
  std::cout << fmt::format(
      "wrote {} videos ({} train, {} test; {}x{}, {} s, {} sampled frames each) and "
      "{} train / {} test questions to {} in {:.2f} s\n",
      summary.train_videos + summary.test_videos, summary.train_videos, summary.test_videos,
      args.options.width, args.options.height, args.options.duration_s, summary.sampled_frames,
      summary.train_questions, summary.test_questions, args.options.out_dir, summary.seconds);
  return 0;
}

const RegisterCommand synth_command(
    "dataset synth", "Write a synthetic video QA dataset (H.264 videos, train/test/sft JSONL)",
    [](CLI::App& app) {
      auto args = std::make_shared<SynthArgs>();
      SynthOptions& o = args->options;
      app.add_option("--out", o.out_dir, "output directory (videos/, train.jsonl, test.jsonl, sft.jsonl)")
          ->required();
      app.add_option("--videos", o.videos, "number of videos (5 questions each)")->required();
      app.add_option("--seed", o.seed, "random seed: the same seed gives byte-identical files")->required();
      app.add_option("--duration", o.duration_s, "seconds per video (the questions need 16 sampled frames)")
          ->capture_default_str();
      app.add_option("--size", args->size, "WIDTHxHEIGHT, even, at least 32x32")->capture_default_str();
      app.add_option("--test-fraction", o.test_fraction, "share of the videos in the test split")
          ->capture_default_str();
      app.add_option("--threads", o.threads, "videos encoded at once (0 = one per core)")
          ->capture_default_str();
      return [args] { return run_synth(*args); };
    });

}  // namespace
}  // namespace lvrl::synth
