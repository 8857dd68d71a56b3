#include "cache/rollout_file.h"

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace lvrl::cache {

namespace {

constexpr char kMagic[8] = {'L', 'V', 'R', 'L', 'R', 'O', 'L', 'L'};
constexpr uint32_t kVersion = 1;

template <typename T>
void put(std::string& out, T value) {
  char bytes[sizeof(T)];
  for (size_t i = 0; i < sizeof(T); ++i)
    bytes[i] = static_cast<char>((static_cast<uint64_t>(value) >> (8 * i)) & 0xff);
  out.append(bytes, sizeof(T));
}

// Reads little-endian integers and byte runs from a buffer; running past its end is an InputError.
class Reader {
 public:
  Reader(std::string_view bytes, std::string where) : bytes_(bytes), where_(std::move(where)) {}
  template <typename T>
  T take() {
    const std::string_view raw = take_bytes(sizeof(T));
    uint64_t value = 0;
    for (size_t i = 0; i < sizeof(T); ++i)
      value |= static_cast<uint64_t>(static_cast<unsigned char>(raw[i])) << (8 * i);
    return static_cast<T>(value);
  }
  std::string_view take_bytes(uint64_t count) {
    if (count > bytes_.size() - offset_) {
      throw InputError({where_, 0, "record", fmt::format("byte {}", offset_)},
                       fmt::format("cut short: {} bytes wanted, {} left", count, bytes_.size() - offset_));
    }
    std::string_view out = bytes_.substr(offset_, count);
    offset_ += count;
    return out;
  }
  bool done() const { return offset_ == bytes_.size(); }
  size_t offset() const { return offset_; }

 private:
  std::string_view bytes_;
  std::string where_;
  size_t offset_ = 0;
};

}  // namespace

std::string pack_fields(const StreamFields& fields) {
  std::string out;
  put<uint32_t>(out, static_cast<uint32_t>(fields.size()));
  for (const auto& [name, value] : fields) {
    put<uint32_t>(out, static_cast<uint32_t>(name.size()));
    out += name;
    put<uint64_t>(out, value.size());
    out += value;
  }
  return out;
}

StreamFields unpack_fields(std::string_view bytes, const std::string& where) {
  Reader reader(bytes, where);
  StreamFields fields(reader.take<uint32_t>());
  for (auto& [name, value] : fields) {
    name = std::string(reader.take_bytes(reader.take<uint32_t>()));
    value = std::string(reader.take_bytes(reader.take<uint64_t>()));
  }
  if (!reader.done()) {
    throw InputError({where, 0, "record", fmt::format("byte {}", reader.offset())},
                     fmt::format("{} bytes past the record's last field", bytes.size() - reader.offset()));
  }
  return fields;
}

void write_rollout_file(const std::string& path, const std::vector<RolloutGroup>& groups) {
  std::string out(kMagic, sizeof(kMagic));
  put<uint32_t>(out, kVersion);
  for (const RolloutGroup& group : groups) {
    const std::string record = pack_fields(encode_rollout(group));
    put<uint64_t>(out, record.size());
    out += record;
  }
  const std::string temp = path + ".tmp";
  {
    std::ofstream file(temp, std::ios::binary | std::ios::trunc);
    file.write(out.data(), static_cast<std::streamsize>(out.size()));
    if (!file.flush()) throw InputError({path, 0, "", ""}, "cannot write the rollout file");
  }
  std::filesystem::rename(temp, path);
}

std::vector<RolloutGroup> read_rollout_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw InputError({path, 0, "", ""}, "cannot read the rollout file");
  std::stringstream buffer;
  buffer << file.rdbuf();
  const std::string bytes = buffer.str();
  Reader reader(bytes, path);
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    throw InputError({path, 0, "magic", ""}, "not a rollout file (it should start with LVRLROLL)");
  }
  reader.take_bytes(sizeof(kMagic));
  const auto version = reader.take<uint32_t>();
  if (version != kVersion) {
    throw InputError({path, 0, "version", std::to_string(version)},
                     fmt::format("this build reads version {}", kVersion));
  }
  std::vector<RolloutGroup> groups;
  while (!reader.done()) {
    const size_t offset = reader.offset();
    const std::string_view record = reader.take_bytes(reader.take<uint64_t>());
    const std::string where = fmt::format("{} (record at byte {})", path, offset);
    groups.push_back(decode_rollout(unpack_fields(record, where)));
  }
  return groups;
}

}  // namespace lvrl::cache
