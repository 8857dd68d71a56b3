#include "model/bpe.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/pretokenizer.h"

namespace lvrl::model {

namespace {
struct ByteTables {
  std::array<char32_t, 256> to_unicode{};
  std::array<int16_t, 324> to_byte{};  // every mapped code point is below U+0144
};

const ByteTables& byte_tables() {
  static const ByteTables tables = [] {
    ByteTables t;
    t.to_byte.fill(-1);
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t.to_unicode[b] = printable ? static_cast<char32_t>(b) : next++;
      t.to_byte[t.to_unicode[b]] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return tables;
}

void append_utf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {  // the table never goes past U+0143, but stay general
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

uint64_t pair_key(TokenId left, TokenId right) {
  return static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32 | static_cast<uint32_t>(right);
}

// Open addressing, linear probing: merge lookups are BPE's inner loop and std::unordered_map's
// node-per-entry layout costs a cache miss more per probe.
class MergeTable {
 public:
  struct Entry {
    uint64_t key = kEmpty;
    int32_t rank = 0;
    TokenId id = 0;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};

  void reserve(size_t count) {
    size_t capacity = 16;
    while (capacity < count * 3) capacity <<= 1;
    slots_.assign(capacity, Entry{});
    mask_ = capacity - 1;
  }
  // A pair listed twice keeps its later rank, as the Rust and Node.js references do (their maps
  // overwrite). Returns false for such a repeat.
  bool insert(uint64_t key, int32_t rank, TokenId id) {
    for (size_t i = slot(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) {
        slots_[i] = {key, rank, id};
        return false;
      }
      if (slots_[i].key == kEmpty) {
        slots_[i] = {key, rank, id};
        return true;
      }
    }
  }
  const Entry* find(uint64_t key) const {
    for (size_t i = slot(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i];
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  size_t slot(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> 29) & mask_; }
  std::vector<Entry> slots_;
  size_t mask_ = 0;
};
}  // namespace

char32_t byte_to_unicode(uint8_t byte) {
  return byte_tables().to_unicode[byte];
}

int unicode_to_byte(char32_t code_point) {
  return code_point < byte_tables().to_byte.size() ? byte_tables().to_byte[code_point] : -1;
}

std::string byte_level_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char b : bytes) append_utf8(byte_to_unicode(static_cast<uint8_t>(b)), out);
  return out;
}

namespace {
// Appends the bytes of a vocabulary spelling to `out`; false when a character is outside the table.
bool append_byte_level_decoded(std::string_view mapped, std::string& out) {
  for (size_t pos = 0; pos < mapped.size();) {
    char32_t c;
    pos += decode_utf8(mapped, pos, c);
    int byte = c == kInvalidCodePoint ? -1 : unicode_to_byte(c);
    if (byte < 0) return false;
    out.push_back(static_cast<char>(byte));
  }
  return true;
}
}  // namespace

std::optional<std::string> byte_level_decode(std::string_view mapped) {
  std::string out;
  out.reserve(mapped.size());
  if (!append_byte_level_decoded(mapped, out)) return std::nullopt;
  return out;
}

// ---- cache ----

struct BpeCache::Table {
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_offset = 0, key_size = 0, ids_offset = 0, ids_size = 0;
    bool used = false;
  };
  size_t max_entries, count = 0;
  std::vector<Slot> slots;
  size_t mask;
  std::string keys;
  std::vector<TokenId> ids;

