// Zero-copy transfer of large values on a hiredis connection's socket (used by RedisClient only).
//
// Why: hiredis 0.14 copies a value twice on the way out (formatting the command, then into the
// output buffer) and, on the way in, reads 16 KB per read(2), appends it to its reader buffer and
// copies the bulk again into a reply object — before we copy it into the tensor. At 4 MB chunks
// that made a get ~4x slower than `redis-benchmark` GET. So for commands with a large argument we
// write the RESP framing ourselves with writev(2), the value sent from where it is; and for GETs of
// chunks whose size we know we parse the reply ourselves, reading the payload with large read(2)s
// straight into its place in the tensor. Everything else (connect, AUTH, small commands and their
// replies) stays with hiredis. Both paths run only while hiredis holds no buffered bytes of its
// own, so the two never interleave on the stream.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "cache/redis_command.h"

namespace lvrl::cache::wire {

// The connection failed (reset, closed, timed out) or the server broke the protocol: the
// connection is unusable; `reason` says why.
struct WireError {
  std::string reason;
};

// Writes `command` as a RESP array of bulk strings; view arguments are not copied. Throws WireError.
void write_command(int fd, const RedisCommand& command);

// The reply to a GET read into a caller's buffer.
struct BulkReply {
  enum class Kind { Filled, Nil, WrongSize, Error } kind = Kind::Nil;
  size_t size = 0;    // WrongSize: the size the server sent
  std::string error;  // Error: the server's text
};

// Reads replies from `fd`. Not thread-safe; one per exchange, discarded with the connection.
class BulkReader {
 public:
  explicit BulkReader(int fd) : fd_(fd), buffer_(kBufferBytes) {}
  // A bulk string of exactly `size` bytes lands in `destination`; a bulk of another size is read and
  // dropped (WrongSize); nil and error replies are reported. Other replies are a WireError.
  BulkReply read(char* destination, size_t size);
  // No bytes read ahead: at the end of an exchange, anything buffered is a protocol error.
  bool drained() const { return begin_ == end_; }

 private:
  static constexpr size_t kBufferBytes = 64 << 10;
  void fill();                               // at least one more byte into the buffer
  std::string read_line();                   // up to "\r\n", which is consumed
  void read_exact(char* out, size_t bytes);  // buffered bytes first, then read(2) straight into `out`
  void skip(size_t bytes);
  int fd_;
  std::vector<char> buffer_;
  size_t begin_ = 0, end_ = 0;
};

}  // namespace lvrl::cache::wire
