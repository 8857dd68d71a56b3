// Policy weight versions, announced by the trainer and awaited by rollout processes.
//
// The trainer writes the weights somewhere both sides reach (a file on a shared filesystem by
// default) and publishes (version, location, checksum) here. The channel is a stream on the queue
// server whose entry ids are "<version>-1": Redis itself refuses an id not above the last, so
// versions only go up, and XREAD BLOCK wakes waiting rollout processes without polling. The last
// 64 versions are kept; the queue server's AOF keeps them across a restart.
//
// Key: lvrl:{ns}:weights. Not thread-safe: one channel per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "cache/redis_client.h"

namespace lvrl::cache {

struct WeightVersion {
  int64_t version = 0;            // >= 0, increasing
  std::string location;           // where the weights are: a path, or a transport's address
  std::string checksum;           // of the weights, as the trainer computed it (e.g. xxh3 hex)
  int64_t published_unix_ms = 0;  // set by publish()

  bool operator==(const WeightVersion& other) const {
    return version == other.version && location == other.location && checksum == other.checksum;
  }
};

class WeightChannel {
 public:
  WeightChannel(RedisEndpoint endpoint, std::string ns = "default", RedisOptions redis_options = {});

  // Announces `weights`. A version not above the latest published one is an InputError naming both
  // (publishing the same version again after a dropped connection is recognised and accepted).
  void publish(WeightVersion weights);
  // The newest published version, if any (the poll).
  std::optional<WeightVersion> latest();
  // Waits until a version >= `version` is published and returns the newest; nullopt after
  // `timeout`.
  std::optional<WeightVersion> wait_for(int64_t version, std::chrono::milliseconds timeout);

 private:
  static std::optional<WeightVersion> parse_entry(const RedisReply& entry);
  std::string key_;
  RedisClient client_;
};

}  // namespace lvrl::cache
