// The Redis client against real private servers: binary-safe values, pipelines, credentials,
// timeouts, and reconnecting across a server restart.
#include "cache/redis_client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "cache/redis_pool.h"
#include "core/error.h"
#include "redis_test_support.h"

namespace lvrl::cache {
namespace {
using testing::quick_options;
using testing::TestServer;

TEST(RedisClient, BinarySafeValuesRoundTrip) {
  TestServer server;
  RedisClient client(server.endpoint(), quick_options());
  std::string value("a\0b\r\n$3\r\n%b%zu", 15);
  std::string key("k\0\r\n", 4);
  client.run(RedisCommand{"SET"}.add(key).add(value), Retry::Idempotent);
  EXPECT_EQ(client.run(RedisCommand{"GET"}.add(key), Retry::Idempotent).str(), value);
  // A large value goes out uncopied (redis_wire.h) and must arrive the same.
  std::string big(300000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 + 7);
  client.run(RedisCommand{"SET", "big"}.add_view(big.data(), big.size()), Retry::Idempotent);
  EXPECT_EQ(client.run(RedisCommand{"GET", "big"}, Retry::Idempotent).str(), big);
  EXPECT_EQ(client.run(RedisCommand{"STRLEN", "big"}, Retry::Idempotent).integer(), 300000);
}

TEST(RedisClient, ErrorRepliesThrowNamingTheCommand) {
  TestServer server;
  RedisClient client(server.endpoint(), quick_options());
  client.run(RedisCommand{"SET", "s", "text"}, Retry::Idempotent);
  try {
    client.run(RedisCommand{"INCR", "s"}, Retry::Idempotent);
    FAIL() << "INCR of a non-number must fail";
  } catch (const LibraryError& e) {
    EXPECT_EQ(e.library(), "redis");
    EXPECT_NE(std::string(e.what()).find("INCR s"), std::string::npos) << e.what();
    EXPECT_NE(e.detail().find("not an integer"), std::string::npos) << e.detail();
  }
  EXPECT_TRUE(client.run_unchecked(RedisCommand{"INCR", "s"}, Retry::Idempotent).is_error());
  EXPECT_EQ(client.run(RedisCommand{"PING"}, Retry::Idempotent).text(), "PONG");  // still in step
}

TEST(RedisClient, PipelineKeepsOrderUnderATightBound) {
  TestServer server;
  RedisOptions options = quick_options();
  options.pipeline_bytes = options.pipeline_reply_bytes = 64 << 10;  // a few values in flight at a time
  RedisClient client(server.endpoint(), options);
  std::vector<std::string> values;
  std::vector<RedisCommand> sets, gets;
  for (int i = 0; i < 200; ++i) values.push_back(std::string(10000 + i, static_cast<char>('a' + i % 26)));
  for (int i = 0; i < 200; ++i) {
    sets.push_back(RedisCommand{"SET"}.add("k" + std::to_string(i)).add(values[i]));
    gets.push_back(RedisCommand{"GET"}.add("k" + std::to_string(i)));
  }
  size_t next = 0;
  client.pipeline(sets, Retry::Idempotent, [&](size_t i, const RedisReply& reply) {
    EXPECT_EQ(i, next++);
    EXPECT_EQ(reply.text(), "OK");
  });
  next = 0;
  client.pipeline(
      gets, Retry::Idempotent,
      [&](size_t i, const RedisReply& reply) {
        EXPECT_EQ(i, next++);
        EXPECT_EQ(reply.str(), values[i]);
      },
      [&](size_t i) { return values[i].size(); });
  EXPECT_EQ(next, 200u);
}

TEST(RedisClient, OnSentRunsInOrderBeforeEachReplyAndAgainForResends) {
  TestServer server;
  RedisOptions options = quick_options();
  options.pipeline_bytes = 64 << 10;  // a few values in flight at a time
  RedisClient client(server.endpoint(), options);
  const std::string value(20000, 'v');
  std::vector<RedisCommand> sets;
  for (int i = 0; i < 40; ++i) sets.push_back(RedisCommand{"SET"}.add("k" + std::to_string(i)).add(value));
  std::vector<size_t> sent, answered;
  bool crashed = false;
  client.pipeline(
      sets, Retry::Idempotent,
      [&](size_t i, const RedisReply& reply) {
        EXPECT_EQ(reply.text(), "OK");
        EXPECT_NE(std::find(sent.begin(), sent.end(), i), sent.end()) << "reply " << i << " before its send";
        answered.push_back(i);
        if (i == 9 && !crashed) {  // commands 10.. are in flight or not sent yet: they go again
          crashed = true;
          server.crash_and_restart();
        }
      },
      {}, [&](size_t i) { sent.push_back(i); });
  ASSERT_EQ(answered.size(), 40u);
  // The first pass sends 0, 1, ... in order; after the reconnect the sends start over at 10.
  const auto restart = std::find(sent.begin() + 1, sent.end(), size_t{10});
  ASSERT_NE(restart, sent.end());
  const auto again = std::find(restart + 1, sent.end(), size_t{10});
  ASSERT_NE(again, sent.end()) << "nothing was resent";
  for (size_t k = 0; k < static_cast<size_t>(again - sent.begin()); ++k) EXPECT_EQ(sent[k], k);
  for (auto it = again; it != sent.end(); ++it) EXPECT_EQ(*it, 10 + static_cast<size_t>(it - again));
  EXPECT_EQ(sent.back(), 39u);
  EXPECT_EQ(client.generation(), 1u);
}

TEST(RedisClient, HandlerThatThrowsLeavesTheClientUsable) {
  TestServer server;
  RedisClient client(server.endpoint(), quick_options());
  std::vector<RedisCommand> pings(50, RedisCommand{"PING"});
  EXPECT_THROW(client.pipeline(pings, Retry::Idempotent,
                               [](size_t i, const RedisReply&) {
                                 if (i == 3) throw std::runtime_error("handler failed");
                               }),
               std::runtime_error);
  // The unread replies died with the connection; the next command gets its own reply.
  EXPECT_EQ(client.run(RedisCommand{"ECHO", "mine"}, Retry::Idempotent).str(), "mine");
}

TEST(RedisClient, WrongPasswordIsAClearInputError) {
  TestServer server;
  RedisEndpoint wrong = server.endpoint();
  wrong.password = "not-the-password";
  try {
    RedisClient client(wrong, quick_options());
    FAIL() << "a wrong password must be refused";
  } catch (const InputError& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("refused the password"), std::string::npos) << message;
    EXPECT_NE(message.find("WRONGPASS"), std::string::npos) << message;
    EXPECT_NE(message.find(server.endpoint().socket_path), std::string::npos) << message;
    EXPECT_EQ(message.find("not-the-password"), std::string::npos) << message;
  }
  RedisEndpoint none = server.endpoint();
  none.password.clear();
  try {
    RedisClient client(none, quick_options());
    FAIL() << "no password must be refused";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("requires a password"), std::string::npos) << e.what();
  }
}