  explicit Table(size_t max) : max_entries(std::max<size_t>(max, 1)) {
    size_t capacity = 16;
    while (capacity < max_entries * 2) capacity <<= 1;
    slots.resize(capacity);
    mask = capacity - 1;
  }
  size_t probe_start(uint64_t hash) const { return static_cast<size_t>(hash) & mask; }
};

BpeCache::BpeCache(size_t max_entries) : table_(std::make_unique<Table>(max_entries)) {}
BpeCache::~BpeCache() = default;
BpeCache::BpeCache(BpeCache&&) noexcept = default;
BpeCache& BpeCache::operator=(BpeCache&&) noexcept = default;
size_t BpeCache::size() const {
  return table_->count;
}

bool BpeCache::lookup(std::string_view piece, uint64_t hash, std::vector<TokenId>& out) const {
  const Table& t = *table_;
  for (size_t i = t.probe_start(hash);; i = (i + 1) & t.mask) {
    const Table::Slot& s = t.slots[i];
    if (!s.used) return false;
    if (s.hash == hash && s.key_size == piece.size() &&
        std::string_view(t.keys.data() + s.key_offset, s.key_size) == piece) {
      out.insert(out.end(), t.ids.begin() + s.ids_offset, t.ids.begin() + s.ids_offset + s.ids_size);
      return true;
    }
  }
}

void BpeCache::insert(std::string_view piece, uint64_t hash, const TokenId* ids, size_t count) {
  Table& t = *table_;
  if (t.count >= t.max_entries) {  // start over: the text's vocabulary moved on
    std::fill(t.slots.begin(), t.slots.end(), Table::Slot{});
    t.keys.clear();
    t.ids.clear();
    t.count = 0;
  }
  size_t i = t.probe_start(hash);
  while (t.slots[i].used) {
    if (t.slots[i].hash == hash &&
        std::string_view(t.keys.data() + t.slots[i].key_offset, t.slots[i].key_size) == piece) {
      return;
    }
    i = (i + 1) & t.mask;
  }
  t.slots[i] = {hash,
                static_cast<uint32_t>(t.keys.size()),
                static_cast<uint32_t>(piece.size()),
                static_cast<uint32_t>(t.ids.size()),
                static_cast<uint32_t>(count),
                true};
  t.keys.append(piece);
  t.ids.insert(t.ids.end(), ids, ids + count);
  ++t.count;
}

// ---- model ----

namespace {
// Vocabulary bytes → id without a std::string per lookup: open addressing over ids, keyed by the
// FNV-1a hash of their bytes, which also hashes a concatenation without building it (merges).
class BytesIndex {
 public:
  explicit BytesIndex(const std::vector<std::string>& id_bytes) : id_bytes_(&id_bytes) {}
  void reserve(size_t count) {
    size_t capacity = 16;
    while (capacity < count * 2) capacity <<= 1;
    slots_.assign(capacity, -1);
    mask_ = capacity - 1;
  }
  // False when another id has the same bytes.
  bool insert(TokenId id) {
    const std::string& bytes = (*id_bytes_)[id];
    size_t i = hash_piece(bytes) & mask_;
    for (; slots_[i] >= 0; i = (i + 1) & mask_) {
      if ((*id_bytes_)[slots_[i]] == bytes) return false;
    }
    slots_[i] = id;
    return true;
  }
  std::optional<TokenId> find(std::string_view a, std::string_view b = {}) const {
    uint64_t hash = hash_continue(hash_piece(a), b);
    for (size_t i = hash & mask_; slots_[i] >= 0; i = (i + 1) & mask_) {
      const std::string& bytes = (*id_bytes_)[slots_[i]];
      if (bytes.size() == a.size() + b.size() && bytes.compare(0, a.size(), a) == 0 &&
          bytes.compare(a.size(), b.size(), b) == 0) {
        return slots_[i];
      }
    }
    return std::nullopt;
  }

 private:
  const std::vector<std::string>* id_bytes_;
  std::vector<TokenId> slots_;
  size_t mask_ = 0;
};

constexpr uint64_t kFnvOffset = 0xCBF29CE484222325ull;
}  // namespace

uint64_t hash_continue(uint64_t hash, std::string_view bytes) {
  for (char b : bytes) hash = (hash ^ static_cast<uint8_t>(b)) * 0x100000001B3ull;
  return hash;
}

uint64_t hash_piece(std::string_view bytes) {
  return hash_continue(kFnvOffset, bytes);
}

struct BpeModel::Data {
  std::vector<std::string> id_bytes;  // [size] raw bytes per id
  std::vector<bool> present;          // [size] false for gaps in the id range
  BytesIndex index{id_bytes};
  std::array<TokenId, 256> byte_id{};
  MergeTable merges;
  size_t merge_count = 0;
  bool ignore_merges = false;
};

BpeModel::BpeModel(std::unique_ptr<Data> data) : data_(std::move(data)) {}
BpeModel::BpeModel(BpeModel&&) noexcept = default;
BpeModel& BpeModel::operator=(BpeModel&&) noexcept = default;
BpeModel::~BpeModel() = default;

size_t BpeModel::size() const {
  return data_->id_bytes.size();
}
const std::string& BpeModel::bytes(TokenId id) const {
  return data_->id_bytes.at(static_cast<size_t>(id));
}
bool BpeModel::contains(TokenId id) const {
  return id >= 0 && static_cast<size_t>(id) < data_->present.size() && data_->present[id];
}
size_t BpeModel::merge_count() const {
  return data_->merge_count;
}
std::optional<TokenId> BpeModel::find(std::string_view bytes) const {
  return data_->index.find(bytes);
}

namespace {
void expect_absent_or(const nlohmann::json& model, const char* key, const nlohmann::json& allowed,
                      const std::string& file, const char* why) {
  auto it = model.find(key);
  if (it == model.end() || it->is_null() || *it == allowed) return;
  throw InputError({file, 0, std::string("model.") + key, it->dump()}, why);
}

}  // namespace

std::pair<std::string, std::string> split_merge(const std::string& text, size_t rank,
                                                const std::string& file) {
  size_t space = text.find(' ');
  if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
    throw InputError({file, 0, fmt::format("model.merges[{}]", rank), text}, "expected \"left right\"");
  }
  return {text.substr(0, space), text.substr(space + 1)};
}

