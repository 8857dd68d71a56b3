#include "tests/support/multi_rank.h"

#include <ATen/Parallel.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "core/temp_dir.h"
#include "sp/rank_run.h"
#include "tests/support/files.h"

namespace lvrl::test {
namespace {
// Where a rank marks that it reached its worker body: a directory of the test's, not the run's,
// so the marks outlive the run.
constexpr const char* kMarkDirVariable = "LVRL_TEST_RANK_MARKS";

std::string mark_path(const std::string& dir, const std::string& rank) {
  return dir + "/rank" + rank + ".ran";
}
}  // namespace

RankRun run_ranks(int nproc, const std::string& worker_test, const std::map<std::string, std::string>& env,
                  const RankRunSettings& settings) {
  const TempDir dir("lvrl-test-ranks");
  sp::RankRunOptions options;
  options.nproc = nproc;
  options.worker_args = {"--gtest_filter=" + worker_test, "--gtest_color=no", "--gtest_brief=1"};
  options.env = env;
  options.env[kMarkDirVariable] = dir.path();
  options.tcp_rendezvous = settings.tcp_rendezvous;
  options.timeout_s = settings.timeout_s;
  options.grace_s = 3;
  const std::string output_path = dir.file("output.txt");
  const int output_fd = ::open(output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (output_fd < 0) throw std::runtime_error("cannot open " + output_path + ": " + std::strerror(errno));
  options.output_fd = output_fd;
  sp::RankRunResult ran;
  try {
    ran = sp::run_on_ranks(options);
  } catch (...) {
    ::close(output_fd);
    throw;
  }
  ::close(output_fd);

  RankRun run;
  run.exit_code = ran.exit_code;
  run.timed_out = ran.timed_out;
  run.results = ran.results;
  run.output = read_file(output_path);
  if (run.timed_out)
    run.output += "\n(run_ranks: stopped after " + std::to_string(settings.timeout_s) + " s)";
  for (int r = 0; r < nproc; ++r)
    run.ran.push_back(std::filesystem::exists(mark_path(dir.path(), std::to_string(r))));
  return run;
}

::testing::AssertionResult ranks_succeeded(const RankRun& run) {
  std::string missing;
  for (size_t r = 0; r < run.ran.size(); ++r) {
    if (!run.ran[r]) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
  }
  if (run.exit_code == 0 && missing.empty()) return ::testing::AssertionSuccess();
  auto failure = ::testing::AssertionFailure() << "the ranks exited with " << run.exit_code;
  if (!missing.empty()) failure << "; ranks that never reached the worker body: " << missing;
  return failure << "\n--- output ---\n" << run.output;
}

bool is_worker() {
  return sp::is_rank_of_run() && std::getenv(kMarkDirVariable) != nullptr;
}

void enter_worker() {
  at::set_num_threads(1);
  const char* dir = std::getenv(kMarkDirVariable);
  const char* rank = std::getenv("RANK");
  if (dir == nullptr || rank == nullptr) throw std::runtime_error("not a rank of run_ranks");
  write_file(mark_path(dir, rank), "1");
}

std::string rank_label() {
  const char* rank = std::getenv("RANK");
  const char* world = std::getenv("WORLD_SIZE");
  return std::string("rank ") + (rank ? rank : "?") + " of " + (world ? world : "?");
}

void write_result(const std::string& text) {
  sp::write_rank_result(text);
}

std::string worker_env(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) {
    ADD_FAILURE() << "the rank has no " << name << " in its environment";
    return "";
  }
  return value;
}

int worker_env_int(const std::string& name) {
  const std::string text = worker_env(name);
  try {
    size_t used = 0;
    const int value = std::stoi(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  ADD_FAILURE() << name << "='" << text << "' is not an integer";
  return 0;
}

}  // namespace lvrl::test
