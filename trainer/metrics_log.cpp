#include "trainer/metrics_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <system_error>

#include "core/error.h"
#include "core/log.h"
#include "core/mapped_file.h"

namespace lvrl::trainer {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail_system(const std::string& path, const std::string& action, int error) {
  throw InputError({path, 0, "", ""}, "cannot " + action + ": " + std::strerror(error));
}

// The lines of steps ≤ resumed_step; a line that is not an object with an integer step (a write a
// crash cut short) goes too.
std::string lines_kept(const std::string& path, int64_t resumed_step, int64_t* dropped) {
  const std::shared_ptr<const MappedFile> mapping = MappedFile::open(path);
  std::istringstream in(std::string(reinterpret_cast<const char*>(mapping->data()), mapping->size()));
  std::string kept, line;
  *dropped = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const nlohmann::json metrics = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool keep = metrics.is_object() && metrics.contains("step") &&
                      metrics["step"].is_number_integer() && metrics["step"].get<int64_t>() <= resumed_step;
    if (keep) {
      kept += line + "\n";
    } else {
      ++*dropped;
    }
  }
  return kept;
}

}  // namespace

MetricsLog::MetricsLog(const std::string& run_dir, int64_t resumed_step)
    : path_((fs::path(run_dir) / kMetricsFileName).string()) {
  std::error_code error;
  fs::create_directories(run_dir, error);
  if (error)
    throw InputError({run_dir, 0, "run.dir", run_dir}, "cannot create the run directory: " + error.message());
  if (fs::exists(path_, error)) {
    int64_t dropped = 0;
    const std::string kept = lines_kept(path_, resumed_step, &dropped);
    if (dropped > 0) {
      LVRL_INFO("{}: dropping {} lines of steps after {} (the run resumes from there)", path_, dropped,
                resumed_step);
      AtomicFileWriter out(path_);
      out.write(kept.data(), kept.size());
      out.commit();
    }
  }
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_system(path_, "open for appending", errno);
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::append(const nlohmann::json& metrics) {
  LVRL_ASSERT(metrics.is_object() && metrics.contains("step") && metrics["step"].is_number_integer(),
              "a metrics line is an object with an integer step");
  const std::string line = metrics.dump() + "\n";
  size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_system(path_, "append to", errno);
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd_) != 0) fail_system(path_, "fsync", errno);
}

}  // namespace lvrl::trainer
