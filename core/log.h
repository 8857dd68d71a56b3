// Logging on spdlog, to stderr (stdout is for command output such as JSON). Every line carries the
// rank when the process is one rank of several ("[rank 3]"), so interleaved multi-rank logs read.
//
//   LVRL_INFO("decoded {} frames", n);        // every rank
//   LVRL_INFO0("step {} loss {:.4f}", s, l);  // rank 0 only
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace lvrl::log {

// Sets level and rank prefix. `level` empty → $LVRL_LOG_LEVEL, else "info". `rank` < 0 → $RANK
// (torchrun's convention), else no prefix. A bad level name is an InputError naming it.
void init(const std::string& level = "", int rank = -1);

// A job's config sets the level (log.level) unless --log-level or $LVRL_LOG_LEVEL already did.
void apply_config_level(const std::string& level);

// trace|debug|info|warn|error|off, case-insensitive; anything else is an InputError.
spdlog::level::level_enum parse_level(const std::string& name);

// This process's rank (0 when not launched as one of several).
int rank();

}  // namespace lvrl::log

#define LVRL_TRACE(...) SPDLOG_TRACE(__VA_ARGS__)
#define LVRL_DEBUG(...) spdlog::debug(__VA_ARGS__)
#define LVRL_INFO(...) spdlog::info(__VA_ARGS__)
#define LVRL_WARN(...) spdlog::warn(__VA_ARGS__)
#define LVRL_ERROR(...) spdlog::error(__VA_ARGS__)

#define LVRL_RANK0(call)                \
  do {                                  \
    if (::lvrl::log::rank() == 0) call; \
  } while (0)
#define LVRL_INFO0(...) LVRL_RANK0(spdlog::info(__VA_ARGS__))
#define LVRL_WARN0(...) LVRL_RANK0(spdlog::warn(__VA_ARGS__))
