#include "cache/weight_channel.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/clock.h"
#include "core/error.h"

namespace lvrl::cache {
namespace {
using Clock = std::chrono::steady_clock;
constexpr int64_t kKeepVersions = 64;
// XREAD BLOCK in slices, so a long wait survives a server restart without a socket timeout.
constexpr std::chrono::milliseconds kBlockSlice{5000};

}  // namespace

WeightChannel::WeightChannel(RedisEndpoint endpoint, std::string ns, RedisOptions redis_options)
    : key_("lvrl:" + ns + ":weights"), client_(std::move(endpoint), redis_options) {}

std::optional<WeightVersion> WeightChannel::parse_entry(const RedisReply& entry) {
  WeightVersion out;
  std::string id = entry[0].str();
  out.version = std::stoll(id.substr(0, id.find('-')));
  RedisReply fields = entry[1];
  if (fields.is_nil()) return std::nullopt;
  for (size_t i = 0; i + 1 < fields.size(); i += 2) {
    std::string name = fields[i].str();
    if (name == "location")
      out.location = fields[i + 1].str();
    else if (name == "checksum")
      out.checksum = fields[i + 1].str();
    else if (name == "published_unix_ms")
      out.published_unix_ms = std::stoll(fields[i + 1].str());
  }
  return out;
}

void WeightChannel::publish(WeightVersion weights) {
  if (weights.version < 0) {
    throw InputError({"", 0, "weight version", std::to_string(weights.version)}, "expected a version >= 0");
  }
  weights.published_unix_ms = now_unix_ms();
  RedisCommand xadd{"XADD", key_, "MAXLEN", "~"};
  xadd.add(kKeepVersions).add(fmt::format("{}-1", weights.version));
  xadd.add("location").add(weights.location).add("checksum").add(weights.checksum);
  xadd.add("published_unix_ms").add(weights.published_unix_ms);
  RedisReply reply = client_.run_unchecked(xadd, Retry::Idempotent);
  if (!reply.is_error()) return;
  std::optional<WeightVersion> newest = latest();
  if (newest && newest->version == weights.version && newest->location == weights.location &&
      newest->checksum == weights.checksum) {
    return;  // our own XADD, resent after a dropped connection
  }
  if (newest && newest->version >= weights.version) {
    throw InputError({"", 0, "weight version", std::to_string(weights.version)},
                     fmt::format("version {} is already published; versions must increase", newest->version));
  }
  ::lvrl::detail::fail_library("redis", "XADD weights", __func__, __FILE__, __LINE__, reply.str());
}

std::optional<WeightVersion> WeightChannel::latest() {
  RedisReply reply = client_.run(RedisCommand{"XREVRANGE", key_, "+", "-", "COUNT", "1"}, Retry::Idempotent);
  if (reply.size() == 0) return std::nullopt;
  return parse_entry(reply[0]);
}

std::optional<WeightVersion> WeightChannel::wait_for(int64_t version, std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    std::optional<WeightVersion> newest = latest();
    if (newest && newest->version >= version) return newest;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto block = std::max(std::chrono::milliseconds(1), std::min(left, kBlockSlice));
    // Anything after the newest we saw (or after the start: "0-0") wakes us; latest() then decides.
    std::string after = newest ? fmt::format("{}-1", newest->version) : "0-0";
    client_.run_blocking(RedisCommand{"XREAD", "COUNT", "1", "BLOCK"}
                             .add(static_cast<int64_t>(block.count()))
                             .add("STREAMS")
                             .add(key_)
                             .add(after),
                         block, Retry::Idempotent);
  }
}

}  // namespace lvrl::cache
