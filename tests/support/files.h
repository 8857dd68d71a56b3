// Files for tests: whole-file reads and writes that fail loudly, seeded random bytes. A test's
// private directory is lvrl::TempDir (core/temp_dir.h), included here because the two go together.
#pragma once

#include <cstdint>
#include <string>

#include "core/temp_dir.h"

namespace lvrl::test {

// The file's bytes; std::runtime_error naming the path when it cannot be read.
std::string read_file(const std::string& path);
// Replaces the file with `bytes`; std::runtime_error naming the path when it cannot be written.
void write_file(const std::string& path, const std::string& bytes);
// `size` bytes from a generator seeded with `seed`: the same bytes on every run and machine.
std::string random_bytes(size_t size, uint64_t seed);

}  // namespace lvrl::test
