// Byte-level BPE (the "model" of tokenizer.json, docs/model.md#tokenizer).
//
// Vocabulary strings in tokenizer.json are written in GPT-2's byte-level alphabet (every byte mapped
// to a printable code point, `bytes_to_unicode`). We undo that mapping once at load time and run BPE
// on raw bytes, so encoding never builds the mapped strings: a piece's bytes are looked up directly.
//
// Merging is the priority-queue algorithm of the Rust reference: all adjacent pairs go into a min-heap
// keyed by (merge rank, position); the lowest is merged, its stale neighbours are skipped when popped,
// and the two new pairs are pushed — O(n log n) per piece instead of the quadratic rescan. Equal ranks
// merge leftmost first. Pieces repeat a lot in real text, so a bounded cache maps a piece's bytes to
// its ids (BpeCache); a full cache starts over rather than growing.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lvrl::model {

using TokenId = int32_t;

// GPT-2's table: printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') map to themselves, the other 68 to
// U+0100 upward in byte order.
char32_t byte_to_unicode(uint8_t byte);
int unicode_to_byte(char32_t code_point);               // -1 outside the table
std::string byte_level_encode(std::string_view bytes);  // raw bytes → vocabulary spelling (UTF-8)
// Vocabulary spelling → raw bytes; nullopt when a character is outside the table.
std::optional<std::string> byte_level_decode(std::string_view mapped);

// Piece bytes → ids, bounded; not thread-safe (the Tokenizer hands it to one caller at a time).
class BpeCache {
 public:
  explicit BpeCache(size_t max_entries = 1 << 16);
  ~BpeCache();
  BpeCache(BpeCache&&) noexcept;
  BpeCache& operator=(BpeCache&&) noexcept;
  // Appends the cached ids of `piece` to `out`; false when absent.
  bool lookup(std::string_view piece, uint64_t hash, std::vector<TokenId>& out) const;
  void insert(std::string_view piece, uint64_t hash, const TokenId* ids, size_t count);
  size_t size() const;

 private:
  struct Table;
  std::unique_ptr<Table> table_;
};

// tokenizer.json's vocabulary and merges as written there (byte-level spellings). The Tokenizer's
// loader streams them out of the file without building a JSON tree for their 300k entries.
struct BpeTables {
  std::vector<std::pair<std::string, int64_t>> vocab;       // spelling, id
  std::vector<std::pair<std::string, std::string>> merges;  // left, right; by rank
  bool has_vocab = false, has_merges = false;
};

// A merge written "left right" (older files) → the pair; InputError naming model.merges[rank].
std::pair<std::string, std::string> split_merge(const std::string& text, size_t rank,
                                                const std::string& file);

class BpeModel {
 public:
  // From tokenizer.json's "model" object (its settings) and its tables. Only byte-level BPE as Qwen
  // ships it is accepted: type "BPE", no dropout, no unk_token, no byte_fallback, no subword
  // prefix/suffix; every merge must name two vocabulary tokens whose concatenation is one too.
  // `file` names the source in errors.
  static BpeModel from_tables(const nlohmann::json& model, BpeTables tables, const std::string& file);
  // The same from a "model" object holding "vocab" and "merges" itself.
  static BpeModel from_json(const nlohmann::json& model, const std::string& file);

  BpeModel(BpeModel&&) noexcept;
  BpeModel& operator=(BpeModel&&) noexcept;
  ~BpeModel();

  // Appends the ids of one pre-tokenized piece (raw bytes, non-empty). `cache` may be null.
  void encode(std::string_view piece, std::vector<TokenId>& out, BpeCache* cache) const;

  size_t size() const;                         // ids are 0 .. size()-1 (a gap has empty bytes)
  const std::string& bytes(TokenId id) const;  // raw bytes of a vocabulary id
  bool contains(TokenId id) const;             // id names a vocabulary entry (not a gap)
  std::optional<TokenId> find(std::string_view bytes) const;
  size_t merge_count() const;

 private:
  struct Data;
  explicit BpeModel(std::unique_ptr<Data> data);
  void merge(std::string_view piece, std::vector<TokenId>& out) const;
  std::unique_ptr<Data> data_;
};

uint64_t hash_piece(std::string_view bytes);  // the cache's hash (FNV-1a, 64 bits)
uint64_t hash_continue(uint64_t hash,
                       std::string_view bytes);  // hash_piece(a + b) = hash_continue(hash_piece(a), b)

}  // namespace lvrl::model
