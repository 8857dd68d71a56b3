// A private temporary directory, removed with its contents when the object goes: for rendezvous
// files of local ranks, a private redis-server's socket, a test's files. mkdtemp makes it (mode
// 0700, a name nobody else gets), under $TMPDIR or /tmp.
#pragma once

#include <string>

namespace lvrl {

class TempDir {
 public:
  // <temp>/<prefix>-XXXXXX, as a canonical path (no symlinks: paths built on it compare equal to
  // what the kernel reports). An InputError naming the temp directory when it cannot be made.
  explicit TempDir(const std::string& prefix = "lvrl");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }  // a path inside

 private:
  std::string path_;
};

}  // namespace lvrl
