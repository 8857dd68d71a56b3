#include "cache/redis_url.h"

#include <fmt/format.h>

#include <charconv>
#include <map>

#include "core/error.h"

namespace lvrl::cache {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Hides the password of a URL that failed to parse, as well as a half-parsed URL allows: everything
// between "://" and the last '@' of the authority, and any password= query value.
std::string hide_password(const std::string& url) {
  std::string out = url;
  size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    size_t start = scheme + 3;
    size_t slash = out.find('/', start);
    size_t at = out.rfind('@', slash == std::string::npos ? std::string::npos : slash);
    if (at != std::string::npos && at >= start) out.replace(start, at - start, "***");
  }
  size_t password = out.find("password=");
  if (password != std::string::npos) {
    size_t end = out.find('&', password);
    out.replace(password + 9, end == std::string::npos ? std::string::npos : end - password - 9, "***");
  }
  return out;
}

struct UrlParser {
  const std::string& url;

  [[noreturn]] void fail(const std::string& problem) const {
    throw InputError({"", 0, "redis url", hide_password(url)},
                     problem +
                         "; expected redis://[[user]:password@]host[:port][/db] or "
                         "unix:///path/to/socket[?password=P&db=N]");
  }

  std::string decode(const std::string& text) const {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] != '%') {
        out += text[i];
        continue;
      }
      if (i + 2 >= text.size()) fail("a '%' escape needs two hex digits");
      int high = hex_digit(text[i + 1]), low = hex_digit(text[i + 2]);
      if (high < 0 || low < 0) fail("a '%' escape needs two hex digits");
      out += static_cast<char>(high * 16 + low);
      i += 2;
    }
    return out;
  }

  int number(const std::string& text, const char* what, int min, int max) const {
    int value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
      fail(fmt::format("the {} '{}' is not an integer in [{}, {}]", what, text, min, max));
    }
    return value;
  }

  void parse_credentials(const std::string& text, RedisEndpoint& out) const {
    size_t colon = text.find(':');
    if (colon == std::string::npos) {
      // "redis://secret@host": the usual reading of a lone word is a password (the default user).
      out.password = decode(text);
    } else {
      out.user = decode(text.substr(0, colon));
      out.password = decode(text.substr(colon + 1));
    }
  }

  RedisEndpoint tcp(const std::string& rest) const {
    RedisEndpoint out;
    out.transport = RedisEndpoint::Transport::Tcp;
    size_t slash = rest.find('/');
    std::string authority = rest.substr(0, slash);
    if (slash != std::string::npos && slash + 1 < rest.size()) {
      out.db = number(rest.substr(slash + 1), "database number", 0, 1 << 20);
    }
    size_t at = authority.rfind('@');
    if (at != std::string::npos) {
      parse_credentials(authority.substr(0, at), out);
      authority = authority.substr(at + 1);
    }
    std::string port;
    if (!authority.empty() && authority[0] == '[') {  // [IPv6]:port
      size_t close = authority.find(']');
      if (close == std::string::npos) fail("an IPv6 host needs a closing ']'");
      out.host = authority.substr(1, close - 1);
      if (close + 1 < authority.size()) {
        if (authority[close + 1] != ':') fail("expected ':port' after the IPv6 host");
        port = authority.substr(close + 2);
      }
    } else {
      size_t colon = authority.rfind(':');
      out.host = authority.substr(0, colon);
      if (colon != std::string::npos) port = authority.substr(colon + 1);
    }
    if (out.host.empty()) fail("no host");
    if (!port.empty()) out.port = number(port, "port", 1, 65535);
    return out;
  }

  RedisEndpoint unix_socket(const std::string& rest) const {
    RedisEndpoint out;
    out.transport = RedisEndpoint::Transport::Unix;
    size_t query = rest.find('?');
    out.socket_path = decode(rest.substr(0, query));
    if (out.socket_path.empty() || out.socket_path[0] != '/') fail("the socket path must be absolute");
    if (query == std::string::npos) return out;
    std::string params = rest.substr(query + 1);
    for (size_t start = 0; start <= params.size();) {
      size_t end = params.find('&', start);
      if (end == std::string::npos) end = params.size();
      std::string item = params.substr(start, end - start);
      start = end + 1;
      if (item.empty()) continue;
      size_t equals = item.find('=');
      std::string name = item.substr(0, equals);
      std::string value = equals == std::string::npos ? "" : decode(item.substr(equals + 1));
      if (name == "password")
        out.password = value;
      else if (name == "user")
        out.user = value;
      else if (name == "db")
        out.db = number(value, "database number", 0, 1 << 20);
      else
        fail(fmt::format("unknown query parameter '{}' (known: password, user, db)", name));
    }
    return out;
  }
};

std::string encode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '_' || c == '.' || c == '~';
    out += plain ? std::string(1, static_cast<char>(c)) : fmt::format("%{:02X}", c);
  }
  return out;
}

std::string format_url(const RedisEndpoint& e, const std::string& password) {
  if (e.transport == RedisEndpoint::Transport::Unix) {
    std::string query;
    auto add = [&](const std::string& item) { query += (query.empty() ? "?" : "&") + item; };
    if (!e.user.empty()) add("user=" + encode(e.user));
    if (!e.password.empty()) add("password=" + password);
    if (e.db != 0) add(fmt::format("db={}", e.db));
    return "unix://" + e.socket_path + query;
  }
  std::string credentials;
  if (!e.password.empty() || !e.user.empty()) credentials = encode(e.user) + ":" + password + "@";
  std::string host = e.host.find(':') != std::string::npos ? "[" + e.host + "]" : e.host;
  return fmt::format("redis://{}{}:{}/{}", credentials, host, e.port, e.db);
}
}  // namespace

RedisEndpoint RedisEndpoint::parse(const std::string& url) {
  UrlParser parser{url};
  if (url.rfind("redis://", 0) == 0) return parser.tcp(url.substr(8));
  if (url.rfind("unix://", 0) == 0) return parser.unix_socket(url.substr(7));
  parser.fail("unknown scheme");
}

std::string RedisEndpoint::url() const {
  return format_url(*this, encode(password));
}

std::string RedisEndpoint::describe() const {
  return format_url(*this, password.empty() ? "" : "***");
}

}  // namespace lvrl::cache
