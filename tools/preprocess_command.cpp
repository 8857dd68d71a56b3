// `lvrl preprocess --config F [a.b.c=value ...]`: the dataset (data.*) → the embedding cache at
// redis.cache_url, with the vision tower of model.path (tools/preprocess.h).
//
// Output: a progress line on stderr while it runs (videos/s, ETA); on stdout the summary — counts,
// then one line per failed video with its reason — and one JSON line with the same figures.
// Exit status: 0 when every video was cached or skipped; 3 when the run finished but some videos
// failed (the summary names them); 2 for a bad config, dataset or checkpoint; 1 when the cache
// server failed.
#include <ATen/Parallel.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "cache/redis_config.h"
#include "core/command.h"
#include "core/error.h"
#include "core/log.h"
#include "tools/preprocess.h"

namespace lvrl::tools {
namespace {
constexpr int kSomeVideosFailed = 3;

struct PreprocessArgs {
  std::string config_path;
  std::vector<std::string> overrides;
};

int run_preprocess_command(const PreprocessArgs& args) {
  Config config = Config::load(args.config_path, args.overrides);
  log::apply_config_level(config.get<std::string>("log.level"));
  if (const char* world = std::getenv("WORLD_SIZE"); world != nullptr && std::atoi(world) > 1) {
    throw InputError({"", 0, "WORLD_SIZE", world},
                     "preprocess runs as one process: sharding frames over ranks needs sp/ process groups, "
                     "which do not exist yet");
  }
  // A private server would stop with this process and take the embeddings with it.
  std::optional<cache::RedisEndpoint> endpoint = cache::configured_endpoint(config, "redis.cache_url");
  if (!endpoint) {
    throw InputError({args.config_path, 0, "redis.cache_url", ""},
                     "preprocess stores embeddings for later jobs: point it at a running cache server "
                     "(redis://host:port or unix:///path.sock)");
  }
  PreprocessOptions options = preprocess_options_from(config);
  // LibTorch's own default here can be 1 thread (Debian's build); 0 means every core.
  const int64_t threads = config.get<int64_t>("preprocess.threads");
  at::set_num_threads(threads > 0 ? static_cast<int>(threads)
                                  : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  cache::EmbeddingCache cache(*endpoint, cache::cache_options_from(config),
                              cache::redis_options_from(config));
  VisionEncoder encoder = load_vision_encoder(config);
  PreprocessSummary summary = run_preprocess(options, encoder, cache);
  std::cout << summary.text() << summary.to_json().dump() << std::endl;
  return summary.complete() ? 0 : kSomeVideosFailed;
}

const RegisterCommand preprocess_command(
    "preprocess", "Encode a dataset's videos into the embedding cache (skips cached ones; resumable)",
    [](CLI::App& app) {
      auto args = std::make_shared<PreprocessArgs>();
      app.add_option("--config", args->config_path, "YAML config: data.*, model.*, preprocess.*, redis.*")
          ->check(CLI::ExistingFile);
      app.add_option("overrides", args->overrides, "a.b.c=value overrides, applied in order");
      app.footer(
          "Exit status: 0 when every video was cached or skipped; 3 when some videos failed (the summary "
          "names each with its reason); 2 for a bad config, dataset or checkpoint; 1 when the cache server "
          "failed. Rerunning after a kill skips what was cached.");
      return [args] { return run_preprocess_command(*args); };
    });
}  // namespace
}  // namespace lvrl::tools
