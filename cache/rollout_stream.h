// The rollout queue: a Redis stream on the queue server (noeviction + AOF), read by the trainer
// through a consumer group. One entry is one rollout group (a prompt and its G answers,
// cache/rollout_record.h).
//
// Delivery is at-least-once, so every piece is built to tolerate repeats:
//  - The producer's XADD is not idempotent; after a dropped connection publish() sends it again,
//    which may store the group twice. The consumer de-duplicates by group id.
//  - A consumer acknowledges an entry only after the trainer has used it (ack()). ack() adds the
//    group id to the consumer group's done set and XACKs in one Lua script, so "done" and
//    "acknowledged" never disagree. read() acknowledges and skips entries whose group id is already
//    done, and repeats of one id within a batch.
//  - On restart a consumer (same name) first re-reads its own pending entries (XREADGROUP from 0),
//    and so after a reconnect (a lost XREADGROUP reply leaves entries pending for it), skipping
//    those it has handed out and not yet acknowledged.
//  - The janitor step (reclaim(), also run by read() every claim_idle/4) XAUTOCLAIMs entries that
//    other consumers left pending longer than `claim_idle` (they died, or hang): claim_idle must
//    exceed the longest time a trainer holds an entry before ack().
//  - Every delivery counts (Redis counts XREADGROUP, XAUTOCLAIM and re-reads of pending entries).
//    An entry delivered more than `max_deliveries` times, or one that does not decode, goes to the
//    dead-letter stream (<stream>:dead, with why, its origin id and delivery count) and is
//    acknowledged, so one poison entry cannot stall the trainer forever.
//
// Keys: lvrl:{ns}:{stream} (the stream), lvrl:{ns}:{stream}:dead, lvrl:{ns}:{stream}:done:{group}.
// Not thread-safe: one producer or consumer per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "cache/redis_client.h"
#include "cache/rollout_record.h"

namespace lvrl::cache {

struct RolloutStreamOptions {
  std::string ns = "default";
  std::string stream = "rollouts";
  std::string group = "trainer";
  std::chrono::milliseconds claim_idle{600000};  // pending this long: the consumer is presumed dead
  int max_deliveries = 5;                        // delivered more often: dead-lettered
};

struct RolloutDelivery {
  std::string entry_id;    // the stream entry ("1712345678901-0")
  int64_t deliveries = 1;  // how often Redis has delivered it, this time included
  RolloutGroup record;     // one prompt and its G answers
};

class RolloutProducer {
 public:
  RolloutProducer(RedisEndpoint endpoint, RolloutStreamOptions options = {}, RedisOptions redis_options = {});
  // XADD; returns the entry id. Sent again after a dropped connection (the consumer de-duplicates).
  // A group that fails check_rollout_group() is an InputError naming the field; nothing is sent.
  std::string publish(const RolloutGroup& group);

 private:
  RolloutStreamOptions options_;
  RedisClient client_;
};

class RolloutConsumer {
 public:
  // Creates the group (reading from the stream's beginning) if it does not exist yet.
  RolloutConsumer(RedisEndpoint endpoint, std::string name, RolloutStreamOptions options = {},
                  RedisOptions redis_options = {});

  // Up to `count` rollout groups: this consumer's own pending ones first (after a restart), then idle
  // ones claimed from others (at most every claim_idle/4), then new ones, waiting up to `block` for
  // those. Empty when nothing arrived in time. Duplicates and dead letters are handled, not returned.
  std::vector<RolloutDelivery> read(size_t count, std::chrono::milliseconds block);
  // The trainer has used it: mark its group id done and acknowledge the entry.
  void ack(const RolloutDelivery& delivery);
  // The janitor step: claims entries pending longer than claim_idle (from any consumer) for this
  // one; they come back from the next read(). Returns how many were claimed.
  size_t reclaim();

  const std::string& name() const { return name_; }

 private:
  struct Raw {
    std::string entry_id;
    bool deleted = false;  // the entry was XDELed/trimmed while pending
    StreamFields fields;
  };
  std::vector<RolloutDelivery> accept(std::vector<Raw> raw, bool counted_once);
  void dead_letter(const Raw& raw, int64_t deliveries, const std::string& why);
  void acknowledge(const std::string& entry_id);
  std::vector<Raw> parse_entries(const RedisReply& entries) const;

  RolloutStreamOptions options_;
  std::string name_;
  RedisClient client_;
  std::string stream_, dead_stream_, done_set_;
  bool own_pending_done_ = false;
  std::string pending_cursor_ = "0";
  std::vector<Raw> claimed_;  // entries reclaim() took over, returned by the next read()
  std::chrono::steady_clock::time_point next_claim_{};
  std::set<std::string> handed_out_;  // returned by read(), not yet ack()ed: never handed out twice
  uint64_t generation_ = 0;           // client_.generation() at the last read()
};

}  // namespace lvrl::cache
