// Byte-level text helpers shared by the answer extractor and the scorers: ASCII classes, UTF-8
// decoding next to a position, and "is this letter a word of its own" (docs/rollout.md, "Answer
// extraction", rule 6). Replies are UTF-8; invalid bytes are read as U+FFFD and never crash a scorer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lvrl::rollout::text {

inline bool is_ascii_letter(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}
inline bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
inline bool is_ascii_alnum(char c) {
  return is_ascii_letter(c) || is_digit(c);
}
inline bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
inline char to_upper(char c) {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}
inline char to_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

struct CodePoint {
  uint32_t value = 0;
  size_t size = 0;  // bytes; 0 past the text's edge
};
CodePoint code_point_at(std::string_view s, size_t i);      // the one starting at byte i
CodePoint code_point_before(std::string_view s, size_t i);  // the one ending just before byte i

// Letters and digits of words: ASCII alphanumerics, '_', and the letters of the Latin, Greek and
// Cyrillic scripts. CJK, kana and Hangul are not: they sit next to a Latin letter without a space
// ("答案是B", "B입니다").
bool is_word_code_point(uint32_t c);
bool word_char_before(std::string_view s, size_t i);
bool word_char_at(std::string_view s, size_t i);

// An ASCII letter at `i` that is a word of its own: not inside a word, acronym ("U.S.", "DNA"),
// identifier ("x_B", "B2", "C++"), contraction ("I'm", "A's"), hyphenation ("B-tree") or decimal.
bool is_standalone_letter(std::string_view s, size_t i);

// The ASCII word (letters and apostrophe-free) starting at `i`, lowercased; "" when none starts there.
std::string lower_word_at(std::string_view s, size_t i);
std::string ascii_lower(std::string_view s);
bool equals_lower(std::string_view s, std::string_view lower);  // ASCII case-insensitive

// The length of the first of `prefixes` that `s` holds at `i`; 0 when none.
template <typename Prefixes>
size_t starts_with_any(std::string_view s, size_t i, const Prefixes& prefixes) {
  for (std::string_view prefix : prefixes) {
    if (!prefix.empty() && s.substr(i, prefix.size()) == prefix) return prefix.size();
  }
  return 0;
}

template <typename Words>
bool contains(const Words& words, std::string_view word) {
  for (std::string_view w : words) {
    if (w == word) return true;
  }
  return false;
}

// What the choice reader ignores: Markdown emphasis and inline code (*, **, `, _B_, __B__) go; URLs
// and e-mail addresses become a space, so that no letter inside them counts.
std::string without_markup(std::string_view s);

std::string_view trim(std::string_view s);

// Just past the last place a reply declares its answer ("the answer is", "Answer:", "答案"), or npos.
size_t after_last_answer_declaration(std::string_view s);

}  // namespace lvrl::rollout::text
