// A blocking Redis connection over hiredis 0.14 that survives server restarts.
//
// Why it is built this way:
//  - hiredis contexts are not thread-safe: a RedisClient belongs to one thread at a time (RedisPool
//    hands them out). Nothing here locks.
//  - After any hiredis error the context is dead (hiredis 0.14), and we cannot know whether the
//    commands in flight were executed. So the client reconnects — with exponential backoff and
//    jitter, for up to `reconnect_for` — on a fresh context, re-applies the socket timeouts, AUTHs and
//    SELECTs again, and then resends only what the caller declared Retry::Idempotent. A
//    Retry::Never command that was in flight is reported as a RedisConnectionError ("may or may not
//    have run"); the client itself stays usable.
//  - A reconnect may land on a *different* server lifetime (a cache server restarted empty). Callers
//    that issue several dependent commands read generation() before and after: a change means
//    replies may come from two lifetimes, and they start over (EmbeddingCache does).
//  - Pipelines bound the bytes in flight (requests, and the replies the caller expects), so a
//    1.8 GB tensor neither sits twice in our buffers nor in the server's output buffer.
//  - Wrong credentials are the user's input: an InputError naming the URL (password hidden), never
//    retried. A server that is down or unreachable is a RedisConnectionError (a LibraryError).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cache/redis_command.h"
#include "cache/redis_url.h"
#include "cache/redis_wire.h"
#include "core/error.h"

struct redisContext;

namespace lvrl::cache {

struct RedisOptions {
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds command_timeout{30000};  // socket send/receive; blocking commands add theirs
  std::chrono::milliseconds first_connect_for{0};    // the constructor retries a refused connect this long
  std::chrono::milliseconds reconnect_for{10000};    // after a lost connection, keep trying this long
  std::chrono::milliseconds backoff_first{10};       // first wait between tries; doubles each try
  std::chrono::milliseconds backoff_max{500};
  int max_retries = 5;  // resends of one command or pipeline after lost connections
  // Bounds of a pipeline, measured in bench/RESULTS.md (cache_throughput, 4 MiB chunks): request bytes in
  // flight (8 chunks keep a TCP link full from a put's first chunk: a 64 MB put over loopback TCP ran at
  // 1.8 GB/s with 2 in flight, 3.3 GB/s with 8), and the reply bytes the caller expects (gets are faster with
  // 2 chunks in flight than with 8: 3.3-4.3 vs 1.9-2.4 GB/s for 64 MB, the server's reply buffers stay
  // small).
  size_t pipeline_bytes = size_t{32} << 20;
  size_t pipeline_reply_bytes = size_t{8} << 20;
};

enum class Retry {
  Idempotent,  // running it twice is the same as once: resent after a lost connection
  Never,       // a lost connection while it was in flight is a RedisConnectionError
};

// The connection failed (refused, reset, timed out) and could not be re-established, or a
// Retry::Never command was in flight when it dropped.
class RedisConnectionError : public LibraryError {
 public:
  using LibraryError::LibraryError;
};

class RedisClient {
 public:
  // Connects (one try, or for options.first_connect_for), AUTHs, SELECTs and PINGs.
  explicit RedisClient(RedisEndpoint endpoint, RedisOptions options = {});
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // One command. An error reply is a LibraryError naming the command and Redis' text.
  RedisReply run(const RedisCommand& command, Retry retry);
  // The same, but error replies are returned (for errors the caller expects: BUSYGROUP, NOSCRIPT).
  RedisReply run_unchecked(const RedisCommand& command, Retry retry);
  // For commands that block in the server (XREADGROUP/XREAD ... BLOCK ms): the socket timeout
  // is raised by `block` for this command only.
  RedisReply run_blocking(const RedisCommand& command, std::chrono::milliseconds block, Retry retry);

  // Sends `commands` pipelined and calls on_reply(i, reply) for each, in order. Error replies are
  // passed on, not thrown. `reply_bytes(i)`, when given, is the size the caller expects reply i to
  // have; it counts against options.pipeline_reply_bytes until the reply is read. `on_sent(i)`, when
  // given, runs as soon as command i is handed to the socket (a large one is written by then), so
  // a caller can work on its bytes while they are hot in the cache; after a reconnect it runs again
  // for the commands resent. After a lost connection, Retry::Idempotent resends the commands not yet
  // answered (on_reply never sees an index twice); Retry::Never throws RedisConnectionError.
  using ReplyHandler = std::function<void(size_t, const RedisReply&)>;
  void pipeline(const std::vector<RedisCommand>& commands, Retry retry, const ReplyHandler& on_reply,
                const std::function<size_t(size_t)>& reply_bytes = {},
                const std::function<void(size_t)>& on_sent = {});

  // GETs pipelined like pipeline(), each reply read straight into targets[i] when it is a string of
  // exactly targets[i].size bytes (zero-copy: redis_wire.h); other replies are reported by kind.
  struct BulkTarget {
    char* data;
    size_t size;
  };
  using BulkHandler = std::function<void(size_t, const wire::BulkReply&)>;
  void pipeline_get_into(const std::vector<RedisCommand>& commands, const std::vector<BulkTarget>& targets,
                         Retry retry, const BulkHandler& on_reply);

  // +1 on every reconnect. Unchanged across a sequence of calls: they all reached one connection.
  uint64_t generation() const { return generation_; }
  const RedisEndpoint& endpoint() const { return endpoint_; }
  const RedisOptions& options() const { return options_; }
  // Drops the connection; the next command reconnects.
  void disconnect();

 private:
  struct Lost;  // internal: the context failed mid-exchange
  void ensure_connected(std::chrono::milliseconds retry_for, const std::string& statement);
  redisContext* connect_once(std::string& failure);  // nullptr + reason on a transient failure
  void login(redisContext* context);                 // AUTH, SELECT, PING; InputError on refusal
  void set_socket_timeout(std::chrono::milliseconds timeout);
  // How an exchange reads reply i (`read`, may fail like the connection) and then hands it on
  // (`deliver`, runs once per index even across reconnects).
  struct ReplySink {
    std::function<void(size_t)> read;
    std::function<void(size_t)> deliver;
    std::function<size_t(size_t)> reply_bytes;  // optional: expected size of reply i
    std::function<void(size_t)> sent;           // optional: command i was handed to the socket
    bool own_reader = false;                    // `read` parses the socket itself (wire::BulkReader)
  };
  void run_pipeline(const RedisCommand* commands, size_t count, Retry retry, const ReplySink& sink);
  void exchange(const RedisCommand* commands, size_t count, size_t& answered, const ReplySink& sink);
  void send(const RedisCommand& command);  // small ones are queued until flush()
  void flush();
  ReplySink hiredis_sink(const ReplyHandler& on_reply, const std::function<size_t(size_t)>& reply_bytes,
                         RedisReply& slot);
  RedisReply single(const RedisCommand& command, Retry retry, std::chrono::milliseconds extra_timeout);
  [[noreturn]] void give_up(const std::string& statement, const std::string& detail) const;

  RedisEndpoint endpoint_;
  RedisOptions options_;
  redisContext* context_ = nullptr;
  std::chrono::milliseconds socket_timeout_{0};  // what the socket has now
  std::chrono::milliseconds wanted_timeout_{0};  // what the next exchange needs
  uint64_t generation_ = 0;
  bool connected_once_ = false;
  std::string last_failure_;  // why the last connection dropped, for the next error message
  std::unique_ptr<wire::BulkReader> bulk_reader_;  // during pipeline_get_into: parses replies itself
};

}  // namespace lvrl::cache
