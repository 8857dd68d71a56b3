#include "rollout/reward_external.h"

#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "core/process.h"
#include "rollout/reward_text.h"

namespace lvrl::rollout {
namespace {
using Clock = std::chrono::steady_clock;

// A program that waits for a whole block of input before it answers a line never answers.
constexpr const char* kLineByLine =
    "the program must read its input line by line and flush each answer (mawk needs -W interactive)";
constexpr double kWarnAfterS = 10;

#define LVRL_POSIX_CHECK(statement) LVRL_CHECK_GEN("posix", statement, lvrl_rc >= 0, std::strerror(errno))

std::string json_line(const RewardInput& input) {
  const nlohmann::json object{{"response", input.response},
                              {"answer", input.answer},
                              {"options", input.options},
                              {"problem_type", input.problem_type}};
  return object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

// Waits up to `seconds` for `pid` to exit; its wait status, or nothing while it still runs.
std::optional<int> wait_exit(pid_t pid, double seconds) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  while (true) {
    int status = 0;
    const pid_t got = ::waitpid(pid, &status, WNOHANG);
    if (got == pid) return status;
    if (got < 0 && errno != EINTR) return 0;  // already reaped: nothing left to wait for
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return fmt::format("was killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return "stopped";
}
}  // namespace

ExternalReward::ExternalReward(std::string command, double timeout_s, std::string source)
    : command_(std::move(command)), timeout_s_(timeout_s), source_(std::move(source)) {
  LVRL_ASSERT(!command_.empty(), "an external reward needs a command");
  int ends[2];
  LVRL_POSIX_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends));
  SpawnOptions options;
  options.own_process_group = true;  // sh and whatever it starts go together
  options.stdin_fd = ends[1];
  options.stdout_fd = ends[1];
  const pid_t pid = spawn_process({"/bin/sh", "-c", command_}, options);
  ::close(ends[1]);
  if (pid < 0) {
    ::close(ends[0]);
    throw InputError({source_, 0, "reward.external", command_},
                     fmt::format("cannot start /bin/sh: {}", std::strerror(static_cast<int>(-pid))));
  }
  pid_ = pid;
  socket_ = ends[0];
}

ExternalReward::~ExternalReward() {
  stop(2.0);
}

void ExternalReward::stop(double grace_s) {
  if (socket_ >= 0) ::close(socket_);  // its stdin ends: a well-behaved program exits now
  socket_ = -1;
  if (pid_ > 0 && !wait_exit(pid_, grace_s)) {
    ::kill(-pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  pid_ = -1;
}

void ExternalReward::fail(const std::string& problem) {
  failure_ = problem;
  stop(0.2);  // it has already misbehaved: no long goodbye
  throw InputError({source_, 0, "reward.external", command_}, problem);
}

void ExternalReward::fail_ended(int64_t line) {
  const std::optional<int> status = pid_ > 0 ? wait_exit(pid_, 1.0) : std::nullopt;
  if (status) pid_ = -1;
  fail(
      fmt::format("{} before answering its input line {}; the program must answer every line with one number",
                  status ? describe_status(*status) : "closed its output", line));
}

double ExternalReward::parse_answer(const std::string& line_text, int64_t line) {
  const std::string_view trimmed = text::trim(line_text);
  const std::string number(trimmed);
  char* end = nullptr;
  const double value = number.empty() ? 0 : std::strtod(number.c_str(), &end);
  if (number.empty() || end != number.c_str() + number.size() || !std::isfinite(value)) {
    fail(fmt::format("answered '{}' to its input line {}; expected one finite number per line",
                     line_text.substr(0, 80), line));
  }
  return value;
}

double ExternalReward::score(const RewardInput& input) {
  return score_batch({input}).front();
}

std::vector<double> ExternalReward::score_batch(const std::vector<RewardInput>& inputs) {
  if (!failure_.empty()) throw InputError({source_, 0, "reward.external", command_}, failure_);
  std::string out;
  for (const RewardInput& input : inputs) out += json_line(input);
  const int64_t first_line = lines_sent_ + 1;
  lines_sent_ += static_cast<int64_t>(inputs.size());

  std::vector<double> scores;
  scores.reserve(inputs.size());
  size_t written = 0;
  auto last_progress = Clock::now();
  char buffer[1 << 16];
  // Writes and reads interleave: a program may answer before it has read everything, and a full
  // socket buffer on either side must not deadlock the two of us.
  bool warned = false;
  while (scores.size() < inputs.size()) {
    const double waited = std::chrono::duration<double>(Clock::now() - last_progress).count();
    if (waited >= timeout_s_) {
      fail(fmt::format("gave no answer within {} s (reward.external_timeout_s) to its input line {}; {}",
                       timeout_s_, first_line + static_cast<int64_t>(scores.size()), kLineByLine));
    }
    if (waited >= kWarnAfterS && !warned) {
      LVRL_WARN("reward.external '{}' has not answered its input line {} for {:.0f} s; {}", command_,
                first_line + static_cast<int64_t>(scores.size()), waited, kLineByLine);
      warned = true;
    }
    const double wait_s = std::min(timeout_s_, warned ? timeout_s_ : kWarnAfterS) - waited;
    pollfd watch{socket_, static_cast<short>(POLLIN | (written < out.size() ? POLLOUT : 0)), 0};
    const int ready = ::poll(&watch, 1, static_cast<int>(std::ceil(wait_s * 1000)));
    if (ready < 0 && errno == EINTR) continue;
    LVRL_POSIX_CHECK(ready);
    if (ready == 0) continue;
    const int64_t next_line = first_line + static_cast<int64_t>(scores.size());
    if (watch.revents & POLLOUT) {
      const ssize_t sent =
          ::send(socket_, out.data() + written, out.size() - written, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent > 0) {
        written += static_cast<size_t>(sent);
        last_progress = Clock::now();
      } else if (sent < 0 && (errno == EPIPE || errno == ECONNRESET)) {
        fail_ended(next_line);
      } else if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        LVRL_POSIX_CHECK(sent);
      }
    }
    if (watch.revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t got = ::recv(socket_, buffer, sizeof(buffer), MSG_DONTWAIT);
      if (got == 0 || (got < 0 && errno == ECONNRESET)) fail_ended(next_line);
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
      LVRL_POSIX_CHECK(got);
      pending_.append(buffer, static_cast<size_t>(got));
      last_progress = Clock::now();
      for (size_t newline = pending_.find('\n'); newline != std::string::npos;
           newline = pending_.find('\n')) {
        const std::string line = pending_.substr(0, newline);
        pending_.erase(0, newline + 1);
        const int64_t answered = first_line + static_cast<int64_t>(scores.size());
        if (scores.size() == inputs.size()) {
          fail(fmt::format("answered '{}' after its input line {}, more lines than it was sent",
                           line.substr(0, 80), answered - 1));
        }
        scores.push_back(parse_answer(line, answered));
      }
    }
  }
  if (!pending_.empty()) {
    fail(fmt::format("wrote '{}' after answering its input line {}, more than it was sent",
                     pending_.substr(0, 80), lines_sent_));
  }
  return scores;
}

}  // namespace lvrl::rollout
