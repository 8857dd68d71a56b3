// `lvrl model init` writes a randomly initialised Qwen2.5-VL of a preset size as a checkpoint
// directory (config.json, safetensors, the tokenizer files); `lvrl model info` prints a checkpoint's
// parameters per part and what a video of a given frame count costs in memory.
//
// Parameter counts come from the config alone (parameter_counts below), so `info` on a 7B config
// never allocates 7B parameters; a test checks the formula against an instantiated model.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/command.h"
#include "core/dtype_name.h"
#include "core/error.h"
#include "core/log.h"
#include "model/model_info.h"
#include "model/tokenizer.h"
#include "model/weights.h"

namespace lvrl::model {
namespace {

namespace fs = std::filesystem;

at::ScalarType parse_dtype(const std::string& name) {
  return parse_float_dtype(name, {at::kFloat, at::kBFloat16, at::kHalf}, {"", 0, "--dtype", ""});
}

// The tokenizer must speak the config's special tokens (the ids the model scatters videos into).
void check_tokenizer(const Tokenizer& tokenizer, const QwenConfig& config) {
  const std::pair<const char*, int64_t> expected[] = {{"<|video_pad|>", config.video_token_id},
                                                      {"<|vision_start|>", config.vision_start_token_id},
                                                      {"<|vision_end|>", config.vision_end_token_id},
                                                      {"<|im_end|>", config.eos_token_id}};
  for (const auto& [token, id] : expected) {
    if (tokenizer.id_of(token) != id) {
      throw InputError({tokenizer.source(), 0, token, std::to_string(tokenizer.id_of(token))},
                       fmt::format("the config expects id {}", id));
    }
  }
  if (static_cast<int64_t>(tokenizer.vocab_size()) > config.text.vocab_size) {
    throw InputError({tokenizer.source(), 0, "vocab_size", std::to_string(tokenizer.vocab_size())},
                     fmt::format("more tokens than the model's {} embedding rows", config.text.vocab_size));
  }
}

struct InitArgs {
  std::string preset = "tiny";
  std::string out;
  std::string tokenizer;
  std::string dtype;
  uint64_t seed = 0;
  bool force = false;
};

int run_init(const InitArgs& args) {
  if (args.preset != "tiny" && args.preset != "small") {
    throw InputError({"", 0, "--preset", args.preset}, "expected tiny or small");
  }
  std::string tokenizer_dir = args.tokenizer;
  if (tokenizer_dir.empty()) {
    const char* env = std::getenv("LVRL_TOKENIZER_DIR");
    if (env == nullptr || *env == '\0') {
      throw InputError({"", 0, "--tokenizer", ""},
                       "give the directory holding the Qwen tokenizer.json (or set LVRL_TOKENIZER_DIR)");
    }
    tokenizer_dir = env;
  }
  if (!args.force && fs::exists(fs::path(args.out) / "config.json")) {
    throw InputError({args.out, 0, "--out", args.out},
                     "already holds a model (config.json); pass --force to replace it");
  }
  QwenConfig config = QwenConfig::preset(args.preset);
  const Tokenizer tokenizer = Tokenizer::load(tokenizer_dir);
  check_tokenizer(tokenizer, config);
  QwenVL model(config);
  init_weights(*model, args.seed);
  const at::ScalarType dtype = parse_dtype(args.dtype.empty() ? config.torch_dtype : args.dtype);
  save_model(*model, args.out, dtype);
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"}) {
    fs::path from = fs::path(tokenizer_dir) / name;
    if (fs::exists(from))
      fs::copy_file(from, fs::path(args.out) / name, fs::copy_options::overwrite_existing);
  }
  const PartCounts counts = parameter_counts(config);
  LVRL_INFO("wrote {} ({} preset, {:.1f} M parameters, {}, seed {})", args.out, args.preset,
            counts.total() / 1e6, c10::toString(dtype), args.seed);
  return 0;
}

struct InfoArgs {
  std::string dir;
  int64_t frames = 64;
  std::string frame_size = "448x448";
  int64_t text_tokens = 1024;
  std::string dtype = "bfloat16";
  bool json = false;
};

int run_info(const InfoArgs& args) {
  QwenConfig config = QwenConfig::load(args.dir);
  int height = 0, width = 0;
  if (std::sscanf(args.frame_size.c_str(), "%dx%d", &height, &width) != 2) {
    throw InputError({"", 0, "--frame-size", args.frame_size}, "expected HEIGHTxWIDTH, e.g. 448x448");
  }
  MemoryEstimate estimate = estimate_memory(config, args.frames, height, width, args.text_tokens,
                                            at::elementSize(parse_dtype(args.dtype)));
  nlohmann::json report = info_json(config, parameter_counts(config), estimate);
  if (args.json) {
    std::cout << report.dump() << "\n";
  } else {
    std::cout << format_info(report);
  }
  return 0;
}

const RegisterCommand init_command(
    "model init", "Write a randomly initialised Qwen2.5-VL (tiny or small preset) as a checkpoint directory",
    [](CLI::App& app) {
      auto args = std::make_shared<InitArgs>();
      app.add_option("--preset", args->preset, "tiny | small")->capture_default_str();
      app.add_option("--out", args->out, "directory to write (config.json, model.safetensors, tokenizer)")
          ->required();
      app.add_option("--tokenizer", args->tokenizer,
                     "directory holding the Qwen tokenizer.json (default: $LVRL_TOKENIZER_DIR)");
      app.add_option("--dtype", args->dtype,
                     "stored dtype: float32 | bfloat16 | float16 (default: the preset's)");
      app.add_option("--seed", args->seed, "random seed of the weights")->capture_default_str();
      app.add_flag("--force", args->force, "replace a model already in --out");
      return [args] { return run_init(*args); };
    });

const RegisterCommand info_command(
    "model info", "Print a checkpoint's parameters per part and memory estimates for a video",
    [](CLI::App& app) {
      auto args = std::make_shared<InfoArgs>();
      app.add_option("DIR", args->dir, "checkpoint directory (or its config.json)")->required();
      app.add_option("--frames", args->frames, "video frames for the estimate")->capture_default_str();
      app.add_option("--frame-size", args->frame_size,
                     "frame size after resizing, HEIGHTxWIDTH (multiples of 28)")
          ->capture_default_str();
      app.add_option("--text-tokens", args->text_tokens, "prompt + answer tokens besides the video")
          ->capture_default_str();
      app.add_option("--dtype", args->dtype, "compute dtype of the estimate")->capture_default_str();
      app.add_flag("--json", args->json, "print one JSON object instead of the table");
      return [args] { return run_info(*args); };
    });

}  // namespace
}  // namespace lvrl::model
