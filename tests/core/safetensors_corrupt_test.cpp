// Corrupt safetensors files, each built byte by byte: every one must be an InputError that names
// the file and says what is wrong with it (and, where the fault has one, the tensor or key).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/safetensors.h"
#include "tests/support/files.h"

namespace lvrl::safetensors {
namespace {

std::string u64_le(uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return bytes;
}

// [u64 length of header][header][data]
std::string file_of(const std::string& header, const std::string& data) {
  return u64_le(header.size()) + header + data;
}

std::string zeros(size_t n) {
  return std::string(n, '\0');
}

struct CorruptCase {
  std::string name;
  std::string bytes;
  std::string key;             // InputError::key(): the tensor or key at fault ("" for the file as a whole)
  std::string problem;         // a phrase the message must contain
  bool fails_on_read = false;  // the header is fine; reading the tensor must fail
};

void PrintTo(const CorruptCase& c, std::ostream* out) {
  *out << c.name;
}

const std::string kF32x1 = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";

// One F32 element under a shape of `rank` ones.
std::string f32_file_with_rank(int rank) {
  std::string dims = "1";
  for (int i = 1; i < rank; ++i) dims += ",1";
  return file_of(R"({"a": {"dtype": "F32", "shape": [)" + dims + R"(], "data_offsets": [0, 4]}})", zeros(4));
}

// A valid file cut 11 bytes into its 16-byte data section.
std::string truncated_file() {
  const std::string header = R"({"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}})";
  return file_of(header, zeros(16)).substr(0, 8 + header.size() + 5);
}

std::vector<CorruptCase> corrupt_cases() {
  return {
      {"empty_file", "", "", "file is 0 bytes, shorter than the 8-byte header length"},
      {"shorter_than_length_prefix", std::string("\x10\x00\x00", 3), "",
       "file is 3 bytes, shorter than the 8-byte"},
      {"header_length_over_100MiB", u64_le(200ull << 20) + "{}", "header length",
       "exceeds the 100 MiB limit"},
      {"header_length_huge", u64_le(~0ull) + "{}", "header length", "exceeds the 100 MiB limit"},
      {"header_length_past_eof", u64_le(100) + "{}      ", "header length",
       "header length runs past the end of the 16-byte file"},
      {"header_length_zero", u64_le(0) + zeros(4), "", "header is not valid JSON"},
      {"header_not_json", file_of(R"({"a": {"dtype": )", ""), "", "header is not valid JSON"},
      {"header_trailing_garbage", file_of(R"({} x)", ""), "", "header is not valid JSON"},
      {"header_padded_with_nul", file_of(std::string("{}") + zeros(6), ""), "",
       "NUL byte at header offset 2"},
      {"header_nul_hides_garbage", file_of(std::string("{}") + zeros(1) + "garbage", ""), "",
       "header is not valid JSON"},
      {"header_invalid_utf8", file_of("{\"a\xff\": " + kF32x1 + "}", zeros(4)), "",
       "header is not valid JSON"},
      {"header_not_object", file_of("[1, 2]", ""), "", "header must be a JSON object"},
      {"entry_not_object", file_of(R"({"a": 5})", ""), "a", "tensor entry must be an object"},
      {"missing_dtype", file_of(R"({"a": {"shape": [1], "data_offsets": [0, 4]}})", zeros(4)), "a",
       "tensor entry has no 'dtype' field"},
      {"missing_shape", file_of(R"({"a": {"dtype": "F32", "data_offsets": [0, 4]}})", zeros(4)), "a",
       "tensor entry has no 'shape' field"},
      {"missing_data_offsets", file_of(R"({"a": {"dtype": "F32", "shape": [1]}})", zeros(4)), "a",
       "tensor entry has no 'data_offsets' field"},
      {"extra_field",
       file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "offset": 3}})", zeros(4)),
       "a", "unexpected field in tensor entry"},
      {"dtype_not_string", file_of(R"({"a": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", zeros(4)),
       "a", "dtype must be a string"},
      {"unknown_dtype", file_of(R"({"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}})", zeros(4)),
       "a", "unknown dtype 'F33'"},
      {"dtype_lowercase",
       file_of(R"({"a": {"dtype": "f32", "shape": [1], "data_offsets": [0, 4]}})", zeros(4)), "a",
       "unknown dtype 'f32'"},
      {"unsupported_dtype_u16",
       file_of(R"({"a": {"dtype": "U16", "shape": [2], "data_offsets": [0, 4]}})", zeros(4)), "a",
       "unsupported dtype 'U16' for tensor 'a'"},
      {"unsupported_dtype_f8",
       file_of(R"({"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}})", zeros(4)), "w",
       "unsupported dtype 'F8_E4M3' for tensor 'w'"},
      {"negative_shape",
       file_of(R"({"a": {"dtype": "F32", "shape": [-1, 2], "data_offsets": [0, 4]}})", zeros(4)), "a",
       "shape must be an array of non-negative integers"},
      {"fractional_shape",
       file_of(R"({"a": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 4]}})", zeros(4)), "a",
       "shape must be an array of non-negative integers"},
      {"shape_not_array", file_of(R"({"a": {"dtype": "F32", "shape": 1, "data_offsets": [0, 4]}})", zeros(4)),
       "a", "shape must be an array of non-negative integers"},
      {"shape_of_strings",
       file_of(R"({"a": {"dtype": "F32", "shape": ["1"], "data_offsets": [0, 4]}})", zeros(4)), "a",
       "shape must be an array of non-negative integers"},
      {"element_count_overflow",
       file_of(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 4]}})",
               zeros(4)),
       "a", "element count of the shape overflows"},
      {"byte_count_overflow",  // numel fits int64, numel × 8 does not
       file_of(R"({"a": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 0]}})", ""), "a",
       "needs 4611686018427387904 × 8 bytes"},
      {"shape_too_deep",
       file_of(R"({"a": {"dtype": "F32", "shape": [[1]], "data_offsets": [0, 4]}})", zeros(4)), "a",
       "nests JSON deeper than a safetensors header can"},
      {"shape_rank_too_large", f32_file_with_rank(65), "a",
       "header entry holds an array of more than 64 items"},
      {"offsets_not_a_pair",
       file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", zeros(4)), "a",
       "data_offsets must be two non-negative integers"},
      {"offsets_negative",
       file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", zeros(4)), "a",
       "data_offsets must be two non-negative integers"},
      {"offsets_not_array",
       file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": "0-4"}})", zeros(4)), "a",
       "data_offsets must be two non-negative integers"},
      {"offsets_end_before_begin",
       file_of(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", zeros(8)), "a",
       "data_offsets end is before begin"},
      {"offsets_past_data_section",
       file_of(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", zeros(8)), "a",
       "data_offsets end is past the data section of 8 bytes"},
      {"truncated_data_section", truncated_file(), "a",
       "data_offsets end is past the data section of 5 bytes (file truncated?)"},
      {"size_mismatch", file_of(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", zeros(8)),
       "a", "data_offsets span 8 bytes but shape [3] of F32 needs 3 × 4 bytes"},
      {"overlapping_tensors",
       file_of(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                   "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
               zeros(12)),
       "b", "tensor overlaps tensor 'a'"},
      {"same_bytes_twice",
       file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                   "b": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})",
               zeros(4)),
       "b", "tensor overlaps tensor 'a'"},
      {"gap_between_tensors",
       file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                   "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
               zeros(12)),
       "b", "gap: bytes 4 to 8 of the data section belong to no tensor"},
      {"gap_before_first_tensor",
       file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", zeros(8)), "a",
       "gap: bytes 0 to 4"},
      {"trailing_bytes",
       file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", zeros(9)), "",
       "trailing bytes: bytes 4 to 9 of the data section belong to no tensor"},
      {"data_without_tensors", file_of("{}", zeros(4)), "", "trailing bytes: bytes 0 to 4"},
      {"metadata_not_object", file_of(R"({"__metadata__": ["format", "pt"]})", ""), "__metadata__",
       "__metadata__ must be an object of strings"},
      {"metadata_non_string_value", file_of(R"({"__metadata__": {"format": "pt", "step": 12}})", ""),
       "__metadata__.step", "__metadata__ values must be strings"},
      {"duplicate_tensor_name",
       file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                   "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
               zeros(8)),
       "a", "duplicate tensor name"},
      {"duplicate_field",
       file_of(R"({"a": {"dtype": "F32", "dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})", zeros(4)),
       "a", "duplicate field in the header entry"},
      {"bool_byte_not_0_or_1",
       file_of(R"({"m": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]}})",
               std::string("\x01\x00\x07", 3)),
       "m", "BOOL tensor holds a byte other than 0 or 1 at element 2", true},
  };
}

