// What goes over a Redis connection: a command as binary-safe arguments, and a reply.
//
// Commands are argv lists with explicit lengths (hiredis' redisAppendCommandArgv), never format
// strings: keys and values are arbitrary bytes, and a format mistake (`%zu` for `%b`) poisons a
// hiredis 0.14 connection. Large values are added as views (add_view) so a 4 MB chunk of a tensor is
// not copied into the command first; the viewed bytes must outlive the call that sends it.
//
// Replies share one hiredis reply tree (sub-replies keep it alive). Reading a reply as the wrong
// type is a LibraryError naming both types: a reply is the server's data, not our invariant.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct redisReply;  // hiredis.h stays out of this header

namespace lvrl::cache {

class RedisCommand {
 public:
  RedisCommand() = default;
  RedisCommand(std::initializer_list<std::string_view> words);

  RedisCommand& add(std::string_view bytes);  // copied
  RedisCommand& add(int64_t value);           // as decimal text
  // Not copied: `data` must stay valid until the command has been sent.
  RedisCommand& add_view(const void* data, size_t size);
  // Marks argument `index` as a secret (AUTH's password): describe() prints "***" for it.
  RedisCommand& mark_secret(size_t index);

  size_t argc() const { return args_.size(); }
  const char* data(size_t index) const;
  size_t size(size_t index) const { return args_[index].size; }
  size_t bytes() const { return bytes_; }  // sum of argument sizes: the request's cost in flight
  // "SET lvrl:ns:emb:c:k:w:0 <4194304 bytes>": the first words, long or binary arguments as sizes.
  std::string describe() const;

  // For redisAppendCommandArgv; the pointers are valid while the command is unchanged.
  void fill_argv(std::vector<const char*>& argv, std::vector<size_t>& lengths) const;

 private:
  struct Arg {
    std::string owned;
    const char* view = nullptr;  // set for add_view arguments
    size_t size = 0;
    bool secret = false;
  };
  std::vector<Arg> args_;
  size_t bytes_ = 0;
};

class RedisReply {
 public:
  enum class Type { None, String, Array, Integer, Nil, Status, Error };

  RedisReply() = default;  // Type::None: no reply
  // Takes ownership of a hiredis reply tree (freeReplyObject on the last copy).
  static RedisReply adopt(redisReply* reply);

  Type type() const;
  bool is_nil() const { return type() == Type::Nil; }
  bool is_error() const { return type() == Type::Error; }
  bool is_array() const { return type() == Type::Array; }

  // String, Status or Error text (binary-safe); a LibraryError for other types.
  std::string_view text() const;
  std::string str() const { return std::string(text()); }
  long long integer() const;                  // Integer replies only
  size_t size() const;                        // Array replies only: element count
  RedisReply operator[](size_t index) const;  // Array element; out of range is a LibraryError
  // The reply as a short human-readable text, for errors and logs.
  std::string describe() const;

 private:
  RedisReply(std::shared_ptr<redisReply> root, const redisReply* node)
      : root_(std::move(root)), node_(node) {}
  [[noreturn]] void wrong_type(const char* wanted) const;
  std::shared_ptr<redisReply> root_;
  const redisReply* node_ = nullptr;
};

const char* reply_type_name(RedisReply::Type type);

}  // namespace lvrl::cache
