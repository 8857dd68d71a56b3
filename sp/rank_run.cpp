#include "sp/rank_run.h"

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/temp_dir.h"
#include "sp/launch.h"

namespace lvrl::sp {
namespace {
constexpr const char* kRunDirVariable = "LVRL_RANK_RUN_DIR";

std::string self_executable() {
  char path[4096];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  LVRL_ASSERT(n > 0, "cannot read /proc/self/exe");
  return std::string(path, n);
}

std::string result_path(const std::string& dir, int rank) {
  return dir + "/rank" + std::to_string(rank) + ".txt";
}

}  // namespace

RankRunResult run_on_ranks(const RankRunOptions& options) {
  const TempDir dir("lvrl-ranks");
  LaunchOptions launch;
  launch.nproc = options.nproc;
  launch.command = {self_executable()};
  launch.command.insert(launch.command.end(), options.worker_args.begin(), options.worker_args.end());
  launch.env = options.env;
  launch.env[kRunDirVariable] = dir.path();
  if (!options.tcp_rendezvous) launch.env["LVRL_STORE_FILE"] = dir.path() + "/store";
  launch.threads_per_rank = options.threads_per_rank;
  launch.timeout_s = options.timeout_s;
  launch.grace_s = options.grace_s;
  launch.output_fd = options.output_fd;

  RankRunResult result;
  const auto start = std::chrono::steady_clock::now();
  result.exit_code = launch_local_ranks(launch);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.timed_out = options.timeout_s > 0 && result.exit_code != 0 && seconds >= options.timeout_s;
  for (int rank = 0; rank < options.nproc; ++rank) {
    std::ifstream in(result_path(dir.path(), rank), std::ios::binary);
    std::ostringstream text;
    if (in) text << in.rdbuf();
    result.results.push_back(text.str());
  }
  return result;
}

bool is_rank_of_run() {
  return std::getenv(kRunDirVariable) != nullptr && std::getenv("RANK") != nullptr;
}

void write_rank_result(const std::string& text) {
  LVRL_ASSERT(is_rank_of_run(), "write_rank_result outside a rank of run_on_ranks");
  const int rank = std::atoi(std::getenv("RANK"));
  std::ofstream out(result_path(std::getenv(kRunDirVariable), rank), std::ios::binary | std::ios::app);
  out << text;
  LVRL_ASSERT(out.good(), "cannot write this rank's result");
}

}  // namespace lvrl::sp
