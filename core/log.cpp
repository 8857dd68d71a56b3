#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "core/error.h"

namespace lvrl::log {
namespace {
int g_rank = 0;
bool g_level_explicit = false;  // set by --log-level or $LVRL_LOG_LEVEL: outranks the config

int rank_from_env() {
  const char* env = std::getenv("RANK");
  if (env == nullptr || *env == '\0') return -1;
  char* end = nullptr;
  long value = std::strtol(env, &end, 10);
  if (*end != '\0' || value < 0) {
    throw InputError({"", 0, "RANK", env}, "environment variable RANK must be a non-negative integer");
  }
  return static_cast<int>(value);
}
}  // namespace

spdlog::level::level_enum parse_level(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "trace") return spdlog::level::trace;
  if (lower == "debug") return spdlog::level::debug;
  if (lower == "info") return spdlog::level::info;
  if (lower == "warn" || lower == "warning") return spdlog::level::warn;
  if (lower == "error") return spdlog::level::err;
  if (lower == "off") return spdlog::level::off;
  throw InputError({"", 0, "log.level", name}, "expected one of trace, debug, info, warn, error, off");
}

void init(const std::string& level, int rank) {
  std::string name = level;
  const char* env = std::getenv("LVRL_LOG_LEVEL");
  if (name.empty() && env != nullptr && *env != '\0') name = env;
  g_level_explicit = !name.empty();
  if (name.empty()) name = "info";
  spdlog::level::level_enum parsed = parse_level(name);
  if (rank < 0) rank = rank_from_env();
  g_rank = std::max(rank, 0);

  auto logger = spdlog::get("lvrl");
  if (!logger) {
    logger = spdlog::stderr_color_mt("lvrl");
    spdlog::set_default_logger(logger);
  }
  logger->set_level(parsed);
  std::string prefix = rank >= 0 ? fmt::format("[rank {}] ", rank) : "";
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] " + prefix + "%v");
}

void apply_config_level(const std::string& level) {
  if (g_level_explicit) return;
  auto parsed = parse_level(level);
  if (auto logger = spdlog::get("lvrl")) logger->set_level(parsed);
}

int rank() {
  return g_rank;
}

}  // namespace lvrl::log
