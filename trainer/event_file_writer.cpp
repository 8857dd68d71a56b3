#include "trainer/event_file_writer.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "core/error.h"
#include "trainer/crc32c.h"
#include "trainer/tensorboard_event.pb.h"

namespace lvrl {
namespace {

constexpr const char* kFileVersion = "brain.Event:2";

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

void append_little_endian(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFFu));
}

}  // namespace

EventFileWriter::EventFileWriter(const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error)
    throw InputError({dir, 0, "", ""}, "cannot create the TensorBoard directory: " + error.message());
  const std::string base =
      fmt::format("{}/events.out.tfevents.{}.{}", dir, static_cast<int64_t>(std::time(nullptr)), host_name());
  // "x": fails when the file exists, so two writers never share a file.
  for (int attempt = 0; file_ == nullptr; ++attempt) {
    path_ = attempt == 0 ? base : fmt::format("{}.{}", base, attempt);
    file_ = std::fopen(path_.c_str(), "wbx");
    if (file_ == nullptr && errno != EEXIST) {
      throw InputError({path_, 0, "", ""},
                       std::string("cannot create the event file: ") + std::strerror(errno));
    }
  }
  tensorboard::Event event;
  event.set_wall_time(static_cast<double>(std::time(nullptr)));
  event.set_file_version(kFileVersion);
  write_record(event.SerializeAsString());
}

EventFileWriter::~EventFileWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void EventFileWriter::write_scalars(int64_t step, const std::map<std::string, double>& scalars,
                                    double wall_time) {
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  tensorboard::Summary* summary = event.mutable_summary();
  for (const auto& [tag, value] : scalars) {
    tensorboard::SummaryValue* entry = summary->add_value();
    entry->set_tag(tag);
    entry->set_simple_value(static_cast<float>(value));
  }
  write_record(event.SerializeAsString());
}

void EventFileWriter::write_restart(int64_t step, double wall_time) {
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  event.mutable_session_log()->set_status(tensorboard::SessionLog::START);
  write_record(event.SerializeAsString());
}

void EventFileWriter::write_record(const std::string& data) {
  std::string header;
  append_little_endian(header, data.size(), 8);
  append_little_endian(header, masked_crc32c(header), 4);
  std::string footer;
  append_little_endian(footer, masked_crc32c(data), 4);
  const bool written = std::fwrite(header.data(), 1, header.size(), file_) == header.size() &&
                       std::fwrite(data.data(), 1, data.size(), file_) == data.size() &&
                       std::fwrite(footer.data(), 1, footer.size(), file_) == footer.size() &&
                       std::fflush(file_) == 0;
  if (!written)
    throw InputError({path_, 0, "", ""}, std::string("cannot write the event file: ") + std::strerror(errno));
}

}  // namespace lvrl
