// `lvrl sft --config F [k=v ...] [--nproc N]`: supervised fine-tuning (trainer/sft.h). Ranks come
// from RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT (torchrun's convention), laid out as
// DP × SP with sp.size (sp.ulysses × sp.ring); --nproc N starts N local ranks of this command itself.
// Exit status: 0 when the run finished or stopped on SIGTERM/SIGINT after saving; 3 when a
// non-finite loss stopped it (the last good checkpoint stays the newest).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>

#include "core/command.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "sp/mesh.h"
#include "trainer/sft.h"
#include "trainer/trainer_ranks.h"
#include "trainer/training_run.h"

namespace lvrl::trainer {
namespace {

struct SftArgs {
  std::string config_path;
  std::vector<std::string> overrides;
  int nproc = 1;
};

int run_sft_command(const SftArgs& args) {
  std::vector<std::string> rank_args = {"sft"};
  if (!args.config_path.empty()) rank_args.insert(rank_args.end(), {"--config", args.config_path});
  rank_args.insert(rank_args.end(), args.overrides.begin(), args.overrides.end());
  if (std::optional<int> launched = run_as_local_ranks(args.nproc, rank_args)) return *launched;
  const Config config = Config::load(args.config_path, args.overrides);
  log::apply_config_level(config.get<std::string>("log.level"));
  std::shared_ptr<sp::Mesh> mesh = trainer_mesh(config);
  try {
    const SftSummary summary = run_sft(config, mesh);
    if (mesh->rank() == 0) {
      std::cout << fmt::format("sft: step {} ({} this run), last loss {:.6f}{}\n", summary.final_step,
                               summary.steps, summary.last_loss,
                               summary.stopped ? ", stopped by a signal" : "");
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
      app.add_option("--nproc", args->nproc, "local ranks to start (DP × SP with sp.size)")
          ->capture_default_str();
      app.add_option("overrides", args->overrides, "config overrides, key=value");
      return [args] { return run_sft_command(*args); };
    });

}  // namespace
}  // namespace lvrl::trainer
