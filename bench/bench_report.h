// What every benchmark reports besides its figures: the machine, and its own section of
// bench/RESULTS.md (rewritten in place, other benchmarks' sections kept).
#pragma once

#include <dlfcn.h>
#include <fmt/format.h>

#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iterator>
#include <string>

namespace lvrl::bench {

// The first line of `path` starting with `prefix` (the text after its ':' when there is one), or the
// first line when `prefix` is empty: "model name" of /proc/cpuinfo, /proc/loadavg.
inline std::string first_line(const std::string& path, const std::string& prefix = "") {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (prefix.empty()) return line;
    if (line.rfind(prefix, 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

inline std::string cpu_model() {
  return first_line("/proc/cpuinfo", "model name");
}

// "2026-11-27 03:13 UTC": when a RESULTS.md section was measured.
inline std::string utc_now() {
  std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  return text;
}

// Replaces the section that starts with `heading` ("## name") up to the next "## ", or appends it.
inline void replace_results_section(const std::string& path, const std::string& heading,
                                    const std::string& section) {
  std::string text;
  if (std::ifstream in(path); in) text.assign(std::istreambuf_iterator<char>(in), {});
  if (text.empty()) {
    text = "# Benchmark results\n\nFigures from `tools/bench.sh`; each section belongs to one benchmark.\n";
  }
  size_t begin = text.find("\n" + heading + "\n");
  if (begin == std::string::npos) {
    if (text.back() != '\n') text += "\n";
    text += "\n" + section;
  } else {
    size_t end = text.find("\n## ", begin + 1);
    text = text.substr(0, begin + 1) + section + (end == std::string::npos ? "" : text.substr(end));
  }
  std::ofstream(path) << text;
}

// The OpenBLAS kernel set in use ("Prescott", "SkylakeX", ...), or "" when no OpenBLAS is loaded. Debian's
// OpenBLAS 0.3.21 does not know recent Xeons (family 6 model 207) and falls back to its SSE3 Prescott
// kernels, 5x slower at SGEMM; OPENBLAS_CORETYPE=SkylakeX in the environment (read when the library
// loads, so before the process starts) selects the AVX-512 ones.
inline std::string blas_core() {
  using CoreName = char* (*)();
  auto* name = reinterpret_cast<CoreName>(::dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return name != nullptr ? std::string(name()) : std::string();
}

// The environment variables that change CPU figures, as a shell prefix ("" when none is set).
inline std::string environment_prefix() {
  std::string prefix;
  for (const char* name : {"OPENBLAS_CORETYPE", "OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GLIBC_TUNABLES"}) {
    if (const char* value = std::getenv(name)) prefix += fmt::format("{}={} ", name, value);
  }
  return prefix;
}

// A kB field of /proc/self/status ("VmRSS", "VmHWM") in bytes; -1 when missing.
inline int64_t status_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::atoll(line.c_str() + field.size() + 1) * 1024;
  }
  return -1;
}

// Resets VmHWM to the current RSS (Linux >= 4.0); false where the kernel refuses.
inline bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace lvrl::bench
