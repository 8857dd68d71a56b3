#include "core/safetensors.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "core/error.h"
#include "core/mapped_file.h"

// The format stores little-endian bytes; views of the mapping are only right on a machine that is.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors views need a little-endian host");

namespace lvrl::safetensors {
namespace {

constexpr uint64_t kLengthBytes = 8;             // the u64 header length before the header
constexpr uint64_t kMaxHeaderBytes = 100 << 20;  // the reference reader's limit
// A valid header nests three deep: {name: {"shape": [dims]}}. Deeper containers are rejected while
// parsing, so a hostile header cannot build a deep tree (the parsed header then costs at most a
// small constant times its ≤ 100 MiB of text).
constexpr int kMaxContainerDepth = 2;  // nlohmann's depth of the deepest container a header opens
// Arrays inside an entry are a shape or the two offsets: a rank above this is corruption.
constexpr size_t kMaxArrayItems = 64;

struct DtypeEntry {
  const char* name;
  at::ScalarType type;
};
constexpr DtypeEntry kDtypes[] = {
    {"BOOL", at::kBool}, {"U8", at::kByte},    {"I8", at::kChar},  {"I16", at::kShort},
    {"I32", at::kInt},   {"I64", at::kLong},   {"F16", at::kHalf}, {"BF16", at::kBFloat16},
    {"F32", at::kFloat}, {"F64", at::kDouble},
};
// In the format but without a LibTorch 1.13 type: their error says "unsupported", not "unknown".
constexpr const char* kUnsupportedDtypes[] = {"U16",     "U32", "U64",     "F8_E5M2", "F8_E4M3",
                                              "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "C64"};

std::string supported_dtype_list() {
  std::string list;
  for (const DtypeEntry& entry : kDtypes) list += (list.empty() ? "" : ", ") + std::string(entry.name);
  return list;
}

// A JSON value as an error shows it: short, one line.
std::string excerpt(const nlohmann::json& value) {
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

[[noreturn]] void fail(const std::string& path, const std::string& key, const std::string& value,
                       const std::string& problem) {
  throw InputError({path, 0, key, value}, problem);
}

uint64_t read_u64_le(const uint8_t* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

// Parses the header, rejecting while it parses what nlohmann would otherwise accept silently or
// expensively: duplicate keys (it keeps the last), nesting deeper than a header has, long arrays.
nlohmann::json parse_header_json(const std::string& path, const char* begin, const char* end) {
  // nlohmann stops at a NUL as if the input ended there, so "{}\0garbage" would pass. A raw NUL is
  // never valid JSON (strings must escape it): reject it outright.
  if (const void* nul = std::memchr(begin, '\0', end - begin)) {
    fail(path, "", "",
         fmt::format("header is not valid JSON: NUL byte at header offset {}",
                     static_cast<const char*>(nul) - begin));
  }
  struct Container {
    std::set<std::string> keys;
    size_t items = 0;
  };
  std::vector<Container> open_containers;
  std::string entry_name;  // the top-level key being parsed, for messages
  auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start || event == Event::array_start) {
      if (depth > kMaxContainerDepth) {
        fail(path, entry_name, "",
             "header nests JSON deeper than a safetensors header can (an entry holds a dtype "
             "string and arrays of integers)");
      }
      open_containers.emplace_back();
    } else if (event == Event::object_end || event == Event::array_end) {
      open_containers.pop_back();
    } else if (event == Event::key) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (depth == 1) entry_name = key;
      if (!open_containers.back().keys.insert(key).second) {
        if (depth == 1) fail(path, key, "", "duplicate tensor name in the header");
        fail(path, entry_name, key, "duplicate field in the header entry");
      }
    }
    if ((event == Event::key || event == Event::value) && depth > kMaxContainerDepth &&
        ++open_containers.back().items > kMaxArrayItems) {
      fail(path, entry_name, "",
           fmt::format("header entry holds an array of more than {} items", kMaxArrayItems));
    }
    return true;
  };
  try {
    return nlohmann::json::parse(begin, end, on_event);
  } catch (const nlohmann::json::exception& e) {
    fail(path, "", "", std::string("header is not valid JSON: ") + e.what());
  }
}

bool is_non_negative_integer(const nlohmann::json& value) {
  return value.is_number_unsigned();
}

at::ScalarType parse_dtype(const std::string& path, const std::string& name, const nlohmann::json& dtype) {
  if (!dtype.is_string()) fail(path, name, excerpt(dtype), "dtype must be a string such as \"F32\"");
  const std::string& text = dtype.get_ref<const std::string&>();
  for (const DtypeEntry& entry : kDtypes) {
    if (text == entry.name) return entry.type;
  }
  for (const char* unsupported : kUnsupportedDtypes) {
    if (text == unsupported) {
      fail(path, name, text,
           fmt::format("unsupported dtype '{}' for tensor '{}' (lvrl reads {})", text, name,
                       supported_dtype_list()));
    }
  }
  fail(path, name, text,
       fmt::format("unknown dtype '{}' (expected one of {})", text, supported_dtype_list()));
}

// Also returns the element count through `numel`, checked against overflow.
std::vector<int64_t> parse_shape(const std::string& path, const std::string& name,
                                 const nlohmann::json& shape, uint64_t& numel) {
  const char* expected = "shape must be an array of non-negative integers";
  if (!shape.is_array()) fail(path, name, excerpt(shape), expected);
  std::vector<int64_t> dims;
  numel = 1;
  for (const nlohmann::json& dim : shape) {
    if (!is_non_negative_integer(dim)) fail(path, name, excerpt(shape), expected);
    const uint64_t size = dim.get<uint64_t>();
    // numel must fit int64 (LibTorch's sizes); checked after every factor, as the reference does.
    if (size > uint64_t(std::numeric_limits<int64_t>::max()) || __builtin_mul_overflow(numel, size, &numel) ||
        numel > uint64_t(std::numeric_limits<int64_t>::max())) {
      fail(path, name, excerpt(shape), "element count of the shape overflows 64 bits");
    }
    dims.push_back(int64_t(size));
  }
  return dims;
}

TensorInfo parse_entry(const std::string& path, const std::string& name, const nlohmann::json& entry,
                       uint64_t data_size) {
  if (!entry.is_object()) {
    fail(path, name, excerpt(entry), "tensor entry must be an object {dtype, shape, data_offsets}");
  }
  for (const auto& field : entry.items()) {
    if (field.key() != "dtype" && field.key() != "shape" && field.key() != "data_offsets") {
      fail(path, name, field.key(),
           "unexpected field in tensor entry (expected only dtype, shape, data_offsets)");
    }
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(field)) fail(path, name, "", fmt::format("tensor entry has no '{}' field", field));
  }

