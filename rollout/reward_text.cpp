#include "rollout/reward_text.h"

#include <algorithm>

namespace lvrl::rollout::text {

CodePoint code_point_at(std::string_view s, size_t i) {
  if (i >= s.size()) return {};
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return {lead, 1};
  size_t size = 0;
  uint32_t value = 0;
  if ((lead & 0xE0) == 0xC0) {
    size = 2;
    value = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    size = 3;
    value = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    size = 4;
    value = lead & 0x07;
  } else {
    return {0xFFFD, 1};
  }
  if (i + size > s.size()) return {0xFFFD, 1};
  for (size_t k = 1; k < size; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return {0xFFFD, 1};
    value = (value << 6) | (byte(i + k) & 0x3F);
  }
  return {value, size};
}

CodePoint code_point_before(std::string_view s, size_t i) {
  if (i == 0 || i > s.size()) return {};
  size_t start = i - 1;
  while (start > 0 && i - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  const CodePoint cp = code_point_at(s, start);
  if (start + cp.size == i) return cp;
  return {0xFFFD, 1};
}

bool is_word_code_point(uint32_t c) {
  if (c < 0x80) return is_ascii_alnum(static_cast<char>(c)) || c == '_';
  if (c >= 0xC0 && c <= 0x24F) return c != 0xD7 && c != 0xF7;  // Latin-1 letters, Latin Extended A/B
  return (c >= 0x250 && c <= 0x2AF) ||                         // IPA
         (c >= 0x300 && c <= 0x36F) ||                         // combining diacritics
         (c >= 0x370 && c <= 0x3FF) ||                         // Greek
         (c >= 0x400 && c <= 0x52F) ||                         // Cyrillic
         (c >= 0x1E00 && c <= 0x1EFF);                         // Latin Extended Additional
}

bool word_char_before(std::string_view s, size_t i) {
  const CodePoint cp = code_point_before(s, i);
  return cp.size > 0 && is_word_code_point(cp.value);
}

bool word_char_at(std::string_view s, size_t i) {
  const CodePoint cp = code_point_at(s, i);
  return cp.size > 0 && is_word_code_point(cp.value);
}

namespace {
constexpr uint32_t kRightQuote = 0x2019;  // ’, the typographic apostrophe

// An apostrophe (' or ’) that ends at `end` / starts at `begin`, with its size.
size_t apostrophe_before(std::string_view s, size_t end) {
  const CodePoint cp = code_point_before(s, end);
  return cp.value == '\'' || cp.value == kRightQuote ? cp.size : 0;
}
size_t apostrophe_at(std::string_view s, size_t begin) {
  const CodePoint cp = code_point_at(s, begin);
  return cp.value == '\'' || cp.value == kRightQuote ? cp.size : 0;
}
}  // namespace

bool is_standalone_letter(std::string_view s, size_t i) {
  if (i >= s.size() || !is_ascii_letter(s[i])) return false;
  if (i > 0) {
    if (word_char_before(s, i)) return false;
    const char before = s[i - 1];
    if (before == '\\' || before == '@' || before == '#') return false;  // \B (TeX), @B, #B
    if ((before == '-' || before == '.') && i >= 2 && is_ascii_alnum(s[i - 2]))
      return false;  // X-B, U.S, 3.B
    if (size_t n = apostrophe_before(s, i); n > 0 && i > n && is_ascii_letter(s[i - n - 1])) return false;
  }
  const size_t j = i + 1;
  if (j < s.size()) {
    if (word_char_at(s, j)) return false;
    const char after = s[j];
    if (after == '+' || after == '#' || after == '@') return false;  // C++, C#
    if ((after == '-' || after == '.') && j + 1 < s.size() && is_ascii_alnum(s[j + 1]))
      return false;  // B-tree
    if (size_t n = apostrophe_at(s, j); n > 0 && j + n < s.size() && is_ascii_letter(s[j + n])) return false;
  }
  return true;
}

std::string lower_word_at(std::string_view s, size_t i) {
  std::string word;
  while (i < s.size() && is_ascii_letter(s[i])) word += to_lower(s[i++]);
  return word;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = to_lower(c);
  return out;
}

bool equals_lower(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (to_lower(s[i]) != lower[i]) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

namespace {
bool is_link_token(std::string_view token) {
  const std::string lower = ascii_lower(token);
  if (lower.find("://") != std::string::npos || lower.rfind("www.", 0) == 0) return true;
  const size_t at = token.find('@');
  return at != std::string_view::npos && at > 0 && at + 1 < token.size() && is_ascii_alnum(token[at - 1]) &&
         is_ascii_alnum(token[at + 1]);
}

// `_B_` or `__B__` at `i`: the emphasis marks' length, else 0.
size_t underscore_emphasis(std::string_view s, size_t i) {
  for (size_t marks : {size_t{2}, size_t{1}}) {
    const size_t letter = i + marks;
    if (letter + 1 + marks > s.size()) continue;
    if (s.substr(i, marks) != std::string(marks, '_') || !is_ascii_letter(s[letter])) continue;
    if (s.substr(letter + 1, marks) != std::string(marks, '_')) continue;
    if (word_char_before(s, i) || word_char_at(s, letter + 1 + marks)) continue;
    return marks;
  }
  return 0;
}
}  // namespace

std::string without_markup(std::string_view s) {
  std::string unlinked;
  unlinked.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (is_space(s[i])) {
      unlinked += s[i++];
      continue;
    }
    size_t end = i;
    while (end < s.size() && !is_space(s[end])) ++end;
    const std::string_view token = s.substr(i, end - i);
    unlinked += is_link_token(token) ? std::string_view(" ") : token;
    i = end;
  }
  std::string out;
  out.reserve(unlinked.size());
  for (size_t i = 0; i < unlinked.size();) {
    const char c = unlinked[i];
    if (c == '*' || c == '`') {
      ++i;
    } else if (size_t marks = c == '_' ? underscore_emphasis(unlinked, i) : 0) {
      out += unlinked[i + marks];
      i += 2 * marks + 1;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

size_t after_last_answer_declaration(std::string_view s) {
  const std::string lower = ascii_lower(s);
  size_t after = std::string_view::npos;
  for (size_t at = lower.find("answer"); at != std::string::npos; at = lower.find("answer", at + 1)) {
    if (word_char_before(s, at) || word_char_at(s, at + 6)) continue;
    size_t p = at + 6;
    while (p < s.size() && (s[p] == ' ' || s[p] == '*')) ++p;
    if (p < s.size() && (s[p] == ':' || s[p] == '=')) {
      after = p + 1;
    } else if (lower.compare(p, 2, "is") == 0 && !word_char_at(s, p + 2)) {
      after = p + 2;
    }
  }
  for (size_t at = s.find("答案"); at != std::string_view::npos; at = s.find("答案", at + 1)) {
    after = std::max(after == std::string_view::npos ? 0 : after, at + std::string_view("答案").size());
  }
  return after;
}
}  // namespace lvrl::rollout::text
