#include "cache/redis_command.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include "core/error.h"

namespace lvrl::cache {
namespace {
// Arguments printed in full by describe(): command words and keys are short and printable.
constexpr size_t kDescribeArgBytes = 64;
constexpr size_t kDescribeArgs = 6;

bool printable(std::string_view bytes) {
  for (unsigned char c : bytes) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}
}  // namespace

RedisCommand::RedisCommand(std::initializer_list<std::string_view> words) {
  for (std::string_view word : words) add(word);
}

RedisCommand& RedisCommand::add(std::string_view bytes) {
  Arg arg;
  arg.owned.assign(bytes.data(), bytes.size());
  arg.size = bytes.size();
  bytes_ += arg.size;
  args_.push_back(std::move(arg));
  return *this;
}

RedisCommand& RedisCommand::add(int64_t value) {
  return add(std::string_view(fmt::format("{}", value)));
}

RedisCommand& RedisCommand::add_view(const void* data, size_t size) {
  Arg arg;
  arg.view = size == 0 ? "" : static_cast<const char*>(data);
  arg.size = size;
  bytes_ += size;
  args_.push_back(std::move(arg));
  return *this;
}

RedisCommand& RedisCommand::mark_secret(size_t index) {
  LVRL_ASSERT(index < args_.size(), "mark_secret past the last argument");
  args_[index].secret = true;
  return *this;
}

const char* RedisCommand::data(size_t index) const {
  const Arg& arg = args_[index];
  return arg.view != nullptr ? arg.view : arg.owned.data();
}

std::string RedisCommand::describe() const {
  std::string out;
  for (size_t i = 0; i < args_.size() && i < kDescribeArgs; ++i) {
    std::string_view bytes(data(i), args_[i].size);
    if (!out.empty()) out += ' ';
    if (args_[i].secret)
      out += "***";
    else if (bytes.size() <= kDescribeArgBytes && printable(bytes))
      out += bytes;
    else
      out += fmt::format("<{} bytes>", bytes.size());
  }
  if (args_.size() > kDescribeArgs) out += fmt::format(" ... ({} arguments)", args_.size());
  return out;
}

void RedisCommand::fill_argv(std::vector<const char*>& argv, std::vector<size_t>& lengths) const {
  argv.resize(args_.size());
  lengths.resize(args_.size());
  for (size_t i = 0; i < args_.size(); ++i) {
    argv[i] = data(i);
    lengths[i] = args_[i].size;
  }
}

// ---- RedisReply ----

RedisReply RedisReply::adopt(redisReply* reply) {
  if (reply == nullptr) return {};
  std::shared_ptr<redisReply> root(reply, [](redisReply* r) { freeReplyObject(r); });
  return RedisReply(root, reply);
}

RedisReply::Type RedisReply::type() const {
  if (node_ == nullptr) return Type::None;
  switch (node_->type) {
    case REDIS_REPLY_STRING:
      return Type::String;
    case REDIS_REPLY_ARRAY:
      return Type::Array;
    case REDIS_REPLY_INTEGER:
      return Type::Integer;
    case REDIS_REPLY_NIL:
      return Type::Nil;
    case REDIS_REPLY_STATUS:
      return Type::Status;
    case REDIS_REPLY_ERROR:
      return Type::Error;
    default:
      return Type::None;
  }
}

const char* reply_type_name(RedisReply::Type type) {
  switch (type) {
    case RedisReply::Type::None:
      return "no reply";
    case RedisReply::Type::String:
      return "string";
    case RedisReply::Type::Array:
      return "array";
    case RedisReply::Type::Integer:
      return "integer";
    case RedisReply::Type::Nil:
      return "nil";
    case RedisReply::Type::Status:
      return "status";
    case RedisReply::Type::Error:
      return "error";
  }
  return "?";
}

void RedisReply::wrong_type(const char* wanted) const {
  ::lvrl::detail::fail_library("redis", "reading a reply", __func__, __FILE__, __LINE__,
                               fmt::format("expected a {} reply, got {}", wanted, describe()));
}

std::string_view RedisReply::text() const {
  Type t = type();
  if (t != Type::String && t != Type::Status && t != Type::Error) wrong_type("string");
  return std::string_view(node_->str, node_->len);
}

long long RedisReply::integer() const {
  if (type() != Type::Integer) wrong_type("integer");
  return node_->integer;
}

size_t RedisReply::size() const {
  if (type() != Type::Array) wrong_type("array");
  return node_->elements;
}

RedisReply RedisReply::operator[](size_t index) const {
  if (index >= size()) {
    ::lvrl::detail::fail_library("redis", "reading a reply", __func__, __FILE__, __LINE__,
                                 fmt::format("element {} of an array of {}", index, size()));
  }
  return RedisReply(root_, node_->element[index]);
}

std::string RedisReply::describe() const {
  switch (type()) {
    case Type::String: {
      std::string_view bytes = text();
      if (bytes.size() <= kDescribeArgBytes && printable(bytes)) return fmt::format("\"{}\"", bytes);
      return fmt::format("<string of {} bytes>", bytes.size());
    }
    case Type::Status:
      return fmt::format("status {}", text());
    case Type::Error:
      return fmt::format("error \"{}\"", text());
    case Type::Integer:
      return fmt::format("integer {}", integer());
    case Type::Array:
      return fmt::format("array of {}", size());
    default:
      return reply_type_name(type());
  }
}

}  // namespace lvrl::cache
