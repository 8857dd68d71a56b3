#include "model/tokenizer.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "model/pretokenizer.h"

namespace lvrl::model {

namespace {
using nlohmann::json;

// Added tokens by first byte, longest first: a scan finds the leftmost match and, there, the
// longest token — the leftmost-longest rule of the Rust reference's Aho-Corasick automaton.
class AddedTokenMatcher {
 public:
  void add(const std::string& content, size_t index) {
    auto& bucket = by_first_byte_[static_cast<uint8_t>(content[0])];
    bucket.push_back({content, index});
    std::stable_sort(bucket.begin(), bucket.end(),
                     [](const Entry& a, const Entry& b) { return a.content.size() > b.content.size(); });
    empty_ = false;
  }
  bool empty() const { return empty_; }
  // The first match at or after `from`: its position and the token's index; npos when none.
  std::pair<size_t, size_t> find(std::string_view text, size_t from) const {
    for (size_t pos = from; pos < text.size(); ++pos) {
      const auto& bucket = by_first_byte_[static_cast<uint8_t>(text[pos])];
      for (const Entry& entry : bucket) {
        if (text.compare(pos, entry.content.size(), entry.content) == 0) return {pos, entry.index};
      }
    }
    return {std::string_view::npos, 0};
  }

 private:
  struct Entry {
    std::string content;
    size_t index;
  };
  std::array<std::vector<Entry>, 256> by_first_byte_;
  bool empty_ = true;
};

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError({path.string(), 0, "", ""}, "cannot open the file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError({path.string(), 0, "", ""}, "cannot read the file");
  return text.str();
}

// nlohmann's SAX interface: model.vocab and model.merges stream into BpeTables, everything else
// becomes a JSON tree. A full tree of 150k vocabulary entries and 150k merges is most of the cost
// of loading otherwise (building it, then freeing it).
class TokenizerJsonReader {
 public:
  TokenizerJsonReader(BpeTables& tables, const std::string& file) : tables_(tables), file_(file) {}
  json root;

  bool null() { return value(nullptr); }
  bool boolean(bool v) { return value(v); }
  bool number_integer(int64_t v) { return in(Kind::Vocab) ? vocab_entry(v) : value(v); }
  bool number_unsigned(uint64_t v) {
    return in(Kind::Vocab) ? vocab_entry(v > INT64_MAX ? -1 : static_cast<int64_t>(v)) : value(v);
  }
  bool number_float(double v, const std::string&) { return in(Kind::Vocab) ? vocab_entry(-1) : value(v); }
  bool binary(nlohmann::json::binary_t&) { return value(nullptr); }
  bool string(std::string& s) {
    if (in(Kind::Vocab)) return vocab_entry(-1);
    if (in(Kind::Merges)) {
      tables_.merges.push_back(split_merge(s, tables_.merges.size(), file_));
      return true;
    }
    if (in(Kind::MergePair)) {
      stack_.back().pair.push_back(std::move(s));
      return true;
    }
    return value(std::move(s));
  }
  bool key(std::string& k) {
    stack_.back().key = std::move(k);
    return true;
  }
  bool start_object(size_t) {
    if (opens("vocab")) {
      tables_.has_vocab = true;
      stack_.emplace_back(Kind::Vocab, nullptr);
      return true;
    }
    if (in(Kind::Vocab) || in(Kind::Merges) || in(Kind::MergePair)) bad_table_entry();
    return open(nlohmann::json::object(), Kind::Object);
  }
  bool start_array(size_t) {
    if (opens("merges")) {
      tables_.has_merges = true;
      stack_.emplace_back(Kind::Merges, nullptr);
      return true;
    }
    if (in(Kind::Merges)) {
      stack_.emplace_back(Kind::MergePair, nullptr);
      return true;
    }
    if (in(Kind::Vocab) || in(Kind::MergePair)) bad_table_entry();
    return open(nlohmann::json::array(), Kind::Array);
  }
  bool end_object() { return close(); }
  bool end_array() {
    if (in(Kind::MergePair)) {
      auto& pair = stack_.back().pair;
      if (pair.size() != 2) bad_table_entry();
      tables_.merges.emplace_back(std::move(pair[0]), std::move(pair[1]));
    }
    return close();
  }
  bool parse_error(size_t, const std::string&, const nlohmann::json::exception& e) {
    throw InputError({file_, 0, "", ""}, fmt::format("not valid JSON: {}", e.what()));
  }

