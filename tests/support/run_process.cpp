#include "tests/support/run_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "core/process.h"
#include "tests/support/files.h"

extern char** environ;

namespace lvrl::test {
namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// This process's environment with `env` set over it.
std::vector<std::string> environment_with(const Environment& env) {
  std::vector<std::string> out;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text = *entry;
    if (env.count(text.substr(0, text.find('='))) == 0) out.push_back(text);
  }
  for (const auto& [name, value] : env) out.push_back(name + "=" + value);
  return out;
}

// A descriptor of `path` for the child, closed in this process when it goes.
class File {
 public:
  File(const std::string& path, int flags) : fd_(::open(path.c_str(), flags | O_CLOEXEC, 0600)) {
    if (fd_ < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  }
  ~File() { ::close(fd_); }
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

Process::Process(const std::vector<std::string>& argv, const ProcessOptions& options)
    : dir_("lvrl-process"), options_(options) {
  if (argv.empty()) throw std::invalid_argument("Process: empty argv");
  const std::vector<std::string> environment = environment_with(options.env);
  std::optional<File> input;
  if (options.input) {
    write_file(dir_.file("stdin"), *options.input);
    input.emplace(dir_.file("stdin"), O_RDONLY);
  }
  const File output(dir_.file("stdout"), O_WRONLY | O_CREAT | O_TRUNC);
  std::optional<File> errors;
  if (options.separate_stderr) errors.emplace(dir_.file("stderr"), O_WRONLY | O_CREAT | O_TRUNC);

  SpawnOptions spawn;
  spawn.environment = &environment;
  spawn.stdin_fd = input ? input->fd() : -1;
  spawn.stdout_fd = output.fd();
  spawn.stderr_fd = errors ? errors->fd() : output.fd();
  start_ns_ = now_ns();
  pid_ = spawn_process(argv, spawn);
  if (pid_ < 0) throw std::runtime_error("cannot run " + join_command(argv) + ": " + std::strerror(-pid_));
  running_ = true;
}

Process::~Process() {
  if (running_) {
    ::kill(pid_, SIGKILL);
    int status;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

ProcessResult Process::wait() {
  if (!running_) throw std::logic_error("Process::wait: already waited for");
  const int64_t deadline = start_ns_ + static_cast<int64_t>(options_.timeout_s * 1e9);
  ProcessResult result;
  int status = 0;
  int64_t kill_at = 0;
  while (true) {
    const pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) break;
    if (done < 0 && errno != EINTR) throw std::runtime_error(std::string("waitpid: ") + std::strerror(errno));
    const int64_t now = now_ns();
    if (!result.timed_out && now > deadline) {
      result.timed_out = true;
      ::kill(pid_, SIGTERM);
      kill_at = now + 3'000'000'000;
    } else if (kill_at != 0 && now > kill_at) {
      ::kill(pid_, SIGKILL);
      kill_at = 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  running_ = false;
  result.seconds = static_cast<double>(now_ns() - start_ns_) * 1e-9;
  if (result.timed_out) {
    result.exit_code = -1;
  } else if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exit_code = 128 + WTERMSIG(status);
  }
  result.output = read_file(dir_.file("stdout"));
  if (options_.separate_stderr) result.error_output = read_file(dir_.file("stderr"));
  if (result.timed_out) {
    (options_.separate_stderr ? result.error_output : result.output) +=
        "\n[stopped after the " + std::to_string(options_.timeout_s) + " s limit]";
  }
  return result;
}

ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& options) {
  return Process(argv, options).wait();
}

std::string lvrl_binary() {
  return LVRL_BINARY;
}

ProcessResult run_lvrl(const std::vector<std::string>& args, const ProcessOptions& options) {
  std::vector<std::string> argv = {lvrl_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, options);
}

std::string source_dir() {
  return LVRL_SOURCE_DIR;
}

std::string join_command(const std::vector<std::string>& argv) {
  std::string line;
  for (const std::string& arg : argv) {
    const bool quote = arg.find_first_of(" '\"();*,|") != std::string::npos || arg.empty();
    line += (line.empty() ? "" : " ") + (quote ? "'" + arg + "'" : arg);
  }
  return line;
}

}  // namespace lvrl::test
