#include "core/error.h"

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>

namespace lvrl {
namespace {
std::string describe_library_failure(const std::string& library, const std::string& statement,
                                     const std::string& function, const std::string& file, int line,
                                     const std::string& detail) {
  return fmt::format("{} call failed: `{}` in {}() at {}:{}: {}", library, statement, function, file, line,
                     detail.empty() ? "(no error text)" : detail);
}

std::string describe_input(const InputWhere& where, const std::string& problem) {
  std::string out;
  if (!where.file.empty()) {
    out += where.file;
    if (where.line > 0) out += fmt::format(":{}", where.line);
    out += ": ";
  }
  if (!where.key.empty()) out += fmt::format("'{}'", where.key);
  if (!where.value.empty()) {
    out += where.key.empty() ? "" : " = ";
    out += fmt::format("'{}'", where.value);
  }
  if (!where.key.empty() || !where.value.empty()) out += ": ";
  return out + problem;
}
}  // namespace

LibraryError::LibraryError(std::string library, std::string statement, std::string function, std::string file,
                           int line, std::string detail)
    : Error(describe_library_failure(library, statement, function, file, line, detail)),
      library_(std::move(library)),
      statement_(std::move(statement)),
      detail_(std::move(detail)) {}

InputError::InputError(InputWhere where, const std::string& problem)
    : Error(describe_input(where, problem)), where_(std::move(where)), problem_(problem) {}

namespace detail {
void fail_library(const char* library, const char* statement, const char* function, const char* file,
                  int line, const std::string& detail) {
  throw LibraryError(library, statement, function, file, line, detail);
}

void fail_assert(const char* condition, const char* function, const char* file, int line,
                 const std::string& message) {
  std::fprintf(stderr, "lvrl internal error: assertion `%s` failed in %s() at %s:%d: %s\n", condition,
               function, file, line, message.c_str());
  std::abort();
}
}  // namespace detail
}  // namespace lvrl
