// URL parsing: every form users write, percent-decoding, and errors that never show the password.
#include "cache/redis_url.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace lvrl::cache {
namespace {

TEST(RedisUrl, TcpForms) {
  RedisEndpoint e = RedisEndpoint::parse("redis://cache.local");
  EXPECT_EQ(e.transport, RedisEndpoint::Transport::Tcp);
  EXPECT_EQ(e.host, "cache.local");
  EXPECT_EQ(e.port, 6379);
  EXPECT_EQ(e.db, 0);
  EXPECT_TRUE(e.password.empty());

  e = RedisEndpoint::parse("redis://:s3cr%40t@10.0.0.5:7000/3");
  EXPECT_EQ(e.host, "10.0.0.5");
  EXPECT_EQ(e.port, 7000);
  EXPECT_EQ(e.db, 3);
  EXPECT_EQ(e.password, "s3cr@t");
  EXPECT_TRUE(e.user.empty());
  EXPECT_EQ(RedisEndpoint::parse(e.url()).password, "s3cr@t");
  EXPECT_EQ(e.describe(), "redis://:***@10.0.0.5:7000/3");

  e = RedisEndpoint::parse("redis://alice:pw@[::1]:6380");
  EXPECT_EQ(e.user, "alice");
  EXPECT_EQ(e.password, "pw");
  EXPECT_EQ(e.host, "::1");
  EXPECT_EQ(e.port, 6380);
  EXPECT_EQ(RedisEndpoint::parse(e.url()).host, "::1");
}

TEST(RedisUrl, UnixSocketWithQuery) {
  RedisEndpoint e = RedisEndpoint::parse("unix:///run/lvrl/cache.sock?password=a%26b&db=2");
  EXPECT_EQ(e.transport, RedisEndpoint::Transport::Unix);
  EXPECT_EQ(e.socket_path, "/run/lvrl/cache.sock");
  EXPECT_EQ(e.password, "a&b");
  EXPECT_EQ(e.db, 2);
  RedisEndpoint again = RedisEndpoint::parse(e.url());
  EXPECT_EQ(again.password, "a&b");
  EXPECT_EQ(again.socket_path, e.socket_path);
  EXPECT_EQ(e.describe(), "unix:///run/lvrl/cache.sock?password=***&db=2");
}

TEST(RedisUrl, ErrorsNameTheUrlWithoutThePassword) {
  for (const char* url :
       {"http://host", "redis://:hunter2@host:99999", "redis://:hunter2@host/x",
        "unix://relative.sock?password=hunter2", "unix:///a.sock?password=hunter2&colour=red",
        "redis://:hunter2%4@host", "redis://"}) {
    try {
      RedisEndpoint::parse(url);
      FAIL() << "accepted " << url;
    } catch (const InputError& e) {
      std::string message = e.what();
      EXPECT_EQ(message.find("hunter2"), std::string::npos) << message;
      EXPECT_NE(message.find("expected redis://"), std::string::npos) << message;
      EXPECT_EQ(e.key(), "redis url");
    }
  }
}

}  // namespace
}  // namespace lvrl::cache
