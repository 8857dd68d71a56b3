// Whole files, the two ways checkpoints and tensor dumps need them:
//  - MappedFile reads one by mapping it, so tensors can be zero-copy views of its bytes that keep
//    the mapping alive (shared_ptr) for as long as any of them exists;
//  - AtomicFileWriter writes one so that a reader (or a crash) never sees it half-written: bytes go
//    to PATH.tmp.<pid>, which is fsynced and renamed over PATH.
// Both report failures as InputErrors naming the file and the system's error text: the paths come
// from the user (a config, a command line).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace lvrl {

// A private mapping of a whole file, opened read-only.
//
// The mapping is copy-on-write (MAP_PRIVATE, PROT_READ|PROT_WRITE), the way torch's
// `UntypedStorage.from_file(shared=False)` maps: a caller who updates a loaded tensor in place then
// changes its own copy of those pages, never the file, instead of crashing on a read-only page.
// MAP_NORESERVE keeps a multi-GiB checkpoint from being refused under heuristic overcommit, since
// almost none of its pages are ever written.
//
// The file must not be truncated while mapped (the kernel would SIGBUS readers of the lost pages).
// AtomicFileWriter never does that: it replaces files by rename, so mappings keep the old inode.
class MappedFile {
 public:
  // An empty file is fine (data() is then nullptr). Not a regular file, missing, unreadable: an
  // InputError naming `path` and the errno text.
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  MappedFile(std::string path, uint8_t* data, size_t size);

  std::string path_;
  uint8_t* data_;  // nullptr when size_ == 0: mmap cannot map zero bytes
  size_t size_;
};

// Writes a file crash-safely. Usage: construct, write() the pieces in order, commit(). Destroyed
// without commit() (an exception on the way), it removes the temporary file and leaves PATH as it
// was. Streaming pieces (rather than one buffer) lets a checkpoint writer hold one tensor's CPU
// copy at a time.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);  // creates PATH.tmp.<pid>
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t size);
  // fsync, close, rename over PATH, fsync the directory (so the rename itself survives a crash).
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temporary_path() const { return temporary_path_; }

 private:
  std::string path_;
  std::string temporary_path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace lvrl
