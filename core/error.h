// Errors: one way to fail per kind of failure.
//  - LibraryError: a call into FFmpeg, hiredis, c10d, CUDA or NCCL failed. Raised only through the
//    check macros below and their per-library wrappers (video/av_check.h, cache/redis_check.h), which
//    all report the statement, the function, file:line and the library's own error text.
//  - InputError: the user gave us a bad file, key or value; it carries them so callers and tests can
//    see exactly what was wrong.
//  - Internal invariants use LVRL_ASSERT: a bug, so it aborts with a message.
#pragma once

#include <stdexcept>
#include <string>

namespace lvrl {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class LibraryError : public Error {
 public:
  LibraryError(std::string library, std::string statement, std::string function, std::string file, int line,
               std::string detail);
  const std::string& library() const { return library_; }
  const std::string& statement() const { return statement_; }
  const std::string& detail() const { return detail_; }

 private:
  std::string library_, statement_, detail_;
};

// Where a bad input was found. Every field is optional; the message shows those that are set.
struct InputWhere {
  std::string file;
  int line = 0;  // 1-based; 0 = not known
  std::string key;
  std::string value;
};

class InputError : public Error {
 public:
  InputError(InputWhere where, const std::string& problem);
  const std::string& file() const { return where_.file; }
  int line() const { return where_.line; }
  const std::string& key() const { return where_.key; }
  const std::string& value() const { return where_.value; }
  const std::string& problem() const { return problem_; }

 private:
  InputWhere where_;
  std::string problem_;
};

namespace detail {
[[noreturn]] void fail_library(const char* library, const char* statement, const char* function,
                               const char* file, int line, const std::string& detail);
[[noreturn]] void fail_assert(const char* condition, const char* function, const char* file, int line,
                              const std::string& message);
}  // namespace detail
}  // namespace lvrl

// The one generator of library checks: evaluates `statement` once into `lvrl_rc`; when `ok` (an
// expression over lvrl_rc) is false, throws LibraryError with `error_text` (also over lvrl_rc).
#define LVRL_CHECK_GEN(library, statement, ok, error_text)                                           \
  do {                                                                                               \
    auto&& lvrl_rc = (statement);                                                                    \
    if (!(ok)) {                                                                                     \
      ::lvrl::detail::fail_library(library, #statement, __func__, __FILE__, __LINE__, (error_text)); \
    }                                                                                                \
  } while (0)

// c10d reports failures by exception (often only from work->wait()): c10::Error from c10d itself,
// std::runtime_error from Gloo and the stores; same report as the others. Anything else (no
// memory, a logic error) is not c10d's refusal and goes up as it is. Expands where c10 is included.
#define LVRL_C10D_CHECK(statement)                                                                   \
  do {                                                                                               \
    try {                                                                                            \
      statement;                                                                                     \
    } catch (const ::lvrl::Error&) {                                                                 \
      throw;                                                                                         \
    } catch (const ::c10::Error& lvrl_e) {                                                           \
      ::lvrl::detail::fail_library("c10d", #statement, __func__, __FILE__, __LINE__, lvrl_e.what()); \
    } catch (const std::runtime_error& lvrl_e) {                                                     \
      ::lvrl::detail::fail_library("c10d", #statement, __func__, __FILE__, __LINE__, lvrl_e.what()); \
    }                                                                                                \
  } while (0)

#ifdef LVRL_WITH_CUDA
#include <cuda_runtime_api.h>
#include <nccl.h>
#define LVRL_CUDA_CHECK(statement) \
  LVRL_CHECK_GEN("CUDA", statement, lvrl_rc == cudaSuccess, cudaGetErrorString(lvrl_rc))
#define LVRL_NCCL_CHECK(statement) \
  LVRL_CHECK_GEN("NCCL", statement, lvrl_rc == ncclSuccess, ncclGetErrorString(lvrl_rc))
#endif

// An internal invariant: a failure is a bug in lvrl, never the user's input.
#define LVRL_ASSERT(condition, message)                                                 \
  do {                                                                                  \
    if (!(condition)) {                                                                 \
      ::lvrl::detail::fail_assert(#condition, __func__, __FILE__, __LINE__, (message)); \
    }                                                                                   \
  } while (0)