 private:
  enum class Kind { Object, Array, Vocab, Merges, MergePair };
  struct Frame {
    Frame(Kind k, nlohmann::json* n) : kind(k), node(n) {}
    Kind kind;
    nlohmann::json* node;  // the container being built (Object, Array)
    std::string key;       // the current key of an object
    std::vector<std::string> pair;
  };

  bool in(Kind kind) const { return !stack_.empty() && stack_.back().kind == kind; }
  // Whether the container starting now is root["model"][name].
  bool opens(const char* name) const {
    return stack_.size() == 2 && stack_[0].key == "model" && stack_[1].kind == Kind::Object &&
           stack_[1].key == name;
  }
  bool vocab_entry(int64_t id) {
    if (id < 0)
      throw InputError({file_, 0, "model.vocab", stack_.back().key}, "expected a non-negative integer id");
    tables_.vocab.emplace_back(std::move(stack_.back().key), id);
    return true;
  }
  [[noreturn]] void bad_table_entry() const {
    const char* key = in(Kind::Vocab) ? "model.vocab" : "model.merges";
    throw InputError(
        {file_, 0, in(Kind::Vocab) ? key : fmt::format("{}[{}]", key, tables_.merges.size()), ""},
        in(Kind::Vocab) ? "expected {token: id}" : "expected [\"left\", \"right\"] or \"left right\"");
  }
  nlohmann::json* place(nlohmann::json v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    Frame& top = stack_.back();
    if (top.kind == Kind::Object) return &((*top.node)[top.key] = std::move(v));
    top.node->push_back(std::move(v));
    return &top.node->back();
  }
  bool value(nlohmann::json v) {
    if (in(Kind::Merges) || in(Kind::MergePair)) bad_table_entry();
    place(std::move(v));
    return true;
  }
  bool open(nlohmann::json container, Kind kind) {
    nlohmann::json* node = place(std::move(container));
    stack_.emplace_back(kind, node);
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }

  BpeTables& tables_;
  const std::string& file_;
  std::vector<Frame> stack_;
};

// Reads tokenizer.json in one streaming pass; bad JSON is an InputError naming `file`.
json read_tokenizer_json(std::string_view text, const std::string& file, BpeTables& tables) {
  TokenizerJsonReader reader(tables, file);
  nlohmann::json::sax_parse(text.begin(), text.end(), &reader);
  return std::move(reader.root);
}

json parse_json(std::string_view text, const std::string& file) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    throw InputError({file, 0, "", ""}, fmt::format("not valid JSON: {}", e.what()));
  }
}

[[noreturn]] void unsupported(const std::string& file, const std::string& key, const json& value,
                              const std::string& why) {
  throw InputError({file, 0, key, value.dump()}, why);
}

bool is_null_or_absent(const json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() || it->is_null();
}

// NFC or nothing; returns whether NFC applies.
bool read_normalizer(const json& root, const std::string& file) {
  if (is_null_or_absent(root, "normalizer")) return false;
  const json& normalizer = root["normalizer"];
  if (normalizer.value("type", "") == "NFC") return true;
  if (normalizer.value("type", "") == "Sequence" && normalizer.contains("normalizers") &&
      normalizer["normalizers"].size() == 1 && normalizer["normalizers"][0].value("type", "") == "NFC") {
    return true;
  }
  unsupported(file, "normalizer", normalizer, "only the NFC normalizer (Qwen2) is implemented");
}

void check_byte_level(const json& step, const std::string& file, const std::string& key) {
  if (step.value("type", "") != "ByteLevel" || step.value("add_prefix_space", false) ||
      step.value("use_regex", true)) {
    unsupported(file, key, step,
                "expected {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}");
  }
}

// Exactly Qwen2's: Sequence[Split(the Qwen regex, Isolated), ByteLevel without its own regex].
void check_pre_tokenizer(const json& root, const std::string& file) {
  const std::string expected = fmt::format(
      "expected Sequence[Split(Regex {}, behavior Isolated, invert false), ByteLevel(add_prefix_space "
      "false, use_regex false)] (Qwen2's pre-tokenizer, the only one implemented)",
      kQwenSplitPattern);
  if (is_null_or_absent(root, "pre_tokenizer")) unsupported(file, "pre_tokenizer", nullptr, expected);
  const json& pre = root["pre_tokenizer"];
  if (pre.value("type", "") != "Sequence" || !pre.contains("pretokenizers") ||
      !pre["pretokenizers"].is_array() || pre["pretokenizers"].size() != 2) {
    unsupported(file, "pre_tokenizer", pre, expected);
  }
  const json& split = pre["pretokenizers"][0];
  if (split.value("type", "") != "Split" || !split.contains("pattern") || !split["pattern"].is_object() ||
      split["pattern"].value("Regex", "") != kQwenSplitPattern || split.value("behavior", "") != "Isolated" ||
      split.value("invert", false)) {
    unsupported(file, "pre_tokenizer.pretokenizers[0]", split, expected);
  }
  check_byte_level(pre["pretokenizers"][1], file, "pre_tokenizer.pretokenizers[1]");
}

