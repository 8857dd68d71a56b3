// The hiredis check reports the library's own error text for a real failing connection.
#include "cache/redis_check.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {
// A loopback port the OS picked and nobody listens on (bound, never listen()ed).
int closed_port(int* holder) {
  *holder = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(*holder, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(*holder, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

TEST(RedisCheck, ReportsConnectionRefusedWithStatement) {
  int holder = -1;
  int port = closed_port(&holder);
  redisContext* context = redisConnect("127.0.0.1", port);
  ASSERT_NE(context, nullptr);
  void* reply = nullptr;
  try {
    LVRL_REDIS_CHECK(context, redisGetReply(context, &reply));
    FAIL() << "a refused connection must throw";
  } catch (const lvrl::LibraryError& e) {
    std::string message = e.what();
    EXPECT_EQ(e.library(), "hiredis");
    EXPECT_NE(message.find("redisGetReply(context, &reply)"), std::string::npos) << message;
    EXPECT_NE(message.find("Connection refused"), std::string::npos) << message;
  }
  redisFree(context);
  close(holder);
}
}  // namespace