BpeModel BpeModel::from_json(const nlohmann::json& model, const std::string& file) {
  BpeTables tables;
  if (model.is_object() && model.contains("vocab")) {
    if (!model["vocab"].is_object())
      throw InputError({file, 0, "model.vocab", ""}, "expected an object {token: id}");
    tables.has_vocab = true;
    for (const auto& item : model["vocab"].items()) {
      if (!item.value().is_number_integer()) {
        throw InputError({file, 0, "model.vocab", item.key()}, "expected an integer id");
      }
      tables.vocab.emplace_back(item.key(), item.value().get<int64_t>());
    }
  }
  if (model.is_object() && model.contains("merges")) {
    if (!model["merges"].is_array()) throw InputError({file, 0, "model.merges", ""}, "expected an array");
    tables.has_merges = true;
    for (const auto& merge : model["merges"]) {
      if (merge.is_string()) {
        tables.merges.push_back(split_merge(merge.get<std::string>(), tables.merges.size(), file));
      } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
        tables.merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
      } else {
        throw InputError({file, 0, fmt::format("model.merges[{}]", tables.merges.size()), merge.dump()},
                         "expected [\"left\", \"right\"] or \"left right\"");
      }
    }
  }
  return from_tables(model, std::move(tables), file);
}

BpeModel BpeModel::from_tables(const nlohmann::json& model, BpeTables tables, const std::string& file) {
  if (!model.is_object()) throw InputError({file, 0, "model", ""}, "expected an object");
  std::string type = model.value("type", std::string("BPE"));  // old files omit it
  if (type != "BPE") {
    throw InputError({file, 0, "model.type", type},
                     "unsupported tokenizer model: only byte-level BPE (Qwen2/GPT-2 style) is implemented");
  }
  expect_absent_or(model, "dropout", nullptr, file, "BPE dropout is not supported (expected null)");
  expect_absent_or(model, "unk_token", nullptr, file, "an unk_token is not supported by byte-level BPE");
  expect_absent_or(model, "byte_fallback", false, file, "byte_fallback is not supported (expected false)");
  expect_absent_or(model, "continuing_subword_prefix", "", file, "a subword prefix is not supported");
  expect_absent_or(model, "end_of_word_suffix", "", file, "an end-of-word suffix is not supported");
  if (!tables.has_vocab) throw InputError({file, 0, "model.vocab", ""}, "missing");
  if (!tables.has_merges) throw InputError({file, 0, "model.merges", ""}, "missing");

  auto data = std::make_unique<Data>();
  data->ignore_merges = model.value("ignore_merges", false);
  int64_t max_id = -1;
  for (const auto& [spelling, id] : tables.vocab) max_id = std::max(max_id, id);
  if (max_id < 0 || max_id >= (int64_t{1} << 24)) {  // one string per id up to the largest
    throw InputError({file, 0, "model.vocab", std::to_string(max_id)}, "expected ids in [0, 2^24)");
  }
  data->id_bytes.resize(static_cast<size_t>(max_id + 1));
  data->present.resize(static_cast<size_t>(max_id + 1));
  data->index.reserve(tables.vocab.size());
  for (auto& [spelling, id] : tables.vocab) {
    if (id < 0 || data->present[id]) {
      throw InputError({file, 0, "model.vocab", spelling},
                       fmt::format("id {} is negative or used twice", id));
    }
    std::string& raw = data->id_bytes[id];
    if (!append_byte_level_decoded(spelling, raw) || raw.empty()) {
      throw InputError({file, 0, "model.vocab", spelling},
                       "not a byte-level BPE token: every character must come from the GPT-2 byte table");
    }
    if (!data->index.insert(static_cast<TokenId>(id))) {
      throw InputError({file, 0, "model.vocab", spelling}, "the same token is listed twice");
    }
    data->present[id] = true;
  }
  for (int b = 0; b < 256; ++b) {
    std::optional<TokenId> id = data->index.find(std::string(1, static_cast<char>(b)));
    if (!id) {
      throw InputError({file, 0, "model.vocab", byte_level_encode(std::string(1, static_cast<char>(b)))},
                       fmt::format("byte 0x{:02X} has no token: a byte-level vocabulary needs all 256", b));
    }
    data->byte_id[b] = *id;
  }

  data->merges.reserve(tables.merges.size());
  std::string left, right;
  for (size_t rank = 0; rank < tables.merges.size(); ++rank) {
    const auto& [left_spelling, right_spelling] = tables.merges[rank];
    left.clear();
    right.clear();
    std::optional<TokenId> left_id, right_id, merged_id;
    if (append_byte_level_decoded(left_spelling, left)) left_id = data->index.find(left);
    if (append_byte_level_decoded(right_spelling, right)) right_id = data->index.find(right);
    if (left_id && right_id) merged_id = data->index.find(left, right);
    if (!merged_id) {
      throw InputError({file, 0, fmt::format("model.merges[{}]", rank), left_spelling + " " + right_spelling},
                       "both sides and their concatenation must be vocabulary tokens");
    }
    if (data->merges.insert(pair_key(*left_id, *right_id), static_cast<int32_t>(rank), *merged_id)) {
      ++data->merge_count;
    }
  }
  return BpeModel(std::move(data));
}