  TensorInfo info;
  info.name = name;
  info.dtype = parse_dtype(path, name, entry["dtype"]);
  uint64_t numel = 0;
  info.shape = parse_shape(path, name, entry["shape"], numel);

  const nlohmann::json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !is_non_negative_integer(offsets[0]) ||
      !is_non_negative_integer(offsets[1])) {
    fail(path, name, excerpt(offsets), "data_offsets must be two non-negative integers [begin, end]");
  }
  info.begin = offsets[0].get<uint64_t>();
  info.end = offsets[1].get<uint64_t>();
  if (info.end < info.begin) fail(path, name, excerpt(offsets), "data_offsets end is before begin");
  if (info.end > data_size) {
    fail(path, name, excerpt(offsets),
         fmt::format("data_offsets end is past the data section of {} bytes (file truncated?)", data_size));
  }
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, uint64_t(at::elementSize(info.dtype)), &nbytes) ||
      info.end - info.begin != nbytes) {
    fail(path, name, excerpt(offsets),
         fmt::format("data_offsets span {} bytes but shape {} of {} needs {} × {} bytes",
                     info.end - info.begin, excerpt(entry["shape"]),
                     entry["dtype"].get_ref<const std::string&>(), numel, at::elementSize(info.dtype)));
  }
  return info;
}

Metadata parse_metadata(const std::string& path, const nlohmann::json& metadata) {
  if (!metadata.is_object()) {
    fail(path, "__metadata__", excerpt(metadata), "__metadata__ must be an object of strings");
  }
  Metadata parsed;
  for (const auto& item : metadata.items()) {
    if (!item.value().is_string()) {
      fail(path, "__metadata__." + item.key(), excerpt(item.value()), "__metadata__ values must be strings");
    }
    parsed[item.key()] = item.value().get<std::string>();
  }
  return parsed;
}