void check_pipeline_ends(const json& root, const std::string& file) {
  if (is_null_or_absent(root, "decoder")) {
    unsupported(file, "decoder", nullptr, "expected the ByteLevel decoder");
  }
  if (root["decoder"].value("type", "") != "ByteLevel") {
    unsupported(file, "decoder", root["decoder"], "expected the ByteLevel decoder");
  }
  // A ByteLevel post-processor only trims offsets; anything else (TemplateProcessing) adds tokens.
  if (!is_null_or_absent(root, "post_processor") && root["post_processor"].value("type", "") != "ByteLevel") {
    unsupported(file, "post_processor", root["post_processor"],
                "only none or ByteLevel is implemented (no BOS/EOS templates)");
  }
  for (const char* key : {"truncation", "padding"}) {
    if (!is_null_or_absent(root, key)) unsupported(file, key, root[key], "expected null");
  }
}

AddedToken read_added_token(const json& entry, const std::string& file, const std::string& key) {
  if (!entry.is_object() || !entry.contains("id") || !entry.contains("content") ||
      !entry["content"].is_string() || !entry["id"].is_number_integer()) {
    unsupported(file, key, entry, "expected {\"id\": integer, \"content\": string, ...}");
  }
  for (const char* flag : {"single_word", "lstrip", "rstrip"}) {
    if (entry.value(flag, false)) {
      unsupported(file, key, entry, fmt::format("added tokens with {} are not implemented", flag));
    }
  }
  AddedToken token;
  token.id = entry["id"].get<TokenId>();
  token.content = entry["content"].get<std::string>();
  token.special = entry.value("special", false);
  token.normalized = entry.value("normalized", !token.special);
  if (token.content.empty() || token.id < 0) unsupported(file, key, entry, "empty content or negative id");
  return token;
}

// eos_token and friends: a string, an {"content": ...} object, or null.
std::optional<std::string> special_token_name(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content")) return (*it)["content"].get<std::string>();
  return std::nullopt;
}
}  // namespace

struct Tokenizer::Impl {
  std::string source;
  BpeModel bpe;
  bool nfc = false;
  std::vector<AddedToken> added;  // by id
  AddedTokenMatcher raw_matcher, normalized_matcher;
  std::vector<const std::string*> id_bytes;  // [vocab_size] decode bytes; nullptr: no such id
  std::vector<std::string> added_bytes;      // [added.size()]
  std::vector<bool> special;                 // [vocab_size]
  std::unordered_map<std::string, TokenId> added_by_content;
  std::optional<TokenId> eos, pad;
  mutable std::mutex cache_mutex;
  mutable BpeCache cache{1 << 16};

  explicit Impl(BpeModel model) : bpe(std::move(model)) {}

  void encode_model(std::string_view text, std::vector<TokenId>& out, BpeCache* cache_or_null) const {
    PieceScanner scanner(text);
    for (std::string_view piece; scanner.next(piece);) bpe.encode(piece, out, cache_or_null);
  }

  template <typename Segment>
  void split_added(const AddedTokenMatcher& matcher, std::string_view text, std::vector<TokenId>& out,
                   Segment&& segment) const {
    size_t pos = 0;
    while (pos < text.size()) {
      auto [match, index] = matcher.find(text, pos);
      if (match == std::string_view::npos) break;
      if (match > pos) segment(text.substr(pos, match - pos));
      out.push_back(added[index].id);
      pos = match + added[index].content.size();
    }
    if (pos < text.size()) segment(text.substr(pos));
  }

  void encode(std::string_view text, std::vector<TokenId>& out) const {
    std::unique_lock<std::mutex> lock(cache_mutex, std::try_to_lock);
    BpeCache* cache_or_null = lock.owns_lock() ? &cache : nullptr;
    std::string normalized;
    split_added(raw_matcher, text, out, [&](std::string_view segment) {
      std::string_view view = segment;
      if (nfc) {
        normalized.clear();
        append_nfc(segment, normalized);
        view = normalized;
      }
      if (normalized_matcher.empty()) {
        encode_model(view, out, cache_or_null);
      } else {
        split_added(normalized_matcher, view, out,
                    [&](std::string_view part) { encode_model(part, out, cache_or_null); });
      }
    });
  }

