#include "cache/redis_client.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>
#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <mutex>
#include <new>
#include <random>
#include <thread>

#include "cache/redis_check.h"
#include "core/clock.h"
#include "core/log.h"

namespace lvrl::cache {
namespace {
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

timeval to_timeval(milliseconds duration) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(duration.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((duration.count() % 1000) * 1000);
  return tv;
}

// hiredis writes with write(2): a server that dies mid-write would kill us with SIGPIPE. Only the
// default action is replaced, so a program that installed its own handler keeps it.
void ignore_sigpipe() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current {};
    if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
  });
}

// Half to all of `delay`, so many workers that lost one server do not reconnect in lockstep.
milliseconds jittered(milliseconds delay) {
  thread_local std::minstd_rand random(std::random_device{}());
  std::uniform_int_distribution<int64_t> pick(delay.count() / 2, std::max<int64_t>(delay.count(), 1));
  return milliseconds(pick(random));
}

// Commands carrying this many bytes or more go out through wire::write_command, uncopied.
constexpr size_t kZeroCopyBytes = 64 << 10;

bool is_loading(const RedisReply& reply) {
  return reply.is_error() && reply.text().rfind("LOADING", 0) == 0;
}
}  // namespace

struct RedisClient::Lost {
  std::string reason;
};

RedisClient::RedisClient(RedisEndpoint endpoint, RedisOptions options)
    : endpoint_(std::move(endpoint)), options_(options), wanted_timeout_(options.command_timeout) {
  ignore_sigpipe();
  ensure_connected(options_.first_connect_for, "connect");
}

RedisClient::~RedisClient() {
  disconnect();
}

void RedisClient::disconnect() {
  if (context_ != nullptr) redisFree(context_);
  context_ = nullptr;
}

void RedisClient::give_up(const std::string& statement, const std::string& detail) const {
  throw RedisConnectionError("hiredis", statement, "RedisClient", __FILE__, __LINE__,
                             fmt::format("{}: {}", endpoint_.describe(), detail));
}

void RedisClient::ensure_connected(milliseconds retry_for, const std::string& statement) {
  if (context_ != nullptr) return;
  const Clock::time_point start = Clock::now();
  milliseconds delay = options_.backoff_first;
  std::string failure;
  for (int tries = 1;; ++tries) {
    context_ = connect_once(failure);
    if (context_ != nullptr) {
      if (connected_once_) {
        ++generation_;
        LVRL_INFO("redis: reconnected to {} after {} tries in {:.3f} s", endpoint_.describe(), tries,
                  seconds_since(start));
      }
      connected_once_ = true;
      return;
    }
    if (Clock::now() + delay > start + retry_for) {
      std::string before =
          last_failure_.empty() ? "" : fmt::format(" (the connection had dropped: {})", last_failure_);
      give_up(statement, fmt::format("cannot connect: {}{}; {} tries in {:.1f} s", failure, before, tries,
                                     seconds_since(start)));
    }
    std::this_thread::sleep_for(jittered(delay));
    delay = std::min(delay * 2, options_.backoff_max);
  }
}

redisContext* RedisClient::connect_once(std::string& failure) {
  const timeval timeout = to_timeval(options_.connect_timeout);
  redisContext* context = endpoint_.transport == RedisEndpoint::Transport::Unix
                              ? redisConnectUnixWithTimeout(endpoint_.socket_path.c_str(), timeout)
                              : redisConnectWithTimeout(endpoint_.host.c_str(), endpoint_.port, timeout);
  if (context == nullptr) throw std::bad_alloc();
  if (context->err != 0) {
    failure = context->errstr;
    redisFree(context);
    return nullptr;
  }
  try {
    LVRL_REDIS_CHECK(context, redisSetTimeout(context, to_timeval(options_.command_timeout)));
    socket_timeout_ = options_.command_timeout;
    if (endpoint_.transport == RedisEndpoint::Transport::Tcp) {
      LVRL_REDIS_CHECK(context, redisEnableKeepAlive(context));
    }
    login(context);
  } catch (const InputError&) {
    redisFree(context);
    throw;
  } catch (const LibraryError& e) {  // the server went away again, or is still loading its data
    failure = e.detail();
    redisFree(context);
    return nullptr;
  }
  return context;
}

