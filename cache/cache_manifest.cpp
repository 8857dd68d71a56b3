#include "cache/cache_manifest.h"

#include <c10/core/ScalarType.h>
#include <fmt/format.h>

#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/safetensors.h"

namespace lvrl::cache {
namespace {
using nlohmann::json;

constexpr at::ScalarType kDtypes[] = {at::kBool, at::kByte, at::kChar,  at::kShort,    at::kInt,
                                      at::kLong, at::kHalf, at::kFloat, at::kBFloat16, at::kDouble};

// A manifest's value stands in errors as JSON, cut short: a corrupt one may be long.
std::string excerpt(const json& value) {
  std::string text = value.dump();
  return text.size() <= 80 ? text : text.substr(0, 77) + "...";
}

template <typename T>
T field(const json& object, const char* name, const std::string& source) {
  auto it = object.find(name);
  if (it == object.end()) throw InputError({source, 0, name, ""}, "the manifest has no such field");
  try {
    return it->get<T>();
  } catch (const json::exception&) {  // get<T>() of a value that is no T
    throw InputError({source, 0, name, excerpt(*it)}, "the manifest field has the wrong type");
  }
}
}  // namespace

const char* manifest_dtype_name(at::ScalarType dtype) {
  for (at::ScalarType known : kDtypes) {
    if (known == dtype) return safetensors::dtype_name(dtype);
  }
  return nullptr;
}

bool manifest_dtype_from_name(std::string_view name, at::ScalarType& dtype) {
  for (at::ScalarType known : kDtypes) {
    if (name == safetensors::dtype_name(known)) {
      dtype = known;
      return true;
    }
  }
  return false;
}

std::string CacheManifest::to_json() const {
  const char* dtype_text = manifest_dtype_name(dtype);
  // The tensor's layout, then what the encoder made it from.
  json out = {{"format", format}, {"writer", writer},     {"dtype", dtype_text == nullptr ? "?" : dtype_text},
              {"shape", shape},   {"bytes", bytes},       {"chunk_bytes", chunk_bytes},
              {"chunks", chunks}, {"checksum", checksum}, {"created_unix_ms", created_unix_ms}};
  out["grid_thw"] = metadata.grid_thw;
  out["frame_timestamps"] = metadata.frame_timestamps;
  out["encoder_fingerprint"] = metadata.encoder_fingerprint;
  out["extra"] = metadata.extra;
  return out.dump();
}

CacheManifest CacheManifest::from_json(std::string_view text, const std::string& source) {
  json in = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (in.is_discarded() || !in.is_object()) {
    throw InputError({source, 0, "", std::string(text.substr(0, 80))}, "a manifest must be a JSON object");
  }
  CacheManifest out;
  out.format = field<int>(in, "format", source);
  if (out.format != kFormat) {
    throw InputError({source, 0, "format", std::to_string(out.format)},
                     fmt::format("this lvrl reads manifest format {}", kFormat));
  }
  out.writer = field<std::string>(in, "writer", source);
  std::string dtype = field<std::string>(in, "dtype", source);
  if (!manifest_dtype_from_name(dtype, out.dtype)) {
    throw InputError({source, 0, "dtype", dtype}, "not a dtype a manifest may hold (F32, BF16, I64, ...)");
  }
  out.shape = field<std::vector<int64_t>>(in, "shape", source);
  out.bytes = field<uint64_t>(in, "bytes", source);
  out.chunk_bytes = field<uint64_t>(in, "chunk_bytes", source);
  out.chunks = field<uint64_t>(in, "chunks", source);
  out.checksum = field<std::string>(in, "checksum", source);
  out.created_unix_ms = field<int64_t>(in, "created_unix_ms", source);
  out.metadata.grid_thw = field<std::vector<int64_t>>(in, "grid_thw", source);
  out.metadata.frame_timestamps = field<std::vector<double>>(in, "frame_timestamps", source);
  out.metadata.encoder_fingerprint = field<std::string>(in, "encoder_fingerprint", source);
  out.metadata.extra = field<std::map<std::string, std::string>>(in, "extra", source);
  return out;
}

std::string CacheManifest::inconsistency() const {
  if (writer.empty()) return "no writer namespace";
  if (checksum.size() != 32) return fmt::format("checksum \"{}\" is not 32 hex digits", checksum);
  // numel × element size, without overflow: a corrupt shape must not become a huge allocation.
  uint64_t numel = 1;
  for (int64_t dim : shape) {
    if (dim < 0) return fmt::format("negative dimension {} in the shape", dim);
    if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(dim)) {
      return "the shape overflows";
    }
    numel *= static_cast<uint64_t>(dim);
  }
  const uint64_t element = c10::elementSize(dtype);
  if (numel > std::numeric_limits<uint64_t>::max() / element || numel * element != bytes) {
    return fmt::format("shape × dtype size = {} elements × {} bytes, but the manifest says {} bytes", numel,
                       element, bytes);
  }
  if (chunk_bytes == 0) return "chunk_bytes is 0";
  const uint64_t expected_chunks = bytes / chunk_bytes + (bytes % chunk_bytes != 0 ? 1 : 0);
  if (chunks != expected_chunks) {
    return fmt::format("{} bytes in chunks of {} make {} chunks, but the manifest says {}", bytes,
                       chunk_bytes, expected_chunks, chunks);
  }
  if (metadata.grid_thw.size() % 3 != 0) return "grid_thw does not hold (T, H, W) triples";
  return "";
}

uint64_t CacheManifest::chunk_size(uint64_t index) const {
  return index + 1 < chunks ? chunk_bytes : bytes - chunk_bytes * (chunks - 1);
}

}  // namespace lvrl::cache