TEST(RedisClient, UnreachableServerIsAConnectionError) {
  TempDir dir;
  RedisEndpoint missing = RedisEndpoint::parse("unix://" + dir.path() + "/nobody.sock");
  RedisOptions options = quick_options();
  options.first_connect_for = std::chrono::milliseconds(50);
  auto start = std::chrono::steady_clock::now();
  try {
    RedisClient client(missing, options);
    FAIL() << "connected to nothing";
  } catch (const RedisConnectionError& e) {
    EXPECT_NE(e.detail().find("cannot connect"), std::string::npos) << e.what();
    EXPECT_NE(e.detail().find("nobody.sock"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST(RedisClient, SilentServerTimesOut) {
  // Listens but never accepts or answers: connect succeeds, the login PING times out.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(::listen(fd, 8), 0);
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  RedisEndpoint endpoint;
  endpoint.port = ntohs(address.sin_port);
  RedisOptions options = quick_options();
  options.command_timeout = std::chrono::milliseconds(200);
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW({ RedisClient client(endpoint, options); }, RedisConnectionError);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  ::close(fd);
}

TEST(RedisClient, BlockingCommandOutlastsTheCommandTimeout) {
  TestServer server;
  RedisOptions options = quick_options();
  options.command_timeout = std::chrono::milliseconds(100);
  RedisClient client(server.endpoint(), options);
  auto start = std::chrono::steady_clock::now();
  RedisReply reply = client.run_blocking(RedisCommand{"BLPOP", "nothing", "0.4"},
                                         std::chrono::milliseconds(400), Retry::Idempotent);
  EXPECT_TRUE(reply.is_nil());
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(350));
  EXPECT_EQ(client.generation(), 0u);  // no timeout, no reconnect
}

TEST(RedisClient, ReconnectsAfterARestartAndResendsIdempotentCommands) {
  TestServer server;
  RedisEndpoint endpoint = server.endpoint();
  endpoint.db = 2;
  RedisClient client(endpoint, quick_options());
  client.run(RedisCommand{"SET", "before", "1"}, Retry::Idempotent);
  server.crash_and_restart();
  EXPECT_EQ(client.generation(), 0u);
  // The dead connection is found on use; the command is resent on a new, re-AUTHed connection
  // that SELECTed db 2 again.
  client.run(RedisCommand{"SET", "after", "2"}, Retry::Idempotent);
  EXPECT_EQ(client.generation(), 1u);
  RedisClient db0(server.endpoint(), quick_options());
  EXPECT_TRUE(db0.run(RedisCommand{"GET", "after"}, Retry::Idempotent).is_nil());
  db0.run(RedisCommand{"SELECT", "2"}, Retry::Idempotent);
  EXPECT_EQ(db0.run(RedisCommand{"GET", "after"}, Retry::Idempotent).str(), "2");
  EXPECT_TRUE(db0.run(RedisCommand{"GET", "before"}, Retry::Idempotent).is_nil());  // no persistence
}

TEST(RedisClient, NonIdempotentCommandOnADroppedConnectionIsReported) {
  TestServer server;
  RedisClient client(server.endpoint(), quick_options());
  server.crash_and_restart();
  try {
    client.run(RedisCommand{"INCR", "counter"}, Retry::Never);
    FAIL() << "INCR on a dropped connection must be reported";
  } catch (const RedisConnectionError& e) {
    EXPECT_NE(e.detail().find("may or may not have run"), std::string::npos) << e.what();
  }
  EXPECT_EQ(client.run(RedisCommand{"INCR", "counter"}, Retry::Never).integer(), 1);  // usable again
}

TEST(RedisClient, GivesUpWhenTheServerStaysDown) {
  TestServer server;
  RedisOptions options = quick_options();
  options.reconnect_for = std::chrono::milliseconds(300);
  RedisClient client(server.endpoint(), options);
  server.server().kill_now();
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(client.run(RedisCommand{"GET", "x"}, Retry::Idempotent), RedisConnectionError);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  server.server().start();
  EXPECT_TRUE(client.run(RedisCommand{"GET", "x"}, Retry::Idempotent).is_nil());
}

TEST(RedisClient, TcpOnAPortTheOsPicked) {
  TestServer server(RedisRole::Cache, "64mb", testing::free_tcp_port());
  RedisClient client(server.server().tcp_endpoint(), quick_options());
  EXPECT_EQ(client.run(RedisCommand{"PING"}, Retry::Idempotent).text(), "PONG");
  // The zero-copy paths over TCP: large values out, bulk replies straight into buffers.
  std::vector<std::string> values;
  std::vector<RedisCommand> sets, gets;
  for (int i = 0; i < 8; ++i) {
    values.push_back(std::string(size_t{1} << 20, static_cast<char>('0' + i)));
    values.back()[12345] = 'x';
    sets.push_back(
        RedisCommand{"SET"}.add("v" + std::to_string(i)).add_view(values[i].data(), values[i].size()));
    gets.push_back(RedisCommand{"GET"}.add("v" + std::to_string(i)));
  }
  gets.push_back(RedisCommand{"GET", "absent"});
  client.pipeline(sets, Retry::Idempotent,
                  [](size_t, const RedisReply& reply) { EXPECT_EQ(reply.text(), "OK"); });
  std::vector<std::string> back(9, std::string(size_t{1} << 20, '\0'));
  std::vector<RedisClient::BulkTarget> targets;
  for (std::string& buffer : back) targets.push_back({buffer.data(), buffer.size()});
  std::vector<wire::BulkReply::Kind> kinds;
  client.pipeline_get_into(gets, targets, Retry::Idempotent,
                           [&](size_t, const wire::BulkReply& reply) { kinds.push_back(reply.kind); });
  ASSERT_EQ(kinds.size(), 9u);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(kinds[i], wire::BulkReply::Kind::Filled);
    EXPECT_EQ(back[i], values[i]) << i;
  }
  EXPECT_EQ(kinds[8], wire::BulkReply::Kind::Nil);
  EXPECT_EQ(client.run(RedisCommand{"ECHO", "in step"}, Retry::Idempotent).str(), "in step");
}

TEST(RedisPool, ThreadsGetTheirOwnConnections) {
  TestServer server;
  RedisPool pool(server.endpoint(), quick_options());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        RedisPool::Lease client = pool.acquire();
        std::string key = "t" + std::to_string(t);
        client->run(RedisCommand{"INCR"}.add(key), Retry::Never);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  RedisPool::Lease client = pool.acquire();
  for (int t = 0; t < 4; ++t) {
    EXPECT_EQ(client->run(RedisCommand{"GET"}.add("t" + std::to_string(t)), Retry::Idempotent).str(), "100");
  }
}

}  // namespace
}  // namespace lvrl::cache
