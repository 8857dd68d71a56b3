// Scalars as a TensorBoard event file, so that `tensorboard --logdir RUN` charts a run with no Python
// on the training side. The file is a sequence of TFRecords:
//   uint64 length (little-endian) | uint32 masked crc32c(length) | data | uint32 masked crc32c(data)
// where each data is one serialized Event (trainer/tensorboard_event.proto). The first record says
// "brain.Event:2" (the version TensorBoard expects); then one Event per step holding every scalar.
// Records are flushed per step, so a crash loses at most the step being written; a torn last record
// is skipped by TensorBoard's reader.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

namespace lvrl {

class EventFileWriter {
 public:
  // Creates <dir>/events.out.tfevents.<unix seconds>.<hostname> (with a ".N" suffix when that name is
  // taken: two writers started in the same second), making `dir` if needed. An InputError naming the
  // path when it cannot be created.
  explicit EventFileWriter(const std::string& dir);
  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  // One Event at `step` with a simple_value (float32, as TensorBoard stores scalars) per entry.
  void write_scalars(int64_t step, const std::map<std::string, double>& scalars, double wall_time);
  // SessionLog START at `step`: TensorBoard then discards the events of earlier files at steps >=
  // `step` — what a run resumed from a checkpoint needs, since the old files still hold the steps
  // after that checkpoint.
  void write_restart(int64_t step, double wall_time);

  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);

  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace lvrl
