// safetensors files: every tensor lvrl puts on disk (checkpoints, frame dumps, test fixtures).
//
// Layout: [u64 little-endian N][N bytes of UTF-8 JSON header][data section]. The header maps each
// tensor name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]} (offsets into the
// data section) plus an optional "__metadata__" object of strings.
//
// Reading maps the file and validates the whole header up front, as strictly as the reference
// (Rust) reader: the tensors must tile the data section exactly (no overlap, gap or trailing byte).
// A bad file is an InputError naming the file, the tensor or key, and what was expected; never a
// crash or a huge allocation. Tensors are zero-copy views of the mapping, which they keep alive.
//
// Writing pads the header with spaces so the data section starts 8-byte aligned and lays tensors
// out by element size (largest first), then name: every tensor's bytes are aligned to its element
// size, so a reader can view them in place. Files are replaced atomically (AtomicFileWriter).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.h"

namespace lvrl::safetensors {

using TensorMap = std::map<std::string, at::Tensor>;
using Metadata = std::map<std::string, std::string>;  // the header's "__metadata__"

// The dtypes read and written: BOOL U8 I8 I16 I32 I64 F16 BF16 F32 F64. Others in the format
// (U16, U32, U64, F8_*, ...) have no LibTorch 1.13 type and are InputErrors.
struct TensorInfo {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;  // [] for a 0-dim tensor
  uint64_t begin, end;         // byte offsets in the data section; end - begin = numel × element size
};

// An opened, mmap'd file whose header has been validated.
class File {
 public:
  static std::shared_ptr<File> open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // by begin offset
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // An InputError naming the file and tensor when there is no such tensor.
  const TensorInfo& info(const std::string& name) const;
  // A CPU tensor viewing the mapping (it keeps the mapping alive). Bytes not aligned to the dtype's
  // element size (files from writers that do not pad) come back as an aligned copy instead. A BOOL
  // tensor holding bytes other than 0 and 1 is an InputError: LibTorch assumes it never does.
  at::Tensor get(const std::string& name) const;
  const Metadata& metadata() const { return metadata_; }

 private:
  File() = default;

  std::string path_;
  std::shared_ptr<const MappedFile> mapping_;
  uint64_t data_start_ = 0;  // offset of the data section in the file: 8 + N
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name → position in tensors_
  Metadata metadata_;
};

// Every tensor of the file, zero-copy.
TensorMap load(const std::string& path);

// Writes `tensors` (any device, any strides: copied to contiguous CPU bytes one at a time) and
// `metadata`. A dtype outside the list above, an undefined or non-strided tensor, a name that is
// "__metadata__" or not valid UTF-8: an InputError naming the path and tensor. Crash-safe.
void save(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});

// One tensor whose bytes arrive in pieces, for payloads that need not fit in memory at once (`lvrl
// cache get` of an hour of video embeddings): the header is written first, then write() the
// numel × element size bytes in order, then commit() renames the file into place, as save() does.
// Dropped before commit() (an error on the way), it leaves no file. The layout is save()'s.
class StreamWriter {
 public:
  StreamWriter(const std::string& path, const std::string& name, at::ScalarType dtype,
               const std::vector<int64_t>& shape, const Metadata& metadata = {});
  void write(const void* data, size_t size);
  void commit();  // every byte must have arrived (a bug otherwise: asserts)
  const std::string& temporary_path() const { return out_.temporary_path(); }

 private:
  AtomicFileWriter out_;
  uint64_t expected_bytes_ = 0, written_bytes_ = 0;
};

// "F32" for at::kFloat; nullptr for a dtype the format (or lvrl) has no name for.
const char* dtype_name(at::ScalarType dtype);

}  // namespace lvrl::safetensors