// The tensors, sorted by offset, must tile [0, data_size) exactly, as the reference reader requires:
// an overlap would alias two tensors, a gap or tail hides bytes no tensor accounts for.
void check_tiling(const std::string& path, const std::vector<TensorInfo>& sorted, uint64_t data_size) {
  uint64_t covered = 0;  // the data section [0, covered) belongs to the tensors seen so far
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& info : sorted) {
    if (info.begin < covered) {
      fail(path, info.name, fmt::format("[{}, {}]", info.begin, info.end),
           fmt::format("tensor overlaps tensor '{}' (bytes {} to {} of the data section)", previous->name,
                       previous->begin, previous->end));
    }
    if (info.begin > covered) {
      fail(path, info.name, fmt::format("[{}, {}]", info.begin, info.end),
           fmt::format("gap: bytes {} to {} of the data section belong to no tensor", covered, info.begin));
    }
    covered = info.end;
    previous = &info;
  }
  if (covered != data_size) {
    fail(path, "", "",
         fmt::format("trailing bytes: bytes {} to {} of the data section belong to no tensor", covered,
                     data_size));
  }
}

}  // namespace

const char* dtype_name(at::ScalarType dtype) {
  for (const DtypeEntry& entry : kDtypes) {
    if (entry.type == dtype) return entry.name;
  }
  return nullptr;
}

std::shared_ptr<File> File::open(const std::string& path) {
  std::shared_ptr<File> file(new File());
  file->path_ = path;
  file->mapping_ = MappedFile::open(path);
  const uint8_t* bytes = file->mapping_->data();
  const uint64_t size = file->mapping_->size();

  if (size < kLengthBytes) {
    fail(path, "", "",
         fmt::format("file is {} bytes, shorter than the 8-byte header length of a "
                     "safetensors file",
                     size));
  }
  const uint64_t header_size = read_u64_le(bytes);
  if (header_size > kMaxHeaderBytes) {
    fail(path, "header length", std::to_string(header_size),
         "header length exceeds the 100 MiB limit (not a safetensors file, or corrupt)");
  }
  if (header_size > size - kLengthBytes) {
    fail(path, "header length", std::to_string(header_size),
         fmt::format("header length runs past the end of the {}-byte file", size));
  }
  file->data_start_ = kLengthBytes + header_size;
  const uint64_t data_size = size - file->data_start_;

  const char* header_begin = reinterpret_cast<const char*>(bytes + kLengthBytes);
  const nlohmann::json header = parse_header_json(path, header_begin, header_begin + header_size);
  if (!header.is_object()) fail(path, "", excerpt(header), "header must be a JSON object");

  for (const auto& item : header.items()) {
    if (item.key() == "__metadata__") {
      file->metadata_ = parse_metadata(path, item.value());
    } else {
      file->tensors_.push_back(parse_entry(path, item.key(), item.value(), data_size));
    }
  }
  // Empty tensors share offsets with their neighbours; end then name keeps the order total.
  std::sort(file->tensors_.begin(), file->tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  check_tiling(path, file->tensors_, data_size);
  for (size_t i = 0; i < file->tensors_.size(); ++i) file->index_[file->tensors_[i].name] = i;
  return file;
}

const TensorInfo& File::info(const std::string& name) const {
  const auto found = index_.find(name);
  if (found == index_.end()) fail(path_, name, "", "no tensor of this name in the file");
  return tensors_[found->second];
}

at::Tensor File::get(const std::string& name) const {
  const TensorInfo& info = this->info(name);
  const at::TensorOptions options = at::TensorOptions().dtype(info.dtype).device(at::kCPU);
  const uint64_t nbytes = info.end - info.begin;
  if (nbytes == 0) return at::empty(info.shape, options);
  const uint8_t* bytes = mapping_->data() + data_start_ + info.begin;

  if (info.dtype == at::kBool) {
    const uint8_t* bad = std::find_if(bytes, bytes + nbytes, [](uint8_t b) { return b > 1; });
    if (bad != bytes + nbytes) {
      fail(path_, name, std::to_string(*bad),
           fmt::format("BOOL tensor holds a byte other than 0 or 1 at element {}", bad - bytes));
    }
  }
  if (reinterpret_cast<uintptr_t>(bytes) % at::elementSize(info.dtype) != 0) {
    at::Tensor copy = at::empty(info.shape, options);
    std::memcpy(copy.data_ptr(), bytes, nbytes);
    return copy;
  }
  // The mapping is private copy-on-write (MappedFile), so a writable view never touches the file.
  std::shared_ptr<const MappedFile> keep_alive = mapping_;
  return at::from_blob(
      const_cast<uint8_t*>(bytes), info.shape, [keep_alive](void*) mutable { keep_alive.reset(); }, options);
}

TensorMap load(const std::string& path) {
  const std::shared_ptr<File> file = File::open(path);
  TensorMap tensors;
  for (const TensorInfo& info : file->tensors()) tensors.emplace(info.name, file->get(info.name));
  return tensors;
}

namespace {
// A tensor's name and dtype as save() and StreamWriter accept them.
void check_writable(const std::string& path, const std::string& name, at::ScalarType dtype) {
  if (name == "__metadata__") fail(path, name, "", "a tensor may not be named __metadata__");
  if (dtype_name(dtype) == nullptr) {
    fail(path, name, std::string(c10::toString(dtype)),
         fmt::format("dtype cannot be saved (lvrl writes {})", supported_dtype_list()));
  }
}

// The u64 length and the header, padded with spaces (JSON whitespace) so that the data section
// starts at a multiple of 8.
void write_header(AtomicFileWriter& out, const nlohmann::json& header) {
  std::string header_text;
  try {
    header_text = header.dump();  // strict: a name or value that is not UTF-8 throws
  } catch (const nlohmann::json::exception& e) {
    fail(out.path(), "", "", std::string("tensor names and metadata must be valid UTF-8: ") + e.what());
  }
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  uint8_t length[kLengthBytes];
  for (uint64_t i = 0, n = header_text.size(); i < kLengthBytes; ++i, n >>= 8) length[i] = uint8_t(n);
  out.write(length, sizeof(length));
  out.write(header_text.data(), header_text.size());
}
}  // namespace

void save(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  struct Planned {
    const std::string* name;
    const at::Tensor* tensor;
    size_t element_size;
    uint64_t nbytes;
  };
  std::vector<Planned> plan;
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) fail(path, name, "", "tensor is undefined");
    if (tensor.layout() != at::kStrided) {
      fail(path, name, c10::str(tensor.layout()), "only dense (strided) tensors can be saved");
    }
    check_writable(path, name, tensor.scalar_type());
    const uint64_t element_size = tensor.element_size();
    plan.push_back({&name, &tensor, element_size, uint64_t(tensor.numel()) * element_size});
  }
  // Largest elements first: every offset is then a multiple of each later tensor's element size.
  std::sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) {
    if (a.element_size != b.element_size) return a.element_size > b.element_size;
    return *a.name < *b.name;
  });

  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const Planned& planned : plan) {
    header[*planned.name] = {{"dtype", dtype_name(planned.tensor->scalar_type())},
                             {"shape", planned.tensor->sizes().vec()},
                             {"data_offsets", {offset, offset + planned.nbytes}}};
    offset += planned.nbytes;
  }
  AtomicFileWriter out(path);
  write_header(out, header);
  for (const Planned& planned : plan) {
    if (planned.nbytes == 0) continue;
    // One CPU copy at a time: a GPU model is never duplicated whole in host memory.
    const at::Tensor bytes = planned.tensor->detach().to(at::kCPU).resolve_conj().resolve_neg().contiguous();
    out.write(bytes.data_ptr(), planned.nbytes);
  }
  out.commit();
}

