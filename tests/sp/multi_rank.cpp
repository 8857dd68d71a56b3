#include "multi_rank.h"

#include <ATen/Parallel.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace lvrl::testing_sp {
namespace {
constexpr const char* kWorkerVariable = "LVRL_SP_WORKER";
constexpr const char* kResultDirVariable = "LVRL_SP_RESULT_DIR";

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string make_temp_dir(const std::string& prefix) {
  std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "_XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
  return pattern;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string self_executable() {
  std::error_code error;
  auto path = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) throw std::runtime_error("cannot read /proc/self/exe: " + error.message());
  return path.string();
}

std::string rank_file(const std::string& suffix) {
  const char* dir = std::getenv(kResultDirVariable);
  const char* rank = std::getenv("RANK");
  if (dir == nullptr || rank == nullptr) throw std::runtime_error("not a rank of run_ranks");
  return std::string(dir) + "/rank" + rank + suffix;
}
}  // namespace

Process::Process(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) {
  if (argv.empty()) throw std::invalid_argument("Process: empty argv");
  dir_ = make_temp_dir("lvrl_sp_process");
  output_path_ = dir_ + "/output.txt";

  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string text = *entry;
    std::string name = text.substr(0, text.find('='));
    if (env.count(name) == 0) environment.push_back(text);
  }
  for (const auto& [key, value] : env) environment.push_back(key + "=" + value);
  std::vector<std::string> arguments = argv;
  std::vector<char*> argv_pointers, env_pointers;
  for (std::string& a : arguments) argv_pointers.push_back(a.data());
  argv_pointers.push_back(nullptr);
  for (std::string& e : environment) env_pointers.push_back(e.data());
  env_pointers.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, output_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  start_ns_ = now_ns();
  int rc = posix_spawnp(&pid_, argv_pointers[0], &actions, nullptr, argv_pointers.data(), env_pointers.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("posix_spawnp " + argv[0] + " failed: " + std::strerror(rc));
  running_ = true;
}

Process::~Process() {
  if (running_) {
    ::kill(pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

int Process::wait(double timeout_s) {
  if (!running_) throw std::logic_error("Process::wait: already waited for");
  const int64_t deadline = start_ns_ + static_cast<int64_t>(timeout_s * 1e9);
  int status = 0;
  bool timed_out = false;
  int64_t kill_at = 0;
  while (true) {
    pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) break;
    if (done < 0 && errno != EINTR) throw std::runtime_error("waitpid failed");
    int64_t now = now_ns();
    if (!timed_out && now > deadline) {
      timed_out = true;
      ::kill(pid_, SIGTERM);
      kill_at = now + 3'000'000'000;
    } else if (timed_out && kill_at != 0 && now > kill_at) {
      ::kill(pid_, SIGKILL);
      kill_at = 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  running_ = false;
  seconds_ = static_cast<double>(now_ns() - start_ns_) * 1e-9;
  if (timed_out) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::string Process::output() const { return read_file(output_path_); }

Invocation run_lvrl(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                    double timeout_s) {
  std::vector<std::string> argv = {LVRL_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  Process process(argv, env);
  Invocation out;
  out.exit_code = process.wait(timeout_s);
  out.seconds = process.seconds();
  out.output = process.output();
  return out;
}

RankRun run_ranks(int nproc, const std::string& worker_test, const std::map<std::string, std::string>& env,
                  double timeout_s) {
  const std::string dir = make_temp_dir("lvrl_sp_ranks");
  std::map<std::string, std::string> rank_env = env;
  rank_env[kWorkerVariable] = "1";
  rank_env[kResultDirVariable] = dir;
  RankRun run;
  {
    Process launcher({LVRL_BINARY, "sp", "launch", "--nproc", std::to_string(nproc), "--grace-s", "3", "--",
                      self_executable(), "--gtest_filter=" + worker_test, "--gtest_color=no", "--gtest_brief=1"},
                     rank_env);
    run.exit_code = launcher.wait(timeout_s);
    run.output = launcher.output();
    if (run.exit_code == -1) run.output += "\n(run_ranks: timed out after " + std::to_string(timeout_s) + " s)";
  }
  for (int r = 0; r < nproc; ++r) {
    std::string base = dir + "/rank" + std::to_string(r);
    run.results.push_back(read_file(base + ".txt"));
    run.ran.push_back(std::filesystem::exists(base + ".ran"));
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return run;
}

::testing::AssertionResult ranks_succeeded(const RankRun& run) {
  std::string missing;
  for (size_t r = 0; r < run.ran.size(); ++r) {
    if (!run.ran[r]) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
  }
  if (run.exit_code == 0 && missing.empty()) return ::testing::AssertionSuccess();
  auto failure = ::testing::AssertionFailure() << "lvrl sp launch exited with " << run.exit_code;
  if (!missing.empty()) failure << "; ranks that never reached the worker body: " << missing;
  return failure << "\n--- output ---\n" << run.output;
}

bool is_worker() {
  const char* value = std::getenv(kWorkerVariable);
  return value != nullptr && std::string(value) == "1";
}

void enter_worker() {
  at::set_num_threads(1);
  std::ofstream(rank_file(".ran")) << "1";
}

std::string rank_label() {
  const char* rank = std::getenv("RANK");
  const char* world = std::getenv("WORLD_SIZE");
  return std::string("rank ") + (rank ? rank : "?") + " of " + (world ? world : "?");
}

void write_result(const std::string& text) { std::ofstream(rank_file(".txt"), std::ios::app) << text; }

std::string worker_env(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) {
    ADD_FAILURE() << "the rank has no " << name << " in its environment";
    return "";
  }
  return value;
}

int worker_env_int(const std::string& name) {
  std::string text = worker_env(name);
  try {
    size_t used = 0;
    int value = std::stoi(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  ADD_FAILURE() << name << "='" << text << "' is not an integer";
  return 0;
}

}  // namespace lvrl::testing_sp
