// The rollout queue and the weight channel on a private queue server (noeviction + AOF): groups
// travel intact, a consumer that dies before XACK has its entries redelivered to another and each
// group is used exactly once after de-duplication (by group id), poison entries (a format-1 entry
// among them) are dead-lettered, and weight versions only go up and wake waiters.
#include "cache/rollout_stream.h"

#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "cache/weight_channel.h"
#include "core/error.h"
#include "redis_test_support.h"
#include "rollout_groups.h"

namespace lvrl::cache {
namespace {
using std::chrono::milliseconds;
using testing::quick_options;
using testing::TestServer;

RolloutGroup record(int i) {
  return testing::example_group(i);
}

class RolloutStreamTest : public ::testing::Test {
 protected:
  RolloutStreamOptions options() const {
    RolloutStreamOptions out;
    out.claim_idle = milliseconds(200);
    out.max_deliveries = 3;
    return out;
  }
  int64_t length(const std::string& suffix = "") {
    return raw_.run(RedisCommand{"XLEN", "lvrl:default:rollouts" + suffix}, Retry::Idempotent).integer();
  }
  TestServer server_{RedisRole::Queue, "0"};
  RedisClient raw_{server_.endpoint(), quick_options()};
};

TEST_F(RolloutStreamTest, PublishReadAck) {
  RolloutProducer producer(server_.endpoint(), options(), quick_options());
  RolloutConsumer consumer(server_.endpoint(), "trainer-0", options(), quick_options());
  for (int i = 0; i < 5; ++i) producer.publish(record(i));
  std::vector<RolloutDelivery> got = consumer.read(10, milliseconds(100));
  ASSERT_EQ(got.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(got[i].record, record(i));
    EXPECT_EQ(got[i].deliveries, 1);
    consumer.ack(got[i]);
  }
  EXPECT_TRUE(consumer.read(10, milliseconds(50)).empty());
  EXPECT_EQ(length(), 0);  // acknowledged entries are deleted
}

TEST_F(RolloutStreamTest, PublishRefusesAnInconsistentGroupAndSendsNothing) {
  RolloutProducer producer(server_.endpoint(), options(), quick_options());
  RolloutGroup group = record(0);
  group.samples[1].logprobs.push_back(-1);  // 2 log-probs for 1 token
  try {
    producer.publish(group);
    ADD_FAILURE() << "published an inconsistent group";
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), "s1.logprobs") << e.what();
  }
  EXPECT_EQ(length(), 0);
}

TEST_F(RolloutStreamTest, ConsumerKilledBeforeAckIsRedeliveredAndUsedExactlyOnce) {
  RolloutProducer producer(server_.endpoint(), options(), quick_options());
  for (int i = 0; i < 8; ++i) producer.publish(record(i));
  producer.publish(record(2));  // a resent XADD: the same group twice in the stream
  std::map<std::string, int> used;
  {
    // Consumer A takes three groups and dies before using them (its connection closes, its
    // entries stay pending in the group, as for a killed process).
    RolloutConsumer a(server_.endpoint(), "trainer-a", options(), quick_options());
    ASSERT_EQ(a.read(3, milliseconds(100)).size(), 3u);
  }
  RolloutConsumer b(server_.endpoint(), "trainer-b", options(), quick_options());
  std::map<std::string, int64_t> deliveries;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (used.size() < 8 && std::chrono::steady_clock::now() < deadline) {
    for (const RolloutDelivery& delivery : b.read(4, milliseconds(50))) {
      ++used[delivery.record.group_id];
      deliveries[delivery.record.group_id] = delivery.deliveries;
      EXPECT_EQ(delivery.record, record(std::stoi(delivery.record.group_id.substr(1))));
      b.ack(delivery);
    }
  }
  ASSERT_EQ(used.size(), 8u);
  for (const auto& [id, times] : used) EXPECT_EQ(times, 1) << id;
  // A's entries reach B after claim_idle; g2 may come first as its duplicate entry (then A's copy
  // is skipped as already used).
  EXPECT_EQ(deliveries["g0"], 2);
  EXPECT_EQ(deliveries["g1"], 2);
  EXPECT_EQ(deliveries["g3"], 1);
  EXPECT_TRUE(b.read(4, milliseconds(300)).empty());
  EXPECT_EQ(length(), 0);
  RedisReply pending =
      raw_.run(RedisCommand{"XPENDING", "lvrl:default:rollouts", "trainer"}, Retry::Idempotent);
  EXPECT_EQ(pending[0].integer(), 0);
}

