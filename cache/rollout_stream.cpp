#include "cache/rollout_stream.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "core/error.h"
#include "core/log.h"

namespace lvrl::cache {
namespace {
using Clock = std::chrono::steady_clock;

// Done and acknowledged together; the entry is deleted too, so the stream holds only what is
// still to be used (pending entries survive XDEL's neighbours, never trimming).
constexpr const char* kAckScript =
    "redis.call('SADD', KEYS[2], ARGV[2]) "
    "redis.call('XACK', KEYS[1], ARGV[3], ARGV[1]) "
    "redis.call('XDEL', KEYS[1], ARGV[1]) "
    "return 1";
constexpr size_t kClaimBatch = 100;
constexpr size_t kClaimLimit = 1000;  // per reclaim(): the rest wait for the next one

std::string stream_key(const RolloutStreamOptions& options) {
  return "lvrl:" + options.ns + ":" + options.stream;
}
}  // namespace

RolloutProducer::RolloutProducer(RedisEndpoint endpoint, RolloutStreamOptions options,
                                 RedisOptions redis_options)
    : options_(std::move(options)), client_(std::move(endpoint), redis_options) {}

std::string RolloutProducer::publish(const RolloutGroup& group) {
  RedisCommand xadd{"XADD", stream_key(options_), "*"};
  for (const auto& [name, value] : encode_rollout(group)) xadd.add(name).add(value);
  // Not idempotent (a resend may store it twice), but at-least-once is the contract: consumers
  // de-duplicate by group id.
  return client_.run(xadd, Retry::Idempotent).str();
}

RolloutConsumer::RolloutConsumer(RedisEndpoint endpoint, std::string name, RolloutStreamOptions options,
                                 RedisOptions redis_options)
    : options_(std::move(options)),
      name_(std::move(name)),
      client_(std::move(endpoint), redis_options),
      stream_(stream_key(options_)),
      dead_stream_(stream_ + ":dead"),
      done_set_(stream_ + ":done:" + options_.group) {
  LVRL_ASSERT(!name_.empty(), "a consumer needs a name: it finds its pending entries by it after a restart");
  RedisReply created = client_.run_unchecked(
      RedisCommand{"XGROUP", "CREATE", stream_, options_.group, "0", "MKSTREAM"}, Retry::Idempotent);
  if (created.is_error() && created.text().rfind("BUSYGROUP", 0) != 0) {
    ::lvrl::detail::fail_library("redis", "XGROUP CREATE", __func__, __FILE__, __LINE__, created.str());
  }
}

std::vector<RolloutConsumer::Raw> RolloutConsumer::parse_entries(const RedisReply& entries) const {
  std::vector<Raw> out;
  if (entries.is_nil()) return out;
  for (size_t i = 0; i < entries.size(); ++i) {
    RedisReply entry = entries[i];
    Raw raw;
    raw.entry_id = entry[0].str();
    RedisReply fields = entry[1];
    if (fields.is_nil()) {
      raw.deleted = true;
    } else {
      for (size_t f = 0; f + 1 < fields.size(); f += 2)
        raw.fields.emplace_back(fields[f].str(), fields[f + 1].str());
    }
    out.push_back(std::move(raw));
  }
  return out;
}

void RolloutConsumer::acknowledge(const std::string& entry_id) {
  client_.run(RedisCommand{"XACK", stream_, options_.group, entry_id}, Retry::Idempotent);
  client_.run(RedisCommand{"XDEL", stream_, entry_id}, Retry::Idempotent);
}

void RolloutConsumer::dead_letter(const Raw& raw, int64_t deliveries, const std::string& why) {
  LVRL_WARN("rollout stream: entry {} goes to {}: {}", raw.entry_id, dead_stream_, why);
  RedisCommand xadd{"XADD", dead_stream_, "*"};
  for (const auto& [name, value] : raw.fields) xadd.add(name).add(value);
  xadd.add("dead.origin").add(raw.entry_id).add("dead.deliveries").add(deliveries);
  xadd.add("dead.reason").add(why).add("dead.consumer").add(name_);
  client_.run(xadd, Retry::Idempotent);  // a repeat after a dropped connection only duplicates a dead letter
  acknowledge(raw.entry_id);
}

std::vector<RolloutDelivery> RolloutConsumer::accept(std::vector<Raw> raw, bool counted_once) {
  // Delivery counts: 1 for new entries; Redis' own count for re-read and claimed ones.
  std::vector<int64_t> deliveries(raw.size(), 1);
  if (!counted_once && !raw.empty()) {
    std::vector<RedisCommand> commands;
    for (const Raw& entry : raw) {
      commands.push_back(
          RedisCommand{"XPENDING", stream_, options_.group, entry.entry_id, entry.entry_id, "1"});
    }
    client_.pipeline(commands, Retry::Idempotent, [&](size_t i, const RedisReply& reply) {
      if (!reply.is_error() && reply.size() == 1) deliveries[i] = reply[0][3].integer();
    });
  }
  std::vector<RolloutDelivery> decoded;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (handed_out_.count(raw[i].entry_id) != 0) continue;  // the trainer holds it: not a repeat to hand out
    if (raw[i].deleted) {  // gone from the stream while pending: nothing to use
      acknowledge(raw[i].entry_id);
      continue;
    }
    RolloutDelivery delivery;
    delivery.entry_id = raw[i].entry_id;
    delivery.deliveries = deliveries[i];
    try {
      delivery.record = decode_rollout(raw[i].fields);
    } catch (const InputError& e) {  // the entry's fault; anything else (no memory, a bug) goes up
      dead_letter(raw[i], deliveries[i], std::string("undecodable: ") + e.what());
      continue;
    }
    if (deliveries[i] > options_.max_deliveries) {
      dead_letter(
          raw[i], deliveries[i],
          fmt::format("delivered {} times (the limit is {})", deliveries[i], options_.max_deliveries));
      continue;
    }
    decoded.push_back(std::move(delivery));
  }
  if (decoded.empty()) return decoded;