void BpeModel::encode(std::string_view piece, std::vector<TokenId>& out, BpeCache* cache) const {
  LVRL_ASSERT(!piece.empty(), "BPE on an empty piece");
  if (piece.size() == 1) {
    out.push_back(data_->byte_id[static_cast<uint8_t>(piece[0])]);
    return;
  }
  constexpr size_t kMaxCachedPiece = 128;  // long runs (whitespace, base64) would only churn the cache
  bool cacheable = cache != nullptr && piece.size() <= kMaxCachedPiece;
  uint64_t hash = cacheable ? hash_piece(piece) : 0;
  if (cacheable && cache->lookup(piece, hash, out)) return;
  size_t first = out.size();
  std::optional<TokenId> whole = data_->ignore_merges ? data_->index.find(piece) : std::nullopt;
  if (whole) {
    out.push_back(*whole);
  } else {
    merge(piece, out);
  }
  if (cacheable) cache->insert(piece, hash, out.data() + first, out.size() - first);
}

void BpeModel::merge(std::string_view piece, std::vector<TokenId>& out) const {
  // Symbols form a doubly linked list over positions; a merged-away symbol gets id -1.
  thread_local std::vector<TokenId> ids;
  thread_local std::vector<int32_t> prev, next;
  thread_local std::vector<uint64_t> heap;  // (rank << 32 | left position), smallest on top
  const int32_t n = static_cast<int32_t>(piece.size());
  ids.resize(n);
  prev.resize(n);
  next.resize(n);
  heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    ids[i] = data_->byte_id[static_cast<uint8_t>(piece[i])];
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  const MergeTable& merges = data_->merges;
  auto push = [&](int32_t pos) {
    if (const MergeTable::Entry* m = merges.find(pair_key(ids[pos], ids[next[pos]]))) {
      heap.push_back(static_cast<uint64_t>(m->rank) << 32 | static_cast<uint32_t>(pos));
      std::push_heap(heap.begin(), heap.end(), std::greater<uint64_t>());
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<uint64_t>());
    uint64_t top = heap.back();
    heap.pop_back();
    auto pos = static_cast<int32_t>(top & 0xFFFFFFFFu);
    auto rank = static_cast<int32_t>(top >> 32);
    if (ids[pos] < 0 || next[pos] < 0) continue;
    int32_t right = next[pos];
    const MergeTable::Entry* m = merges.find(pair_key(ids[pos], ids[right]));
    if (m == nullptr || m->rank != rank) continue;  // stale: a neighbour changed since the push
    ids[pos] = m->id;
    ids[right] = -1;
    next[pos] = next[right];
    if (next[pos] >= 0) prev[next[pos]] = pos;
    if (prev[pos] >= 0) push(prev[pos]);
    if (next[pos] >= 0) push(pos);
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(ids[i]);
}

}  // namespace lvrl::model