void RedisClient::login(redisContext* context) {
  auto call = [&](const RedisCommand& command) {
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    command.fill_argv(argv, lengths);
    LVRL_REDIS_CHECK(
        context, redisAppendCommandArgv(context, static_cast<int>(argv.size()), argv.data(), lengths.data()));
    void* raw = nullptr;
    LVRL_REDIS_CHECK(context, redisGetReply(context, &raw));
    return RedisReply::adopt(static_cast<redisReply*>(raw));
  };
  const InputWhere where{"", 0, "redis url", endpoint_.describe()};
  if (!endpoint_.password.empty()) {
    RedisCommand auth{"AUTH"};
    if (!endpoint_.user.empty()) auth.add(endpoint_.user);
    auth.add(endpoint_.password).mark_secret(auth.argc() - 1);
    RedisReply reply = call(auth);
    if (reply.is_error()) {
      if (is_loading(reply))
        ::lvrl::detail::fail_library("redis", "AUTH", __func__, __FILE__, __LINE__, reply.str());
      throw InputError(where, fmt::format("the server refused the password: {}", reply.text()));
    }
  }
  if (endpoint_.db != 0) {
    RedisReply reply = call(RedisCommand{"SELECT"}.add(int64_t{endpoint_.db}));
    if (reply.is_error() && !is_loading(reply)) {
      throw InputError(where, fmt::format("cannot select database {}: {}", endpoint_.db, reply.text()));
    }
  }
  RedisReply pong = call(RedisCommand{"PING"});
  if (pong.is_error()) {
    if (pong.text().rfind("NOAUTH", 0) == 0) {
      throw InputError(where,
                       "the server requires a password: give it in the URL (redis://:PASSWORD@host:port "
                       "or unix:///path?password=PASSWORD)");
    }
    ::lvrl::detail::fail_library("redis", "PING", __func__, __FILE__, __LINE__, pong.str());
  }
}

void RedisClient::set_socket_timeout(milliseconds timeout) {
  if (timeout == socket_timeout_) return;
  LVRL_REDIS_CHECK(context_, redisSetTimeout(context_, to_timeval(timeout)));
  socket_timeout_ = timeout;
}

// Small commands wait in hiredis' output buffer and go out together — a run of PERSISTs or GETs in one
// write instead of one write (and, over TCP, one segment) each: before a large command, before a reply
// is read, and whenever kZeroCopyBytes are queued.
void RedisClient::send(const RedisCommand& command) {
  redisContext* context = context_;
  if (command.bytes() >= kZeroCopyBytes) {  // hiredis would copy the value twice (redis_wire.h)
    flush();
    wire::write_command(context->fd, command);
    return;
  }
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  command.fill_argv(argv, lengths);
  LVRL_REDIS_CHECK(
      context, redisAppendCommandArgv(context, static_cast<int>(argv.size()), argv.data(), lengths.data()));
  if (sdslen(context->obuf) >= kZeroCopyBytes) flush();  // hiredis' output buffer: what waits to be written
}

void RedisClient::flush() {
  int done = 0;
  do {
    LVRL_REDIS_CHECK(context_, redisBufferWrite(context_, &done));
  } while (done == 0);
}

void RedisClient::exchange(const RedisCommand* commands, size_t count, size_t& answered,
                           const ReplySink& sink) {
  redisContext* context = context_;
  auto reply_cost = [&](size_t i) { return sink.reply_bytes ? sink.reply_bytes(i) : 0; };
  size_t sent = answered, requests_in_flight = 0, replies_in_flight = 0;
  try {
    set_socket_timeout(wanted_timeout_);
    if (sink.own_reader) {
      LVRL_ASSERT(context->reader->pos == context->reader->len, "hiredis holds unread replies");
      bulk_reader_ = std::make_unique<wire::BulkReader>(context->fd);
    }
    while (answered < count) {
      // Keep the server busy while we stay under both bounds; always at least one command out.
      while (sent < count &&
             (sent == answered || (requests_in_flight + commands[sent].bytes() <= options_.pipeline_bytes &&
                                   replies_in_flight + reply_cost(sent) <= options_.pipeline_reply_bytes))) {
        send(commands[sent]);
        if (sink.sent) sink.sent(sent);
        requests_in_flight += commands[sent].bytes();
        replies_in_flight += reply_cost(sent);
        ++sent;
      }
      flush();
      sink.read(answered);
      requests_in_flight -= commands[answered].bytes();
      replies_in_flight -= reply_cost(answered);
      const size_t index = answered++;  // counted first: a handler that throws never sees it again
      sink.deliver(index);
    }
    if (bulk_reader_ != nullptr && !bulk_reader_->drained()) {
      throw wire::WireError{"protocol error: bytes after the last reply"};
    }
    bulk_reader_.reset();
  } catch (const wire::WireError& e) {
    bulk_reader_.reset();
    throw Lost{e.reason};
  } catch (const LibraryError& e) {
    bulk_reader_.reset();
    if (context->err != 0) throw Lost{e.detail()};
    if (sent > answered) disconnect();  // replies still in flight: the connection is out of step
    throw;
  } catch (...) {
    bulk_reader_.reset();
    if (sent > answered) disconnect();
    throw;
  }
}