  RedisCommand ismember{"SMISMEMBER", done_set_};
  for (const RolloutDelivery& delivery : decoded) ismember.add(delivery.record.group_id);
  RedisReply done = client_.run(ismember, Retry::Idempotent);
  std::vector<RolloutDelivery> out;
  std::set<std::string> batch;
  for (size_t i = 0; i < decoded.size(); ++i) {
    const std::string& id = decoded[i].record.group_id;
    if (done[i].integer() == 1 || !batch.insert(id).second) {
      LVRL_DEBUG("rollout stream: {} (entry {}) was already used; skipping it", id, decoded[i].entry_id);
      acknowledge(decoded[i].entry_id);
      continue;
    }
    handed_out_.insert(decoded[i].entry_id);
    out.push_back(std::move(decoded[i]));
  }
  return out;
}

size_t RolloutConsumer::reclaim() {
  size_t claimed = 0;
  std::string cursor = "0-0";
  do {
    RedisReply reply = client_.run(RedisCommand{"XAUTOCLAIM", stream_, options_.group, name_}
                                       .add(static_cast<int64_t>(options_.claim_idle.count()))
                                       .add(cursor)
                                       .add("COUNT")
                                       .add(static_cast<int64_t>(kClaimBatch)),
                                   Retry::Idempotent);
    cursor = reply[0].str();
    for (Raw& raw : parse_entries(reply[1])) {
      claimed_.push_back(std::move(raw));
      ++claimed;
    }
  } while (cursor != "0-0" && claimed < kClaimLimit);
  next_claim_ = Clock::now() + options_.claim_idle / 4;
  if (claimed > 0) {
    LVRL_INFO("rollout stream: {} claimed {} entries pending for more than {} ms", name_, claimed,
              options_.claim_idle.count());
  }
  return claimed;
}

std::vector<RolloutDelivery> RolloutConsumer::read(size_t count, std::chrono::milliseconds block) {
  LVRL_ASSERT(count > 0, "read() of 0 rollouts");
  const auto count_arg = static_cast<int64_t>(count);
  const Clock::time_point deadline = Clock::now() + block;
  if (client_.generation() != generation_) {
    // A reconnect may have lost a reply of XREADGROUP >: what it delivered sits pending for us.
    own_pending_done_ = false;
    pending_cursor_ = "0";
    generation_ = client_.generation();
  }
  for (;;) {
    if (!own_pending_done_) {  // after a restart: what this consumer had and never acknowledged
      RedisReply reply = client_.run(RedisCommand{"XREADGROUP", "GROUP", options_.group, name_, "COUNT"}
                                         .add(count_arg)
                                         .add("STREAMS")
                                         .add(stream_)
                                         .add(pending_cursor_),
                                     Retry::Idempotent);
      std::vector<Raw> entries = reply.is_nil() ? std::vector<Raw>{} : parse_entries(reply[0][1]);
      if (entries.empty()) {
        own_pending_done_ = true;
      } else {
        pending_cursor_ = entries.back().entry_id;
        std::vector<RolloutDelivery> out = accept(std::move(entries), false);
        if (!out.empty()) return out;
        continue;
      }
    }
    if (claimed_.empty() && Clock::now() >= next_claim_) reclaim();
    if (!claimed_.empty()) {
      size_t take = std::min(count, claimed_.size());
      std::vector<Raw> batch(std::make_move_iterator(claimed_.begin()),
                             std::make_move_iterator(claimed_.begin() + take));
      claimed_.erase(claimed_.begin(), claimed_.begin() + take);
      std::vector<RolloutDelivery> out = accept(std::move(batch), false);
      if (!out.empty()) return out;
      continue;
    }
    RedisCommand xread{"XREADGROUP", "GROUP", options_.group, name_, "COUNT"};
    xread.add(count_arg);
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (wait.count() > 0) xread.add("BLOCK").add(static_cast<int64_t>(wait.count()));
    xread.add("STREAMS").add(stream_).add(">");
    // Not idempotent in Redis' eyes (it delivers), but a resend only delivers entries that then
    // sit pending for this consumer: the next read after a restart or a reclaim finds them.
    RedisReply reply =
        client_.run_blocking(xread, std::max(wait, std::chrono::milliseconds(0)), Retry::Idempotent);
    if (reply.is_nil()) return {};
    std::vector<RolloutDelivery> out = accept(parse_entries(reply[0][1]), true);
    if (!out.empty() || Clock::now() >= deadline) return out;
  }
}

void RolloutConsumer::ack(const RolloutDelivery& delivery) {
  client_.run(RedisCommand{"EVAL", kAckScript, "2", stream_, done_set_}
                  .add(delivery.entry_id)
                  .add(delivery.record.group_id)
                  .add(options_.group),
              Retry::Idempotent);
  handed_out_.erase(delivery.entry_id);
}

}  // namespace lvrl::cache