  size_t added_index(TokenId id) const {
    auto it = std::lower_bound(added.begin(), added.end(), id,
                               [](const AddedToken& t, TokenId value) { return t.id < value; });
    return (it != added.end() && it->id == id) ? static_cast<size_t>(it - added.begin()) : added.size();
  }
};

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::load(const std::string& dir) {
  std::filesystem::path root(dir);
  if (!std::filesystem::is_directory(root)) {
    throw InputError({dir, 0, "", ""}, "not a directory (expected a model directory holding tokenizer.json)");
  }
  std::filesystem::path config_path = root / "tokenizer_config.json";
  std::string config = std::filesystem::exists(config_path) ? read_file(config_path) : std::string();
  return from_json(read_file(root / "tokenizer.json"), config, dir);
}

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json, std::string_view config_json,
                               const std::string& source) {
  // The checks below name what they expect; a value of an unexpected JSON type (a number where a
  // string belongs) surfaces as nlohmann's type error, reported the same way.
  try {
    return build(tokenizer_json, config_json, source);
  } catch (const nlohmann::json::exception& e) {
    throw InputError({source + "/tokenizer.json (or tokenizer_config.json)", 0, "", ""},
                     fmt::format("unexpected JSON structure: {}", e.what()));
  }
}

Tokenizer Tokenizer::build(std::string_view tokenizer_json, std::string_view config_json,
                           const std::string& source) {
  const std::string file = source + "/tokenizer.json";
  const std::string config_file = source + "/tokenizer_config.json";
  BpeTables tables;
  json root = read_tokenizer_json(tokenizer_json, file, tables);
  if (!root.is_object() || !root.contains("model")) {
    throw InputError({file, 0, "model", ""}, "expected a tokenizer.json object with a \"model\"");
  }
  auto impl = std::make_shared<Impl>(BpeModel::from_tables(root["model"], std::move(tables), file));
  impl->source = source;
  impl->nfc = read_normalizer(root, file);
  check_pre_tokenizer(root, file);
  check_pipeline_ends(root, file);

  std::unordered_map<TokenId, AddedToken> added;
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    const json& list = root["added_tokens"];
    for (size_t i = 0; i < list.size(); ++i) {
      AddedToken token = read_added_token(list[i], file, fmt::format("added_tokens[{}]", i));
      added[token.id] = token;
    }
  }
  json config = config_json.empty() ? json::object() : parse_json(config_json, config_file);
  if (config.value("clean_up_tokenization_spaces", false)) {
    unsupported(config_file, "clean_up_tokenization_spaces", true, "expected false (Qwen2 never cleans up)");
  }
  if (config.value("split_special_tokens", false)) {
    unsupported(config_file, "split_special_tokens", true, "expected false: special tokens are never split");
  }
  // transformers adds the tokens of added_tokens_decoder on top of tokenizer.json's; they must agree.
  if (config.contains("added_tokens_decoder") && config["added_tokens_decoder"].is_object()) {
    for (const auto& item : config["added_tokens_decoder"].items()) {
      json entry = item.value();
      entry["id"] = std::stoll(item.key());
      std::string key = "added_tokens_decoder." + item.key();
      AddedToken token = read_added_token(entry, config_file, key);
      auto it = added.find(token.id);
      if (it == added.end()) {
        added[token.id] = token;
      } else if (it->second.content != token.content) {
        throw InputError(
            {config_file, 0, key, token.content},
            fmt::format("disagrees with tokenizer.json, where id {} is '{}'", token.id, it->second.content));
      }
    }
  }

  Impl& t = *impl;
  for (auto& [id, token] : added) t.added.push_back(token);
  std::sort(t.added.begin(), t.added.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  size_t size = t.bpe.size();
  if (!t.added.empty()) size = std::max(size, static_cast<size_t>(t.added.back().id) + 1);
  t.id_bytes.assign(size, nullptr);
  t.special.assign(size, false);
  t.added_bytes.resize(t.added.size());
  for (size_t id = 0; id < t.bpe.size(); ++id) {
    if (t.bpe.contains(static_cast<TokenId>(id))) t.id_bytes[id] = &t.bpe.bytes(static_cast<TokenId>(id));
  }
  for (size_t i = 0; i < t.added.size(); ++i) {
    const AddedToken& token = t.added[i];
    // The ByteLevel decoder maps a token's characters back to bytes when all of them are in the
    // byte table, and passes its UTF-8 through otherwise (Rust `decode_chain`).
    t.added_bytes[i] = byte_level_decode(token.content).value_or(token.content);
    t.id_bytes[token.id] = &t.added_bytes[i];
    t.special[token.id] = token.special;
    t.added_by_content[token.content] = token.id;
    (token.normalized && t.nfc ? t.normalized_matcher : t.raw_matcher).add(token.content, i);
  }
  for (auto [key, target] : {std::pair{"eos_token", &t.eos}, std::pair{"pad_token", &t.pad}}) {
    if (std::optional<std::string> name = special_token_name(config, key)) {
      auto it = t.added_by_content.find(*name);
      std::optional<TokenId> id = it != t.added_by_content.end()
                                      ? std::optional<TokenId>(it->second)
                                      : t.bpe.find(byte_level_decode(*name).value_or(""));
      if (!id) throw InputError({config_file, 0, key, *name}, "names no token of tokenizer.json");
      *target = id;
    }
  }
  return Tokenizer(std::move(impl));
}

