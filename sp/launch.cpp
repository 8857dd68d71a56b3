#include "sp/launch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "core/process.h"

extern char** environ;

namespace lvrl::sp {
namespace {
using Clock = std::chrono::steady_clock;

[[noreturn]] void fail_system(const char* statement, const std::string& detail) {
  ::lvrl::detail::fail_library("posix", statement, "launch_local_ranks", __FILE__, __LINE__, detail);
}

// The signal handlers only write the signal number into this pipe; the launch loop reads it.
int g_signal_pipe_write = -1;
std::atomic<bool> g_launch_running{false};

void on_signal(int signo) {
  int saved = errno;
  unsigned char byte = static_cast<unsigned char>(signo);
  ssize_t ignored = ::write(g_signal_pipe_write, &byte, 1);
  (void)ignored;
  errno = saved;
}

constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP};

// Installs the handlers for the launch's lifetime and restores the previous ones after.
class SignalScope {
 public:
  SignalScope() {
    if (::pipe2(pipe_, O_CLOEXEC | O_NONBLOCK) != 0) fail_system("pipe2", std::strerror(errno));
    g_signal_pipe_write = pipe_[1];
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    for (int signo : kForwarded) ::sigaction(signo, &action, &previous_[signo]);
    action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    ::sigaction(SIGCHLD, &action, &previous_[SIGCHLD]);
  }
  ~SignalScope() {
    for (int signo : kForwarded) ::sigaction(signo, &previous_[signo], nullptr);
    ::sigaction(SIGCHLD, &previous_[SIGCHLD], nullptr);
    g_signal_pipe_write = -1;
    ::close(pipe_[0]);
    ::close(pipe_[1]);
  }
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;
  int read_fd() const { return pipe_[0]; }

 private:
  int pipe_[2] = {-1, -1};
  struct sigaction previous_[NSIG] {};
};

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

std::string variable_name(const char* entry) {
  const char* equals = std::strchr(entry, '=');
  return equals == nullptr ? std::string(entry) : std::string(entry, equals - entry);
}

// The caller's environment without the variables we set, then ours.
std::vector<std::string> rank_environment(const LaunchOptions& options, int rank, int port, int threads) {
  std::map<std::string, std::string> ours = {
      {"RANK", std::to_string(rank)},
      {"LOCAL_RANK", std::to_string(rank)},
      {"WORLD_SIZE", std::to_string(options.nproc)},
      {"LOCAL_WORLD_SIZE", std::to_string(options.nproc)},
      {"MASTER_ADDR", "127.0.0.1"},
      {"MASTER_PORT", std::to_string(port)},
      {"OMP_NUM_THREADS", std::to_string(threads)},
  };
  for (const auto& [key, value] : options.env) ours[key] = value;
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string name = variable_name(*entry);
    if (ours.count(name) == 0 && name != "LVRL_STORE_FILE") env.emplace_back(*entry);
  }
  for (const auto& [key, value] : ours) env.push_back(key + "=" + value);
  return env;
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

struct Rank {
  pid_t pid = -1;
  bool running = false;
};

void signal_running(const std::vector<Rank>& ranks, int signo) {
  for (const Rank& rank : ranks) {
    if (rank.running) ::kill(-rank.pid, signo);  // the rank's process group
  }
}

}  // namespace