RedisClient::ReplySink RedisClient::hiredis_sink(const ReplyHandler& on_reply,
                                                 const std::function<size_t(size_t)>& reply_bytes,
                                                 RedisReply& slot) {
  ReplySink sink;
  sink.read = [this, &slot](size_t) {
    void* raw = nullptr;
    LVRL_REDIS_CHECK(context_, redisGetReply(context_, &raw));
    slot = RedisReply::adopt(static_cast<redisReply*>(raw));
  };
  sink.deliver = [&on_reply, &slot](size_t index) {
    RedisReply reply = std::move(slot);
    on_reply(index, reply);
  };
  sink.reply_bytes = reply_bytes;
  return sink;
}

void RedisClient::pipeline(const std::vector<RedisCommand>& commands, Retry retry,
                           const ReplyHandler& on_reply, const std::function<size_t(size_t)>& reply_bytes,
                           const std::function<void(size_t)>& on_sent) {
  RedisReply slot;
  ReplySink sink = hiredis_sink(on_reply, reply_bytes, slot);
  sink.sent = on_sent;
  run_pipeline(commands.data(), commands.size(), retry, sink);
}

void RedisClient::pipeline_get_into(const std::vector<RedisCommand>& commands,
                                    const std::vector<BulkTarget>& targets, Retry retry,
                                    const BulkHandler& on_reply) {
  LVRL_ASSERT(commands.size() == targets.size(), "one target per GET");
  wire::BulkReply slot;
  ReplySink sink;
  sink.own_reader = true;
  sink.read = [&](size_t i) { slot = bulk_reader_->read(targets[i].data, targets[i].size); };
  sink.deliver = [&](size_t i) { on_reply(i, slot); };
  sink.reply_bytes = [&](size_t i) { return targets[i].size; };
  run_pipeline(commands.data(), commands.size(), retry, sink);
}

void RedisClient::run_pipeline(const RedisCommand* commands, size_t count, Retry retry,
                               const ReplySink& sink) {
  if (count == 0) return;
  size_t answered = 0;
  for (int resends = 0;; ++resends) {
    ensure_connected(connected_once_ ? options_.reconnect_for : options_.first_connect_for,
                     commands[answered].describe());
    try {
      exchange(commands, count, answered, sink);
      return;
    } catch (const Lost& lost) {
      last_failure_ = lost.reason;
      disconnect();
      const std::string statement = commands[answered].describe();
      if (retry == Retry::Never) {
        give_up(statement,
                fmt::format("the connection dropped while the command was in flight ({}); it may or "
                            "may not have run",
                            lost.reason));
      }
      if (resends >= options_.max_retries) {
        give_up(statement, fmt::format("the connection dropped {} times ({})", resends + 1, lost.reason));
      }
      LVRL_WARN("redis: lost the connection to {} ({}); reconnecting to resend {} command(s)",
                endpoint_.describe(), lost.reason, count - answered);
    }
  }
}

RedisReply RedisClient::single(const RedisCommand& command, Retry retry, milliseconds extra_timeout) {
  struct TimeoutScope {  // a blocking command's longer timeout ends with it
    milliseconds& wanted;
    milliseconds saved;
    ~TimeoutScope() { wanted = saved; }
  } scope{wanted_timeout_, wanted_timeout_};
  wanted_timeout_ = options_.command_timeout + extra_timeout;

  // A server loading its AOF after a restart answers LOADING without running the command, so
  // waiting and resending is safe for every command.
  const Clock::time_point start = Clock::now();
  milliseconds delay = options_.backoff_first;
  for (;;) {
    RedisReply out, slot;
    ReplyHandler keep = [&](size_t, const RedisReply& reply) { out = reply; };
    run_pipeline(&command, 1, retry, hiredis_sink(keep, {}, slot));
    if (!is_loading(out) || Clock::now() + delay > start + options_.reconnect_for) return out;
    std::this_thread::sleep_for(jittered(delay));
    delay = std::min(delay * 2, options_.backoff_max);
  }
}

RedisReply RedisClient::run_unchecked(const RedisCommand& command, Retry retry) {
  return single(command, retry, milliseconds(0));
}

RedisReply RedisClient::run(const RedisCommand& command, Retry retry) {
  RedisReply reply = single(command, retry, milliseconds(0));
  if (reply.is_error()) {
    ::lvrl::detail::fail_library("redis", command.describe().c_str(), __func__, __FILE__, __LINE__,
                                 fmt::format("{}: {}", endpoint_.describe(), reply.text()));
  }
  return reply;
}

RedisReply RedisClient::run_blocking(const RedisCommand& command, milliseconds block, Retry retry) {
  RedisReply reply = single(command, retry, block);
  if (reply.is_error()) {
    ::lvrl::detail::fail_library("redis", command.describe().c_str(), __func__, __FILE__, __LINE__,
                                 fmt::format("{}: {}", endpoint_.describe(), reply.text()));
  }
  return reply;
}

}  // namespace lvrl::cache