StreamWriter::StreamWriter(const std::string& path, const std::string& name, at::ScalarType dtype,
                           const std::vector<int64_t>& shape, const Metadata& metadata)
    : out_(path) {
  check_writable(path, name, dtype);
  expected_bytes_ = at::elementSize(dtype);
  for (int64_t dim : shape) {
    if (dim < 0) fail(path, name, std::to_string(dim), "a dimension must be >= 0");
    expected_bytes_ *= static_cast<uint64_t>(dim);
  }
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  header[name] = {{"dtype", dtype_name(dtype)}, {"shape", shape}, {"data_offsets", {0, expected_bytes_}}};
  write_header(out_, header);
}

void StreamWriter::write(const void* data, size_t size) {
  LVRL_ASSERT(written_bytes_ + size <= expected_bytes_,
              fmt::format("StreamWriter {}: more than the tensor's {} bytes", out_.path(), expected_bytes_));
  out_.write(data, size);
  written_bytes_ += size;
}

void StreamWriter::commit() {
  LVRL_ASSERT(written_bytes_ == expected_bytes_,
              fmt::format("StreamWriter {}: {} of the tensor's {} bytes written", out_.path(), written_bytes_,
                          expected_bytes_));
  out_.commit();
}

}  // namespace lvrl::safetensors
