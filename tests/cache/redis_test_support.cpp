#include "redis_test_support.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

namespace lvrl::cache::testing {

RedisOptions quick_options() {
  RedisOptions options;
  options.connect_timeout = std::chrono::milliseconds(1000);
  options.command_timeout = std::chrono::milliseconds(10000);
  options.reconnect_for = std::chrono::milliseconds(5000);
  options.backoff_first = std::chrono::milliseconds(2);
  options.backoff_max = std::chrono::milliseconds(50);
  return options;
}

int free_tcp_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0)
    throw std::runtime_error("bind");
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

TestServer::TestServer(RedisRole role, const std::string& maxmemory, int tcp_port) {
  RedisServerOptions options;
  options.role = role;
  options.dir = dir_.path();
  options.name = role == RedisRole::Cache ? "cache" : "queue";
  options.maxmemory = maxmemory;
  options.tcp_port = tcp_port;
  server_ = std::make_unique<RedisServer>(options);
}

void TestServer::crash_and_restart() {
  server_->kill_now();
  server_->start();
}

}  // namespace lvrl::cache::testing
