#include "cache/redis_server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "cache/redis_client.h"
#include "core/log.h"
#include "core/process.h"

namespace lvrl::cache {
namespace {
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

std::string random_password() {
  std::random_device device;  // getrandom(2) on Linux
  std::string out;
  for (int i = 0; i < 4; ++i) out += fmt::format("{:08x}", device());
  return out;
}

// redis.conf string syntax: double quotes, backslash escapes.
std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

[[noreturn]] void fail_system(const char* statement, const std::string& detail) {
  ::lvrl::detail::fail_library("redis-server", statement, "RedisServer", __FILE__, __LINE__, detail);
}

bool reap(pid_t pid, bool wait) {  // true once the child is gone
  int status = 0;
  pid_t done = ::waitpid(pid, &status, wait ? 0 : WNOHANG);
  return done == pid || (done < 0 && errno == ECHILD);
}
}  // namespace

int64_t parse_memory_size(const std::string& text, const InputWhere& where) {
  InputWhere at = where;
  at.value = text;
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  std::string unit;
  for (char c : text.substr(digits)) unit += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const std::pair<const char*, int64_t> units[] = {
      {"", 1},        {"b", 1},        {"k", 1000},       {"kb", 1024},
      {"m", 1000000}, {"mb", 1 << 20}, {"g", 1000000000}, {"gb", int64_t{1} << 30}};
  for (const auto& [name, scale] : units) {
    if (digits == 0 || digits > 15 || unit != name) continue;
    return std::stoll(text.substr(0, digits)) * scale;
  }
  throw InputError(at, "expected a memory size such as 512mb, 4gb or 0 (no limit)");
}

RedisServer::RedisServer(RedisServerOptions options) : options_(std::move(options)) {
  if (options_.password.empty()) options_.password = random_password();
  parse_memory_size(options_.maxmemory, {"", 0, "maxmemory", ""});
  std::error_code error;
  fs::create_directories(options_.dir, error);
  if (error)
    throw InputError({options_.dir, 0, "", ""}, "cannot create the run directory: " + error.message());
  options_.dir = fs::absolute(options_.dir).lexically_normal().string();
  std::string socket = endpoint().socket_path;
  if (socket.size() >= sizeof(sockaddr_un::sun_path)) {
    throw InputError(
        {options_.dir, 0, "", ""},
        fmt::format("the socket path {} is {} bytes; unix sockets allow {}: use a shorter run directory",
                    socket, socket.size(), sizeof(sockaddr_un::sun_path) - 1));
  }
  start();
}

RedisServer::~RedisServer() {
  try {
    stop();
  } catch (const std::exception& e) {
    LVRL_WARN("redis-server {}: {}", options_.name, e.what());
  }
}

std::string RedisServer::config_path() const {
  return options_.dir + "/" + options_.name + ".conf";
}
std::string RedisServer::log_path() const {
  return options_.dir + "/" + options_.name + ".log";
}

RedisEndpoint RedisServer::endpoint() const {
  RedisEndpoint out;
  out.transport = RedisEndpoint::Transport::Unix;
  out.socket_path = options_.dir + "/" + options_.name + ".sock";
  out.password = options_.password;
  return out;
}

RedisEndpoint RedisServer::tcp_endpoint() const {
  LVRL_ASSERT(options_.tcp_port > 0, "tcp_endpoint() of a server started without a TCP port");
  RedisEndpoint out;
  out.host = options_.bind;
  out.port = options_.tcp_port;
  out.password = options_.password;
  return out;
}

void RedisServer::write_config() const {
  const bool cache = options_.role == RedisRole::Cache;
  std::string text = fmt::format(
      "# Written by lvrl for one run; regenerated at every start.\n"
      "daemonize no\n"
      "dir {}\n"
      "unixsocket {}\n"
      "unixsocketperm 700\n"
      "requirepass {}\n"
      "logfile {}\n"
      "loglevel notice\n"
      "port {}\n"
      "maxmemory {}\n"
      "maxmemory-policy {}\n"
      "save \"\"\n"
      "appendonly {}\n"
      "appendfsync everysec\n"
      "lazyfree-lazy-eviction yes\n"
      "lazyfree-lazy-user-del yes\n",
      quoted(options_.dir), quoted(endpoint().socket_path), options_.password, quoted(log_path()),
      options_.tcp_port, options_.maxmemory, cache ? "allkeys-lru" : "noeviction", cache ? "no" : "yes");
  if (options_.tcp_port > 0) text += fmt::format("bind {}\n", options_.bind);
  for (const auto& [key, value] : options_.extra_config) text += key + " " + value + "\n";

  const std::string path = config_path();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);  // it holds the password
  if (fd < 0)
    throw InputError({path, 0, "", ""}, std::string("cannot write the config: ") + std::strerror(errno));
  ::fchmod(fd, 0600);
  ssize_t written = ::write(fd, text.data(), text.size());
  ::close(fd);
  if (written != static_cast<ssize_t>(text.size())) {
    throw InputError({path, 0, "", ""}, std::string("cannot write the config: ") + std::strerror(errno));
  }
}

void RedisServer::spawn() {
  ::unlink(endpoint().socket_path.c_str());  // a stale socket from a killed server
  SpawnOptions spawn;
  spawn.quiet = true;  // the server logs to <name>.log
  const pid_t pid = spawn_process({options_.executable, config_path()}, spawn);
  if (pid < 0) {
    throw InputError({"", 0, "redis server executable", options_.executable},
                     std::string("cannot run it: ") + std::strerror(-pid) +
                         " (install redis-server, or set the path to it)");
  }
  pid_ = pid;
}

std::string RedisServer::log_tail() const {
  std::ifstream in(log_path());
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > 12) lines.pop_front();
  }
  std::string out;
  for (const std::string& line : lines) out += "\n  " + line;
  return out.empty() ? " (the log is empty)" : out;
}

void RedisServer::wait_ready() {
  RedisOptions probe;
  probe.connect_timeout = std::chrono::milliseconds(500);
  probe.command_timeout = std::chrono::milliseconds(2000);
  const Clock::time_point deadline = Clock::now() + options_.start_timeout;
  std::string last;
  for (;;) {
    if (reap(pid_, false)) {
      pid_ = -1;
      fail_system("redis-server", fmt::format("{} exited during startup; the end of {}:{}", options_.name,
                                              log_path(), log_tail()));
    }
    try {
      RedisClient client(endpoint(), probe);  // connects, AUTHs and PINGs
      return;
    } catch (const RedisConnectionError& e) {
      last = e.detail();
    }
    if (Clock::now() > deadline) {
      kill_now();
      fail_system("redis-server",
                  fmt::format("{} did not answer within {} ms ({}); the end of {}:{}", options_.name,
                              options_.start_timeout.count(), last, log_path(), log_tail()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void RedisServer::start() {
  if (running()) return;
  write_config();
  spawn();
  wait_ready();
  LVRL_DEBUG("redis-server {} (pid {}) ready on {}", options_.name, pid_, endpoint().describe());
}

void RedisServer::stop() {
  if (!running()) return;
  ::kill(pid_, SIGTERM);
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
  while (!reap(pid_, false)) {
    if (Clock::now() > deadline) {
      LVRL_WARN("redis-server {} (pid {}) ignored SIGTERM for 10 s; killing it", options_.name, pid_);
      ::kill(pid_, SIGKILL);
      reap(pid_, true);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  pid_ = -1;
}

void RedisServer::kill_now() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  reap(pid_, true);
  pid_ = -1;
}

}  // namespace lvrl::cache
