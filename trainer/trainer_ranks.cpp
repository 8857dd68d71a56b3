#include "trainer/trainer_ranks.h"

#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "core/error.h"
#include "sp/rank_run.h"

namespace lvrl::trainer {

std::optional<int> run_as_local_ranks(int nproc, std::vector<std::string> args) {
  if (nproc < 1) throw InputError({"", 0, "--nproc", std::to_string(nproc)}, "expected 1 or more ranks");
  if (nproc == 1 || std::getenv("WORLD_SIZE") != nullptr) return std::nullopt;
  sp::RankRunOptions options;
  options.nproc = nproc;
  options.worker_args = std::move(args);
  options.worker_args.insert(options.worker_args.end(), {"--nproc", std::to_string(nproc)});
  options.threads_per_rank = 0;
  return sp::run_on_ranks(options).exit_code;
}

std::shared_ptr<sp::Mesh> trainer_mesh(const Config& config) {
  const sp::DistributedEnv env = sp::DistributedEnv::from_environment();
  sp::MeshShape shape;
  shape.sp = static_cast<int>(config.get<int64_t>("sp.size"));
  shape.ulysses = static_cast<int>(config.get<int64_t>("sp.ulysses"));
  shape.ring = static_cast<int>(config.get<int64_t>("sp.ring"));
  if (shape.sp < 1 || env.world_size % shape.sp != 0) {
    throw InputError(
        {config.source_of("sp.size"), 0, "sp.size", std::to_string(shape.sp)},
        fmt::format("the {} ranks must split into data-parallel groups of sp.size ranks", env.world_size));
  }
  if (env.world_size == 1 && std::getenv("OMP_NUM_THREADS") == nullptr) {
    at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  }
  return sp::Mesh::create(env, shape, c10::kCPU);
}

}  // namespace lvrl::trainer
