// `lvrl sp plan`: the SP layout (U × R), per-rank memory and comm volume one training step would use,
// and why (sp/plan.h). Prints the explanation, then one JSON line; exits 1 when nothing fits.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/command.h"
#include "core/error.h"
#include "model/qwen_config.h"
#include "sp/plan.h"

namespace lvrl::sp {
namespace {

struct PlanArgs {
  std::string model_dir, preset;
  PlanInput input;
  bool no_recompute = false;
};

int run_plan(PlanArgs& args) {
  if (args.model_dir.empty() == args.preset.empty()) {
    throw InputError(
        {"", 0, "--model/--preset", args.model_dir + args.preset},
        "give exactly one of --model DIR (a checkpoint's config.json) or --preset tiny|small|3b|7b");
  }
  PlanInput& input = args.input;
  if (!args.preset.empty()) {
    input.config = model::QwenConfig::preset(args.preset);
    input.model_name = "preset " + args.preset;
  } else {
    input.config = model::QwenConfig::load(args.model_dir);
    input.model_name = args.model_dir;
  }
  input.recompute = !args.no_recompute;
  const Plan plan = make_plan(input);
  std::cout << format_plan(input, plan) << plan_json(input, plan).dump() << std::endl;
  return plan.fits ? 0 : 1;
}

const RegisterCommand plan_command(
    "sp plan",
    "Choose the SP degree and its Ulysses × ring split for a video length and a cluster; print per-rank "
    "memory, "
    "comm volume and why",
    [](CLI::App& app) {
      auto args = std::make_shared<PlanArgs>();
      PlanInput& in = args->input;
      app.add_option("--model", args->model_dir, "checkpoint directory (or its config.json)");
      app.add_option("--preset", args->preset, "tiny | small | 3b | 7b");
      app.add_option("--frames", in.frames, "video frames the model sees")->required();
      app.add_option(
             "--tokens-per-frame", in.tokens_per_frame,
             "language-model tokens per frame: (H/28)·(W/28)/2 for H×W frames (2×2 merge, frame pairs)")
          ->required();
      app.add_option("--text-tokens", in.text_tokens, "prompt + response tokens")->capture_default_str();
      app.add_option("--gpus-per-node", in.gpus_per_node, "G: GPUs per node")->required();
      app.add_option("--world-size", in.world_size, "W: GPUs in all")->required();
      app.add_option("--memory-per-gpu-gb", in.memory_per_gpu_gib,
                     "memory per GPU in GiB (an 80 GB H100: 80)")
          ->capture_default_str();
      app.add_option("--sp", in.sp, "force this SP degree (must divide --world-size)");
      app.add_flag("--no-recompute", args->no_recompute, "estimate without activation checkpointing");
      app.footer(
          "Example: lvrl sp plan --preset 7b --frames 3600 --tokens-per-frame 64 --gpus-per-node 8 "
          "--world-size 8");
      return [args] { return run_plan(*args); };
    });

}  // namespace
}  // namespace lvrl::sp
