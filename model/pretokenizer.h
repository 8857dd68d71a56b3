// Text preparation before BPE, Qwen2 flavour (docs/model.md#tokenizer): UTF-8 decoding that survives bad
// bytes, the NFC normalizer, and the Split pre-tokenizer.
//
// The Split regex (kQwenSplitPattern; its fourth alternative begins with a space)
//   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N} | ' ?[^\s\p{L}\p{N}]+[\r\n]*'
//   | \s*[\r\n]+ | \s+(?!\S) | \s+
// needs Unicode categories and a lookahead, so std::regex cannot run it. PieceScanner is that regex
// compiled by hand: at each position it tries the alternatives in order (leftmost-first, as
// Oniguruma does in the Rust reference) with the backtracking each one needs worked out in
// pretokenizer.cpp. The categories come from utf8proc (Unicode 15.0 in utf8proc 2.8, as in Oniguruma
// 6.9.8 of the Rust `tokenizers`); `\s` is the White_Space property, as in Oniguruma. The Node.js
// reference reads categories from ICU (Unicode 17 in Node 20): characters assigned after 15.0 are
// Other here and may be letters there; the test corpus holds none.
// `(?i:...)` folds ASCII case only, as the Node.js reference and llama.cpp do (Oniguruma's Unicode
// folding would also let U+017F ſ stand for s, a difference no real text exercises).
//
// Bytes that are not valid UTF-8 are kept: each one is its own "character" of the Other class, so it
// passes through NFC untouched and reaches BPE as its byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lvrl::model {

// The exact pattern this scanner implements; a tokenizer.json with any other Split regex is rejected.
extern const char* const kQwenSplitPattern;

// What the regex distinguishes about a character.
enum class CharClass : uint8_t {
  Letter,   // \p{L}
  Number,   // \p{N}
  Newline,  // \r or \n
  Space,    // \s other than \r \n
  Other,    // everything else, including bytes that are not valid UTF-8
};

CharClass char_class(char32_t code_point);

constexpr char32_t kInvalidCodePoint = 0xFFFFFFFF;

// Decodes the UTF-8 sequence at text[pos] (pos < text.size()) into `code_point`; returns its length.
// An invalid, overlong, surrogate or truncated sequence yields length 1 and kInvalidCodePoint.
size_t decode_utf8(std::string_view text, size_t pos, char32_t& code_point);

// Appends the canonical composition (NFC) of `text` to `out`. Runs of valid UTF-8 are normalized
// separately; invalid bytes between them are copied as they are.
void append_nfc(std::string_view text, std::string& out);
std::string nfc(std::string_view text);

// Cuts text into the regex's matches, left to right; every byte belongs to exactly one piece.
//   PieceScanner scanner(text);
//   for (std::string_view piece; scanner.next(piece);) use(piece);
class PieceScanner {
 public:
  explicit PieceScanner(std::string_view text) : text_(text) {}
  bool next(std::string_view& piece);

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

// UTF-8 output for decoding: bytes that don't form valid UTF-8 become U+FFFD, one per maximal
// invalid subpart (what Python's errors="replace", Rust's from_utf8_lossy and TextDecoder do).
// Appends to `out` and returns how many trailing bytes of `bytes` were held back because they start
// a sequence that more bytes could still complete (0 when `final`: then they are replaced too).
size_t append_utf8_lossy(std::string_view bytes, bool final, std::string& out);

}  // namespace lvrl::model
