// `lvrl sp launch --nproc P -- CMD ARGS...`: P local ranks of CMD with torchrun's environment (sp/launch.h).
#include <CLI/CLI.hpp>
#include <memory>

#include "core/command.h"
#include "sp/launch.h"

namespace lvrl::sp {
namespace {
const RegisterCommand launch_command(
    "sp launch",
    "Run P local ranks of a command (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/MASTER_PORT set); "
    "exits with the first failing rank's code",
    [](CLI::App& app) {
      auto options = std::make_shared<LaunchOptions>();
      app.add_option("--nproc", options->nproc, "number of ranks")->required()->check(CLI::PositiveNumber);
      app.add_option("--threads", options->threads_per_rank,
                     "OMP_NUM_THREADS per rank (default: max(1, cores / nproc))")
          ->check(CLI::NonNegativeNumber);
      app.add_option("--grace-s", options->grace_s,
                     "seconds between SIGTERM and SIGKILL when stopping the ranks")
          ->check(CLI::NonNegativeNumber)
          ->capture_default_str();
      app.add_option("command", options->command, "the command and its arguments, after --")->required();
      app.footer("Example: lvrl sp launch --nproc 2 -- sh -c 'echo rank $RANK of $WORLD_SIZE'");
      return [options] { return launch_local_ranks(*options); };
    });
}  // namespace
}  // namespace lvrl::sp
