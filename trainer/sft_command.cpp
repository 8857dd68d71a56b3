// `lvrl sft --config F [k=v ...] [--nproc N]`: supervised fine-tuning (trainer/sft.h). Ranks come
// from RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT (torchrun's convention), laid out as
// DP × SP with sp.size (sp.ulysses × sp.ring); --nproc N starts N local ranks of this command itself.
// Exit status: 0 when the run finished or stopped on SIGTERM/SIGINT after saving; 3 when a
// non-finite loss stopped it (the last good checkpoint stays the newest).
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <thread>

#include "core/command.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "sp/mesh.h"
#include "sp/rank_run.h"
#include "trainer/sft.h"
#include "trainer/training_run.h"

namespace lvrl::trainer {
namespace {

constexpr int kNonFiniteLossExit = 3;

struct SftArgs {
  std::string config_path;
  std::vector<std::string> overrides;
  int nproc = 1;
};

sp::MeshShape mesh_shape_from(const Config& config, int world_size) {
  sp::MeshShape shape;
  shape.sp = static_cast<int>(config.get<int64_t>("sp.size"));
  shape.ulysses = static_cast<int>(config.get<int64_t>("sp.ulysses"));
  shape.ring = static_cast<int>(config.get<int64_t>("sp.ring"));
  if (shape.sp < 1 || world_size % shape.sp != 0) {
    throw InputError({config.source_of("sp.size"), 0, "sp.size", std::to_string(shape.sp)},
                     fmt::format("the {} ranks must split into data-parallel groups of sp.size ranks", world_size));
  }
  return shape;
}

int run_sft_command(const SftArgs& args) {
  if (args.nproc < 1) throw InputError({"", 0, "--nproc", std::to_string(args.nproc)}, "expected 1 or more ranks");
  if (args.nproc > 1 && std::getenv("WORLD_SIZE") == nullptr) {  // the launcher
    sp::RankRunOptions options;
    options.nproc = args.nproc;
    options.worker_args = {"sft"};
    if (!args.config_path.empty()) options.worker_args.insert(options.worker_args.end(), {"--config", args.config_path});
    options.worker_args.insert(options.worker_args.end(), args.overrides.begin(), args.overrides.end());
    options.threads_per_rank = 0;
    return sp::run_on_ranks(options).exit_code;
  }
  const Config config = Config::load(args.config_path, args.overrides);
  log::apply_config_level(config.get<std::string>("log.level"));
  const sp::DistributedEnv env = sp::DistributedEnv::from_environment();
  if (env.world_size == 1) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    if (std::getenv("OMP_NUM_THREADS") == nullptr) at::set_num_threads(cores);
  }
  std::shared_ptr<sp::Mesh> mesh = sp::Mesh::create(env, mesh_shape_from(config, env.world_size), c10::kCPU);
  try {
    const SftSummary summary = run_sft(config, mesh);
    if (mesh->rank() == 0) {
      std::cout << fmt::format("sft: step {} ({} this run), last loss {:.6f}{}\n", summary.final_step,
                               summary.steps, summary.last_loss, summary.stopped ? ", stopped by a signal" : "");
    }
  } catch (const NonFiniteLoss& error) {
    LVRL_ERROR("{}", error.what());
    return kNonFiniteLossExit;
  }
  return 0;
}

const RegisterCommand sft_command(
    "sft", "Supervised fine-tuning on reasoning + answer rows (checkpoints, resume, metrics in run.dir)",
    [](CLI::App& app) {
      auto args = std::make_shared<SftArgs>();
      app.add_option("--config", args->config_path, "run config (YAML)");
      app.add_option("--nproc", args->nproc, "local ranks to start (DP × SP with sp.size)")->capture_default_str();
      app.add_option("overrides", args->overrides, "config overrides, key=value");
      return [args] { return run_sft_command(*args); };
    });

}  // namespace
}  // namespace lvrl::trainer
