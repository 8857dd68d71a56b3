// CRC-32C (Castagnoli), the checksum of TensorFlow's record framing (TFRecord), which TensorBoard
// event files use. Debian ships no C++ crc32c library (there is no libcrc32c-dev), and the event files
// hold a few hundred bytes per step, so a table-driven byte-at-a-time loop is plenty.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace lvrl {

// The CRC-32C of `bytes` (reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF):
// crc32c("123456789") == 0xE3069283.
uint32_t crc32c(std::string_view bytes);

// TFRecord's masked form, ((crc >> 15) | (crc << 17)) + 0xA282EAD8: a CRC stored inside the data it
// covers would otherwise make CRCs of CRCs degenerate.
uint32_t masked_crc32c(std::string_view bytes);

}  // namespace lvrl
