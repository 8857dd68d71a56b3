// Where a Redis server is and how to log in: parsed from the URLs users put in configs.
//
//   redis://[[user]:password@]host[:port][/db]      TCP (port 6379, db 0 by default; [::1] for IPv6)
//   unix:///path/to/redis.sock[?password=P&db=N&user=U]
//
// Passwords are percent-decoded (so '@', ':' and '/' can be written as %40, %3A, %2F) and never
// printed: describe() shows them as "***", so URLs can go into logs and error messages.
#pragma once

#include <string>

namespace lvrl::cache {

struct RedisEndpoint {
  enum class Transport { Tcp, Unix };
  Transport transport = Transport::Tcp;
  std::string host = "127.0.0.1";  // Tcp
  int port = 6379;                 // Tcp
  std::string socket_path;         // Unix
  std::string user;                // empty: AUTH with the password only (the "default" user)
  std::string password;            // empty: no AUTH
  int db = 0;                      // SELECTed after every (re)connect

  // An InputError naming the URL (password hidden) and what was expected for anything malformed.
  static RedisEndpoint parse(const std::string& url);

  // The URL that parse() reads back; the password percent-encoded.
  std::string url() const;
  // The URL with the password replaced by "***": for logs and errors.
  std::string describe() const;
};

}  // namespace lvrl::cache
