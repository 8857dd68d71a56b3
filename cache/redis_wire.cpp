#include "cache/redis_wire.h"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>

namespace lvrl::cache::wire {
namespace {
constexpr size_t kMaxIov = 64;        // well under IOV_MAX; longer commands go out in several writev calls
constexpr size_t kMaxLine = 1 << 15;  // well under the reader's 64 KiB buffer

std::string io_failure(const char* what) {
  if (errno == EAGAIN || errno == EWOULDBLOCK) return fmt::format("timed out {} (the command timeout)", what);
  return fmt::format("{}: {}", what, std::strerror(errno));
}

// Writes all of `iov`, resuming after partial writes.
void write_all(int fd, iovec* iov, size_t count) {
  while (count > 0) {
    ssize_t written = ::writev(fd, iov, static_cast<int>(std::min(count, kMaxIov)));
    if (written < 0) {
      if (errno == EINTR) continue;
      throw WireError{io_failure("writing")};
    }
    auto left = static_cast<size_t>(written);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
}
}  // namespace

void write_command(int fd, const RedisCommand& command) {
  // The framing of every argument goes into `framing` first (so its addresses are stable), then
  // the iovecs alternate framing and argument bytes.
  std::string framing = fmt::format("*{}\r\n", command.argc());
  std::vector<size_t> header_end(command.argc());
  for (size_t i = 0; i < command.argc(); ++i) {
    framing += fmt::format("{}${}\r\n", i == 0 ? "" : "\r\n", command.size(i));
    header_end[i] = framing.size();
  }
  framing += "\r\n";
  std::vector<iovec> iov;
  iov.reserve(2 * command.argc() + 1);
  size_t start = 0;
  for (size_t i = 0; i < command.argc(); ++i) {
    iov.push_back({framing.data() + start, header_end[i] - start});
    if (command.size(i) > 0) iov.push_back({const_cast<char*>(command.data(i)), command.size(i)});
    start = header_end[i];
  }
  iov.push_back({framing.data() + start, framing.size() - start});
  write_all(fd, iov.data(), iov.size());
}

void BulkReader::fill() {
  if (begin_ == end_) begin_ = end_ = 0;
  if (end_ == buffer_.size()) {  // compact: only a partial line can be left at the front
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  for (;;) {
    ssize_t got = ::read(fd_, buffer_.data() + end_, buffer_.size() - end_);
    if (got > 0) {
      end_ += static_cast<size_t>(got);
      return;
    }
    if (got == 0) throw WireError{"the server closed the connection"};
    if (errno != EINTR) throw WireError{io_failure("reading")};
  }
}

std::string BulkReader::read_line() {
  for (;;) {
    const char* first = buffer_.data() + begin_;
    const char* last = buffer_.data() + end_;
    const char* cr = std::search(first, last, "\r\n", "\r\n" + 2);
    if (cr != last) {
      std::string line(first, cr);
      begin_ += line.size() + 2;
      return line;
    }
    if (end_ - begin_ > kMaxLine) throw WireError{"protocol error: a reply line longer than 32 KiB"};
    fill();
  }
}

void BulkReader::read_exact(char* out, size_t bytes) {
  size_t buffered = std::min(bytes, end_ - begin_);
  std::memcpy(out, buffer_.data() + begin_, buffered);
  begin_ += buffered;
  for (size_t done = buffered; done < bytes;) {
    // MSG_WAITALL: one call for the whole payload, which the kernel fills as the data arrives,
    // instead of a return to user space per socket-buffer's worth (~200 KB on a unix socket).
    ssize_t got = ::recv(fd_, out + done, bytes - done, MSG_WAITALL);
    if (got > 0) {
      done += static_cast<size_t>(got);
    } else if (got == 0) {
      throw WireError{"the server closed the connection"};
    } else if (errno != EINTR) {
      throw WireError{io_failure("reading")};
    }
  }
}

void BulkReader::skip(size_t bytes) {
  while (bytes > 0) {
    if (begin_ == end_) fill();
    size_t take = std::min(bytes, end_ - begin_);
    begin_ += take;
    bytes -= take;
  }
}

BulkReply BulkReader::read(char* destination, size_t size) {
  std::string line = read_line();
  BulkReply out;
  if (!line.empty() && line[0] == '-') {
    out.kind = BulkReply::Kind::Error;
    out.error = line.substr(1);
    return out;
  }
  long long length = 0;
  auto [end, ec] = std::from_chars(line.data() + 1, line.data() + line.size(), length);
  if (line.empty() || line[0] != '$' || ec != std::errc() || end != line.data() + line.size() ||
      length < -1) {
    throw WireError{
        fmt::format("protocol error: expected a bulk string reply, got \"{}\"", line.substr(0, 64))};
  }
  if (length == -1) return out;  // nil
  const auto bytes = static_cast<size_t>(length);
  if (bytes == size) {
    read_exact(destination, bytes);
    out.kind = BulkReply::Kind::Filled;
  } else {
    skip(bytes);
    out.kind = BulkReply::Kind::WrongSize;
  }
  out.size = bytes;
  char crlf[2];
  read_exact(crlf, 2);
  if (crlf[0] != '\r' || crlf[1] != '\n') throw WireError{"protocol error: a bulk string without its \\r\\n"};
  return out;
}

}  // namespace lvrl::cache::wire
