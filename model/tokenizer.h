// The Qwen2 / Qwen2.5-VL tokenizer, read from a model directory's tokenizer.json (+
// tokenizer_config.json), matching Hugging Face `tokenizers` id for id (docs/model.md#tokenizer).
//
// encode: added tokens are cut out of the raw text first (leftmost, longest match; never split),
// every stretch between them is NFC-normalized, cut into pieces by the Qwen split regex
// (pretokenizer.h) and each piece's bytes go through byte-level BPE (bpe.h). No BOS/EOS is added.
// decode: the ids' bytes are concatenated and read as UTF-8, invalid sequences becoming U+FFFD.
// StreamDecoder does the same token by token, holding back a multi-byte character until it is whole.
//
// Anything in tokenizer.json this pipeline does not implement (another model type, normalizer,
// pre-tokenizer, regex, post-processor, truncation, added-token stripping) is an InputError naming
// the key and its value, never a silent approximation.
//
// Qwen2.5-VL and Qwen3 ship the same pipeline (the tests use Qwen3's files from npm): NFC, the same
// split regex, byte-level BPE with the same 151643 ids and 151387 merges, the same added tokens up to
// 151664. Qwen3 adds four non-special added tokens — 151665 <tool_response>, 151666 </tool_response>,
// 151667 <think>, 151668 </think> — so with its files "<think>" is one token, while Qwen2.5-VL's
// files spell it with BPE pieces. Everything follows from the directory loaded.
//
// A Tokenizer is cheap to copy (copies share one immutable vocabulary) and safe to use from several
// threads; the piece cache serves one encode() at a time and the others run without it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/bpe.h"

namespace lvrl::model {

struct AddedToken {
  TokenId id = 0;
  std::string content;
  bool special = false;     // dropped by decode(..., skip_special_tokens = true)
  bool normalized = false;  // matched in the NFC text rather than the raw text
};

class Tokenizer {
 public:
  // DIR/tokenizer.json, and DIR/tokenizer_config.json when it exists (special-token names, checks).
  static Tokenizer load(const std::string& dir);
  // The same from file contents; `config_json` may be empty. `source` names the files in errors.
  static Tokenizer from_json(std::string_view tokenizer_json, std::string_view config_json,
                             const std::string& source);

  std::vector<TokenId> encode(std::string_view text) const;
  void encode(std::string_view text, std::vector<TokenId>& out) const;  // appends to out

  // An id outside the vocabulary is an InputError naming it.
  std::string decode(const std::vector<TokenId>& ids, bool skip_special_tokens = false) const;
  std::string decode(const TokenId* ids, size_t count, bool skip_special_tokens = false) const;

  // The bytes decode() emits for one id, before UTF-8 repair; InputError for an unknown id.
  const std::string& token_bytes(TokenId id) const;
  // The id's spelling in tokenizer.json: the byte-level form for vocabulary ids ("Ġthe"), the
  // content for added tokens.
  std::string token_string(TokenId id) const;
  // An added token's content or a vocabulary spelling → its id.
  std::optional<TokenId> find(std::string_view token) const;
  TokenId id_of(std::string_view token) const;  // InputError naming the token when absent

  bool contains(TokenId id) const;
  bool is_special(TokenId id) const;
  size_t vocab_size() const;                            // 1 + the highest id, added tokens included
  const std::vector<AddedToken>& added_tokens() const;  // by id
  std::optional<TokenId> eos_id() const;                // from tokenizer_config.json
  std::optional<TokenId> pad_id() const;
  const std::string& source() const;  // the directory or name it was loaded from

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  static Tokenizer build(std::string_view tokenizer_json, std::string_view config_json,
                         const std::string& source);
  std::shared_ptr<const Impl> impl_;
};

// Incremental decoding for streaming generation: push() returns the text the new id completes, so
// concatenating every push() and finish() equals decode() of all the ids at once.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);
  std::string push(TokenId id);
  std::string finish();  // bytes still waiting for the rest of a character come out as U+FFFD
  size_t pending_bytes() const { return pending_.size(); }

 private:
  Tokenizer tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;
};

}  // namespace lvrl::model