int pick_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_system("socket", std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    int error = errno;
    ::close(fd);
    fail_system("bind", std::strerror(error));
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

int launch_local_ranks(const LaunchOptions& options) {
  if (options.nproc < 1) {
    throw InputError({"", 0, "--nproc", std::to_string(options.nproc)}, "expected at least 1 rank");
  }
  if (options.command.empty() || options.command.front().empty()) {
    throw InputError({"", 0, "command", ""}, "no command to launch (give it after --)");
  }
  if (options.timeout_s < 0) {
    throw InputError({"", 0, "timeout_s", std::to_string(options.timeout_s)}, "expected a non-negative time");
  }
  if (options.grace_s < 0) {
    throw InputError({"", 0, "--grace-s", std::to_string(options.grace_s)}, "expected a non-negative time");
  }
  LVRL_ASSERT(!g_launch_running.exchange(true), "launch_local_ranks is not re-entrant");
  struct Running {
    ~Running() { g_launch_running = false; }
  } running_flag;

  const int threads =
      options.threads_per_rank > 0 ? options.threads_per_rank : std::max(1, usable_cores() / options.nproc);
  const int port = pick_free_port();
  LVRL_DEBUG("launching {} ranks of '{}': MASTER_ADDR=127.0.0.1 MASTER_PORT={} OMP_NUM_THREADS={}",
             options.nproc, options.command.front(), port, threads);

  SignalScope signals;
  std::vector<Rank> ranks(options.nproc);
  for (int r = 0; r < options.nproc; ++r) {
    const std::vector<std::string> env = rank_environment(options, r, port, threads);
    SpawnOptions spawn;
    spawn.own_process_group = true;  // a signal to the group reaches what the rank starts too
    spawn.environment = &env;
    spawn.stdout_fd = options.output_fd;
    spawn.stderr_fd = options.output_fd;
    const pid_t pid = spawn_process(options.command, spawn);
    if (pid < 0) {
      signal_running(ranks, SIGKILL);
      for (Rank& rank : ranks) {
        int status;
        if (rank.running) ::waitpid(rank.pid, &status, 0);
      }
      throw InputError({"", 0, "command", options.command.front()},
                       std::string("cannot run it: ") + std::strerror(-pid));
    }
    ranks[r] = {pid, true};
  }

  std::optional<int> failed_rank;
  int failed_code = 0, interrupted_by = 0;
  std::optional<Clock::time_point> kill_at;  // SIGKILL whatever still runs then
  bool killed = false;
  auto grace = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.grace_s));
  std::optional<Clock::time_point> deadline;
  if (options.timeout_s > 0) {
    deadline = Clock::now() +
               std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.timeout_s));
  }
  bool timed_out = false;
  int left = options.nproc;
  while (left > 0) {
    int timeout_ms = 100;
    if (kill_at && !killed) {
      auto until = std::chrono::duration_cast<std::chrono::milliseconds>(*kill_at - Clock::now()).count();
      timeout_ms = static_cast<int>(std::clamp<int64_t>(until, 0, timeout_ms));
    }
    pollfd wake{signals.read_fd(), POLLIN, 0};
    ::poll(&wake, 1, timeout_ms);
    unsigned char byte;
    while (::read(signals.read_fd(), &byte, 1) == 1) {
      int signo = byte;
      if (signo == SIGCHLD) continue;
      if (interrupted_by == 0) {
        interrupted_by = signo;
        LVRL_WARN("lvrl sp launch: got {}; forwarding it to the ranks", strsignal(signo));
        signal_running(ranks, signo);
        if (!kill_at) kill_at = Clock::now() + grace;
      } else {
        LVRL_WARN("lvrl sp launch: got {} again; killing the ranks", strsignal(signo));
        signal_running(ranks, SIGKILL);
        killed = true;
      }
    }
    for (int r = 0; r < options.nproc; ++r) {
      if (!ranks[r].running) continue;
      int status = 0;
      pid_t done = ::waitpid(ranks[r].pid, &status, WNOHANG);
      if (done == 0 || (done < 0 && errno == EINTR)) continue;
      ranks[r].running = false;
      --left;
      int code = done < 0 ? 1 : exit_code(status);
      if (code != 0 && !failed_rank) {
        failed_rank = r;
        failed_code = code;
        if (WIFSIGNALED(status)) {
          LVRL_ERROR("lvrl sp launch: rank {} was killed by {}", r, strsignal(WTERMSIG(status)));
        } else {
          LVRL_ERROR("lvrl sp launch: rank {} exited with code {}", r, code);
        }
        if (left > 0 && interrupted_by == 0) {
          LVRL_ERROR("lvrl sp launch: stopping the other {} rank(s)", left);
          signal_running(ranks, SIGTERM);
          if (!kill_at) kill_at = Clock::now() + grace;
        }
      }
    }
    if (deadline && !timed_out && Clock::now() >= *deadline && left > 0) {
      timed_out = true;
      LVRL_ERROR("lvrl sp launch: {} rank(s) still running after the {} s limit; stopping them", left,
                 options.timeout_s);
      signal_running(ranks, SIGTERM);
      if (!kill_at) kill_at = Clock::now() + grace;
    }
    if (kill_at && !killed && Clock::now() >= *kill_at && left > 0) {
      LVRL_ERROR("lvrl sp launch: {} rank(s) still running after {} s; killing them", left, options.grace_s);
      signal_running(ranks, SIGKILL);
      killed = true;
    }
  }
  if (failed_rank) return failed_code;
  if (interrupted_by != 0) return 128 + interrupted_by;
  if (timed_out) return 128 + SIGTERM;
  return 0;
}

}  // namespace lvrl::sp