std::vector<TokenId> Tokenizer::encode(std::string_view text) const {
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 4);
  impl_->encode(text, out);
  return out;
}

void Tokenizer::encode(std::string_view text, std::vector<TokenId>& out) const {
  impl_->encode(text, out);
}

const std::string& Tokenizer::token_bytes(TokenId id) const {
  if (!contains(id)) {
    throw InputError({impl_->source, 0, "token id", std::to_string(id)},
                     fmt::format("not in the vocabulary (ids 0..{}, with gaps if any)", vocab_size() - 1));
  }
  return *impl_->id_bytes[id];
}

std::string Tokenizer::decode(const TokenId* ids, size_t count, bool skip_special_tokens) const {
  std::string bytes;
  for (size_t i = 0; i < count; ++i) {
    const std::string& piece = token_bytes(ids[i]);
    if (!(skip_special_tokens && impl_->special[ids[i]])) bytes += piece;
  }
  std::string text;
  text.reserve(bytes.size());
  append_utf8_lossy(bytes, /*final=*/true, text);
  return text;
}

std::string Tokenizer::decode(const std::vector<TokenId>& ids, bool skip_special_tokens) const {
  return decode(ids.data(), ids.size(), skip_special_tokens);
}

std::string Tokenizer::token_string(TokenId id) const {
  const std::string& bytes = token_bytes(id);
  size_t index = impl_->added_index(id);
  return index < impl_->added.size() ? impl_->added[index].content : byte_level_encode(bytes);
}

std::optional<TokenId> Tokenizer::find(std::string_view token) const {
  auto it = impl_->added_by_content.find(std::string(token));
  if (it != impl_->added_by_content.end()) return it->second;
  std::optional<std::string> raw = byte_level_decode(token);
  if (!raw) return std::nullopt;
  return impl_->bpe.find(*raw);
}

TokenId Tokenizer::id_of(std::string_view token) const {
  std::optional<TokenId> id = find(token);
  if (!id) throw InputError({impl_->source, 0, "token", std::string(token)}, "not in the vocabulary");
  return *id;
}

bool Tokenizer::contains(TokenId id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->id_bytes.size() && impl_->id_bytes[id] != nullptr;
}
bool Tokenizer::is_special(TokenId id) const {
  return contains(id) && impl_->special[id];
}
size_t Tokenizer::vocab_size() const {
  return impl_->id_bytes.size();
}
const std::vector<AddedToken>& Tokenizer::added_tokens() const {
  return impl_->added;
}
std::optional<TokenId> Tokenizer::eos_id() const {
  return impl_->eos;
}
std::optional<TokenId> Tokenizer::pad_id() const {
  return impl_->pad;
}
const std::string& Tokenizer::source() const {
  return impl_->source;
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string StreamDecoder::push(TokenId id) {
  const std::string& bytes = tokenizer_.token_bytes(id);
  if (skip_special_tokens_ && tokenizer_.is_special(id)) return {};
  pending_ += bytes;
  std::string text;
  size_t held = append_utf8_lossy(pending_, /*final=*/false, text);
  pending_.erase(0, pending_.size() - held);
  return text;
}

std::string StreamDecoder::finish() {
  std::string text;
  append_utf8_lossy(pending_, /*final=*/true, text);
  pending_.clear();
  return text;
}

}  // namespace lvrl::model