TEST_F(RolloutStreamTest, RestartedConsumerReadsItsOwnPendingFirst) {
  RolloutProducer producer(server_.endpoint(), options(), quick_options());
  for (int i = 0; i < 2; ++i) producer.publish(record(i));
  {
    RolloutConsumer before(server_.endpoint(), "trainer-0", options(), quick_options());
    ASSERT_EQ(before.read(2, milliseconds(100)).size(), 2u);
  }
  producer.publish(record(2));
  RolloutConsumer after(server_.endpoint(), "trainer-0", options(), quick_options());
  std::vector<RolloutDelivery> first = after.read(10, milliseconds(100));
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].record.group_id, "g0");
  EXPECT_EQ(first[1].record.group_id, "g1");
  EXPECT_EQ(first[0].deliveries, 2);
  std::vector<RolloutDelivery> next = after.read(10, milliseconds(100));
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].record.group_id, "g2");
}

TEST_F(RolloutStreamTest, PoisonEntriesGoToTheDeadLetterStream) {
  RolloutProducer producer(server_.endpoint(), options(), quick_options());
  producer.publish(record(0));
  // A format-1 entry (one answer, no format field), as an older producer wrote it.
  raw_.run(RedisCommand{"XADD", "lvrl:default:rollouts", "*", "id", "r9", "prompt", "p0", "version", "1",
                        "tokens", "", "logprobs", "", "reward", "1", "embedding", ""},
           Retry::Never);
  for (int restart = 0; restart < 3; ++restart) {  // delivered 1, 2, 3 times, never acknowledged
    RolloutConsumer crashing(server_.endpoint(), "trainer-0", options(), quick_options());
    std::vector<RolloutDelivery> got = crashing.read(10, milliseconds(50));
    ASSERT_EQ(got.size(), 1u) << "restart " << restart;
    EXPECT_EQ(got[0].deliveries, restart + 1);
  }
  RolloutConsumer last(server_.endpoint(), "trainer-0", options(), quick_options());
  EXPECT_TRUE(last.read(10, milliseconds(50)).empty());  // 4th delivery > max_deliveries = 3
  ASSERT_EQ(length(":dead"), 2);
  RedisReply dead =
      raw_.run(RedisCommand{"XRANGE", "lvrl:default:rollouts:dead", "-", "+"}, Retry::Idempotent);
  std::string all;
  for (size_t i = 0; i < dead.size(); ++i) {
    for (size_t f = 0; f < dead[i][1].size(); ++f) all += dead[i][1][f].str() + " ";
  }
  EXPECT_NE(all.find("undecodable: 'format': missing: a format-1 rollout entry"), std::string::npos) << all;
  EXPECT_NE(all.find("delivered 4 times (the limit is 3)"), std::string::npos) << all;
  EXPECT_EQ(length(), 0);
}

TEST_F(RolloutStreamTest, QueueSurvivesAServerRestart) {
  RolloutProducer producer(server_.endpoint(), options(), quick_options());
  producer.publish(record(0));
  server_.server().stop();  // SIGTERM: AOF flushed
  server_.server().start();
  RolloutConsumer consumer(server_.endpoint(), "trainer-0", options(), quick_options());
  producer.publish(record(1));  // the producer reconnects by itself
  std::vector<RolloutDelivery> got = consumer.read(10, milliseconds(100));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].record, record(1));
}

TEST_F(RolloutStreamTest, WeightVersionsOnlyGoUpAndWakeWaiters) {
  WeightChannel trainer(server_.endpoint(), "default", quick_options());
  WeightChannel rollout(server_.endpoint(), "default", quick_options());
  EXPECT_FALSE(rollout.latest().has_value());
  trainer.publish({0, "/ckpt/v0", "aa", 0});
  trainer.publish({1, "/ckpt/v1", "bb", 0});
  trainer.publish({1, "/ckpt/v1", "bb", 0});  // a resend of the same announcement is fine
  EXPECT_THROW(trainer.publish({1, "/ckpt/other", "cc", 0}), InputError);
  EXPECT_THROW(trainer.publish({0, "/ckpt/v0", "aa", 0}), InputError);
  std::optional<WeightVersion> latest = rollout.latest();
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->version, 1);
  EXPECT_EQ(latest->location, "/ckpt/v1");
  EXPECT_EQ(latest->checksum, "bb");
  EXPECT_GT(latest->published_unix_ms, 0);

  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(rollout.wait_for(2, milliseconds(150)).has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(140));
  std::thread publisher([&] {
    std::this_thread::sleep_for(milliseconds(100));
    trainer.publish({3, "/ckpt/v3", "dd", 0});
  });
  start = std::chrono::steady_clock::now();
  std::optional<WeightVersion> woken = rollout.wait_for(2, milliseconds(5000));
  publisher.join();
  ASSERT_TRUE(woken.has_value());
  EXPECT_EQ(woken->version, 3);
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(2000));
}

}  // namespace
}  // namespace lvrl::cache
