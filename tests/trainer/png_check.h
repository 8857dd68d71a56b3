// What `lvrl plot` must write, and a check that a file is a whole PNG: the signature, IHDR first
// with a width and height > 0, and an IEND chunk that ends the file (walking its chunks).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tests/support/files.h"

namespace lvrl::testing_trainer {

inline const std::vector<std::string> kPngNames = {"reward.png",   "accuracy.png",        "kl.png",
                                                   "entropy.png",  "response_length.png", "step_time.png",
                                                   "grad_norm.png"};

inline uint32_t big_endian32(const std::string& bytes, size_t at) {
  uint32_t value = 0;
  for (size_t i = 0; i < 4; ++i) value = value << 8 | static_cast<unsigned char>(bytes[at + i]);
  return value;
}

struct PngSize {
  uint32_t width = 0, height = 0;
};

// Fails the test (and returns {0, 0}) unless `path` is a whole PNG.
inline PngSize check_png(const std::string& path) {
  SCOPED_TRACE(path);
  const std::string bytes = test::read_file(path);
  const std::string signature = "\x89PNG\r\n\x1a\n";
  if (bytes.size() < 8 + 25 + 12 || bytes.compare(0, 8, signature) != 0) {
    ADD_FAILURE() << "not a PNG (" << bytes.size() << " bytes)";
    return {};
  }
  PngSize size;
  size_t at = 8;
  std::string last_type;
  for (bool first = true; at + 12 <= bytes.size(); first = false) {
    const uint32_t length = big_endian32(bytes, at);
    last_type = bytes.substr(at + 4, 4);
    if (first) {
      EXPECT_EQ(last_type, "IHDR");
      EXPECT_EQ(length, 13u);
      size = {big_endian32(bytes, at + 8), big_endian32(bytes, at + 12)};
    }
    at += 12 + static_cast<size_t>(length);  // length, type, data, crc
    if (last_type == "IEND") break;
  }
  EXPECT_EQ(last_type, "IEND");
  EXPECT_EQ(at, bytes.size()) << "IEND must end the file";
  EXPECT_GT(size.width, 0u);
  EXPECT_GT(size.height, 0u);
  return size;
}

}  // namespace lvrl::testing_trainer
