// `lvrl preprocess --config F [a.b.c=value ...]`: the dataset (data.*) → the embedding cache at
// redis.cache_url, with the vision tower of model.path (pipeline/preprocess.h).
//
// Several ranks: `lvrl sp launch --nproc P -- lvrl preprocess --config F ...` (or torchrun: RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK, LOCAL_WORLD_SIZE) splits each video's temporal
// slices over the P ranks (pipeline/sharded_encoder.h). Rank 0 decodes, checks and writes the cache
// and alone prints progress and the summary; the others need the checkpoint but no cache server
// or video files. The keys and embeddings are a single-rank run's. model.device `cuda` means
// cuda:LOCAL_RANK on each rank; preprocess.threads=0 shares the machine's cores among its ranks.
// The exit status (lvrl sp launch passes on the first non-zero one) is rank 0's.
//
// Output: a progress line on stderr while it runs (videos/s, ETA); on stdout the summary — counts,
// then one line per failed video with its reason — and one JSON line with the same figures.
// Exit status: 0 when every video was cached or skipped; 3 when the run finished but some videos
// failed (the summary names them); 2 for a bad config, dataset or checkpoint; 1 when the cache
// server failed.
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "cache/redis_config.h"
#include "core/command.h"
#include "core/error.h"
#include "core/log.h"
#include "pipeline/preprocess.h"
#include "pipeline/sharded_encoder.h"
#include "sp/mesh.h"

namespace lvrl::pipeline {
namespace {
constexpr int kSomeVideosFailed = 3;

struct PreprocessArgs {
  std::string config_path;
  std::vector<std::string> overrides;
};

// LOCAL_RANK / LOCAL_WORLD_SIZE as lvrl sp launch and torchrun set them; `fallback` when unset.
int local_variable(const char* name, int fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  if (*end != '\0' || parsed < 0 || parsed > 1 << 20) {
    throw InputError({"", 0, name, value},
                     fmt::format("environment variable {} must be a rank count or index", name));
  }
  return static_cast<int>(parsed);
}

void print_summary(const PreprocessSummary& summary) {
  std::cout << summary.text() << summary.to_json().dump() << std::endl;
}

int run_preprocess_command(const PreprocessArgs& args) {
  Config config = Config::load(args.config_path, args.overrides);
  log::apply_config_level(config.get<std::string>("log.level"));
  // The config's own checks come before any rank meets another: a bad config stops every rank
  // alike. What can fail on one rank alone (cache connection, checkpoint) is agreed on after.
  // A private server would stop with this process and take the embeddings with it.
  std::optional<cache::RedisEndpoint> endpoint = cache::configured_endpoint(config, "redis.cache_url");
  if (!endpoint) {
    throw InputError({args.config_path, 0, "redis.cache_url", ""},
                     "preprocess stores embeddings for later jobs: point it at a running cache server "
                     "(redis://host:port or unix:///path.sock)");
  }
  PreprocessOptions options = preprocess_options_from(config);
  const sp::DistributedEnv env = sp::DistributedEnv::from_environment();
  const int local_ranks = env.world_size > 1 ? std::max(1, local_variable("LOCAL_WORLD_SIZE", 1)) : 1;
  // LibTorch's own default here can be 1 thread (Debian's build); 0 means every core, shared out
  // among the ranks on this machine.
  const int64_t threads = config.get<int64_t>("preprocess.threads");
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads > 0 ? static_cast<int>(threads) : std::max(1, cores / local_ranks));

  if (env.world_size == 1) {
    cache::EmbeddingCache cache(*endpoint, cache::cache_options_from(config),
                                cache::redis_options_from(config));
    VisionEncoder encoder = load_vision_encoder(config);
    PreprocessSummary summary = run_preprocess(options, encoder, cache);
    print_summary(summary);
    return summary.complete() ? 0 : kSomeVideosFailed;
  }

  // Several ranks: rank 0 decodes, checks the cache, writes and reports; every rank encodes
  // (pipeline/sharded_encoder.h). The collectives carry CPU tensors, so the mesh is Gloo's.
  const int local_rank = local_variable("LOCAL_RANK", env.rank);
  std::shared_ptr<sp::Mesh> mesh = sp::Mesh::create(env, {env.world_size, 0, 0}, c10::Device(c10::kCPU));
  std::optional<cache::EmbeddingCache> cache;
  std::optional<VisionEncoder> encoder;
  std::exception_ptr failure;
  try {
    if (mesh->rank() == 0) {
      cache.emplace(*endpoint, cache::cache_options_from(config), cache::redis_options_from(config));
    }
    encoder.emplace(load_vision_encoder(config, local_rank));
  } catch (...) {
    failure = std::current_exception();
  }
  agree_on_setup(*mesh, encoder ? encoder->fingerprint() : "", failure);
  if (mesh->rank() != 0) {
    const int64_t served = serve_sharded_encoder(*encoder, *mesh);
    LVRL_DEBUG("preprocess: encoded slices of {} videos for rank 0", served);
    return 0;  // rank 0's exit status speaks for the run
  }
  PreprocessSummary summary = run_preprocess(options, *encoder, *cache, mesh.get());
  print_summary(summary);
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
          "failed. Rerunning after a kill skips what was cached.\n\n"
          "Several ranks: lvrl sp launch --nproc P -- lvrl preprocess --config F ... (or torchrun) encodes "
          "each video's frames split over the P ranks. Rank 0 decodes, checks the cache, writes and prints "
          "the progress and summary; every rank loads model.path. The cache keys and embeddings are those of "
          "a single-rank run, so either kind of run resumes the other's. model.device=cuda puts each rank "
          "on cuda:LOCAL_RANK; preprocess.threads=0 shares the cores among a machine's ranks. The exit "
          "status is rank 0's.");
      return [args] { return run_preprocess_command(*args); };
    });
}  // namespace
}  // namespace lvrl::pipeline
