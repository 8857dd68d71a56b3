// Private redis-server processes: the two roles' configs, unix socket only, password required,
// clean stop, crash and restart, AOF durability of the queue server, clear startup errors.
#include "cache/redis_server.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>

#include "cache/redis_client.h"
#include "core/error.h"
#include "redis_test_support.h"

namespace lvrl::cache {
namespace {
using testing::quick_options;
using testing::TestServer;

std::string config_value(RedisClient& client, const char* name) {
  return client.run(RedisCommand{"CONFIG", "GET", name}, Retry::Idempotent)[1].str();
}

TEST(RedisServer, CacheRoleEvictsAndPersistsNothing) {
  TestServer server(RedisRole::Cache, "64mb");
  RedisClient client(server.endpoint(), quick_options());
  EXPECT_EQ(config_value(client, "maxmemory-policy"), "allkeys-lru");
  EXPECT_EQ(config_value(client, "maxmemory"), std::to_string(64 << 20));
  EXPECT_EQ(config_value(client, "appendonly"), "no");
  EXPECT_EQ(config_value(client, "save"), "");
  EXPECT_EQ(config_value(client, "port"), "0");  // no TCP listener
  struct stat info {};
  ASSERT_EQ(::stat(server.endpoint().socket_path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(server.server().config_path().c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);  // it holds the password
  EXPECT_EQ(server.endpoint().password.size(), 32u);
}

TEST(RedisServer, QueueRoleNeverEvictsAndKeepsAnAofAcrossRestarts) {
  TestServer server(RedisRole::Queue, "0");
  {
    RedisClient client(server.endpoint(), quick_options());
    EXPECT_EQ(config_value(client, "maxmemory-policy"), "noeviction");
    EXPECT_EQ(config_value(client, "appendonly"), "yes");
    EXPECT_EQ(config_value(client, "appendfsync"), "everysec");
    client.run(RedisCommand{"XADD", "stream", "*", "f", "v"}, Retry::Never);
  }
  server.server().stop();  // SIGTERM: the AOF is flushed
  EXPECT_FALSE(server.server().running());
  server.server().start();
  RedisClient client(server.endpoint(), quick_options());
  EXPECT_EQ(client.run(RedisCommand{"XLEN", "stream"}, Retry::Idempotent).integer(), 1);
}

TEST(RedisServer, StopAndCrashLeaveNoProcess) {
  TestServer server;
  pid_t pid = server.server().pid();
  ASSERT_GT(pid, 0);
  server.server().stop();
  EXPECT_NE(::kill(pid, 0), 0);  // reaped: no such process
  server.server().start();
  pid = server.server().pid();
  server.server().kill_now();
  EXPECT_NE(::kill(pid, 0), 0);
  server.server().start();
  RedisClient client(server.endpoint(), quick_options());
  EXPECT_EQ(client.run(RedisCommand{"PING"}, Retry::Idempotent).text(), "PONG");
}

TEST(RedisServer, MissingExecutableIsAClearError) {
  TempDir dir;
  RedisServerOptions options;
  options.dir = dir.path();
  options.executable = "/nonexistent/redis-server";
  try {
    RedisServer server(options);
    FAIL() << "started a missing executable";
  } catch (const InputError& e) {
    EXPECT_EQ(e.value(), "/nonexistent/redis-server");
    EXPECT_NE(e.problem().find("No such file"), std::string::npos) << e.what();
  }
}

TEST(RedisServer, BadConfigReportsTheLog) {
  TempDir dir;
  RedisServerOptions options;
  options.dir = dir.path();
  options.extra_config = {{"no-such-directive", "1"}};
  try {
    RedisServer server(options);
    FAIL() << "started with a bad config";
  } catch (const LibraryError& e) {
    EXPECT_NE(e.detail().find("exited during startup"), std::string::npos) << e.what();
  }
}

TEST(RedisServer, TooLongSocketPathAndBadMemorySizeAreInputErrors) {
  TempDir dir;
  RedisServerOptions options;
  options.dir = dir.path() + "/" + std::string(120, 'd');
  EXPECT_THROW(RedisServer server(options), InputError);
  options.dir = dir.path();
  options.maxmemory = "lots";
  EXPECT_THROW(RedisServer server(options), InputError);
  EXPECT_EQ(parse_memory_size("4gb", {}), int64_t{4} << 30);
  EXPECT_EQ(parse_memory_size("512MB", {}), int64_t{512} << 20);
  EXPECT_EQ(parse_memory_size("1k", {}), 1000);
  EXPECT_EQ(parse_memory_size("0", {}), 0);
}

}  // namespace
}  // namespace lvrl::cache