class SafetensorsCorruptTest : public ::testing::TestWithParam<CorruptCase> {
 protected:
  TempDir dir_{"lvrl-safetensors-corrupt"};
};

TEST_P(SafetensorsCorruptTest, IsAnInputErrorNamingFileAndProblem) {
  const CorruptCase& c = GetParam();
  const std::string path = dir_.file(c.name + ".safetensors");
  test::write_file(path, c.bytes);
  try {
    const std::shared_ptr<File> file = File::open(path);
    ASSERT_TRUE(c.fails_on_read) << "opened a corrupt file";
    for (const TensorInfo& info : file->tensors()) file->get(info.name);
    FAIL() << "read a corrupt tensor";
  } catch (const InputError& e) {
    const std::string message = e.what();
    EXPECT_EQ(e.file(), path) << message;
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(c.problem), std::string::npos)
        << "expected \"" << c.problem << "\" in: " << message;
    EXPECT_EQ(e.key(), c.key) << message;
  }
}

INSTANTIATE_TEST_SUITE_P(Safetensors, SafetensorsCorruptTest, ::testing::ValuesIn(corrupt_cases()),
                         [](const ::testing::TestParamInfo<CorruptCase>& info) { return info.param.name; });

TEST(SafetensorsCorruptFileTest, MissingFileNamesPathAndSystemError) {
  const std::string path = "/tmp/lvrl_no_such_dir_for_sure/x.safetensors";
  try {
    File::open(path);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), path);
    EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load(path), InputError);
}

// The cases above are each one fault in an otherwise valid file: this one checks that the same
// files without the fault load, so each case fails for the reason it names, not for another.
TEST(SafetensorsCorruptFileTest, FixedUpBaselinesLoad) {
  const TempDir dir("lvrl-safetensors-corrupt");
  const std::vector<std::pair<std::string, std::string>> valid = {
      {"one", file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", zeros(4))},
      {"two", file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                          "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                      zeros(8))},
      {"empty", file_of("{}", "")},
      {"metadata_only", file_of(R"({"__metadata__": {"format": "pt"}})", "")},
      {"rank_64", f32_file_with_rank(64)},
      {"zero_sized_between", file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                         "z": {"dtype": "F64", "shape": [0, 5], "data_offsets": [4, 4]},
                                         "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                                     zeros(8))},
      {"bool", file_of(R"({"m": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]}})",
                       std::string("\x01\x00\x01", 3))},
  };
  for (const auto& [name, bytes] : valid) {
    const std::string path = dir.file(name + ".safetensors");
    test::write_file(path, bytes);
    EXPECT_NO_THROW(load(path)) << name;
  }
}

}  // namespace
}  // namespace lvrl::safetensors
