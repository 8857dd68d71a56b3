#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>
#include <utility>

#include "core/error.h"

namespace lvrl {
namespace {

std::string errno_text(int error) {
  return std::generic_category().message(error);
}

[[noreturn]] void fail_system(const std::string& path, const std::string& action, int error) {
  throw InputError({path, 0, "", ""}, "cannot " + action + ": " + errno_text(error));
}

// The directory holding `path`, for the fsync that makes a rename durable.
std::string parent_directory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Closes a descriptor on every exit from MappedFile::open.
struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};

}  // namespace

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_system(path, "open for reading", errno);
  FdCloser closer{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0) fail_system(path, "stat", errno);
  // A directory, FIFO or device has no fixed size to map (and reading a FIFO could block forever).
  if (!S_ISREG(st.st_mode)) throw InputError({path, 0, "", ""}, "not a regular file");

  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) return std::shared_ptr<const MappedFile>(new MappedFile(path, nullptr, 0));
  void* data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
  if (data == MAP_FAILED) fail_system(path, "map into memory", errno);
  // The mapping stays valid after the descriptor closes (FdCloser).
  return std::shared_ptr<const MappedFile>(new MappedFile(path, static_cast<uint8_t*>(data), size));
}

MappedFile::MappedFile(std::string path, uint8_t* data, size_t size)
    : path_(std::move(path)), data_(data), size_(size) {}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)), temporary_path_(path_ + ".tmp." + std::to_string(::getpid())) {
  fd_ = ::open(temporary_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_system(temporary_path_, "create", errno);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temporary_path_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t size) {
  LVRL_ASSERT(fd_ >= 0 && !committed_, "write() after commit() on " + path_);
  const char* bytes = static_cast<const char*>(data);
  // write() may write less than asked (signals; Linux caps one call at ~2 GiB): loop until done.
  while (size > 0) {
    const ssize_t written = ::write(fd_, bytes, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      fail_system(temporary_path_, "write", errno);
    }
    bytes += written;
    size -= static_cast<size_t>(written);
  }
}

void AtomicFileWriter::commit() {
  LVRL_ASSERT(fd_ >= 0 && !committed_, "commit() twice on " + path_);
  if (::fsync(fd_) != 0) fail_system(temporary_path_, "fsync", errno);
  const int fd = fd_;
  fd_ = -1;
  // close() reports delayed write errors on some file systems (NFS): it must succeed too.
  if (::close(fd) != 0) fail_system(temporary_path_, "close", errno);
  if (::rename(temporary_path_.c_str(), path_.c_str()) != 0) {
    fail_system(path_, "rename " + temporary_path_ + " over it", errno);
  }
  committed_ = true;

  const std::string directory = parent_directory(path_);
  const int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) fail_system(directory, "open directory to fsync it", errno);
  const int synced = ::fsync(dir_fd);
  const int sync_error = errno;
  ::close(dir_fd);
  // Some file systems cannot fsync a directory (EINVAL); the rename is then as durable as it gets.
  if (synced != 0 && sync_error != EINVAL) fail_system(directory, "fsync directory", sync_error);
}

}  // namespace lvrl
