#include "model/pretokenizer.h"

#include <utf8proc.h>

#include <array>
#include <cstdlib>
#include <memory>

#include "core/error.h"

namespace lvrl::model {

const char* const kQwenSplitPattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

namespace {

bool is_white_space(char32_t c) {  // Unicode's White_Space property (PropList.txt)
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

CharClass classify(char32_t c) {
  if (c == '\r' || c == '\n') return CharClass::Newline;
  if (is_white_space(c)) return CharClass::Space;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return CharClass::Letter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return CharClass::Number;
    default:
      return CharClass::Other;
  }
}

// The Basic Multilingual Plane in one 64 KiB table: classification is the scanner's inner loop.
const std::array<CharClass, 0x10000>& bmp_classes() {
  static const std::unique_ptr<std::array<CharClass, 0x10000>> table = [] {
    auto t = std::make_unique<std::array<CharClass, 0x10000>>();
    for (char32_t c = 0; c < 0x10000; ++c) (*t)[c] = classify(c);
    return t;
  }();
  return *table;
}

struct Char {
  char32_t code_point;
  CharClass cls;
  uint32_t size;  // bytes
};

class Reader {
 public:
  explicit Reader(std::string_view text) : text_(text), bmp_(bmp_classes()) {}
  size_t size() const { return text_.size(); }
  Char at(size_t pos) const {
    auto byte = static_cast<unsigned char>(text_[pos]);
    if (byte < 0x80) return {byte, bmp_[byte], 1};
    char32_t c;
    size_t n = decode_utf8(text_, pos, c);
    if (c == kInvalidCodePoint) return {c, CharClass::Other, 1};
    return {c, c < 0x10000 ? bmp_[c] : classify(c), static_cast<uint32_t>(n)};
  }
  // End of the run of characters of class `cls` starting at pos.
  size_t run_end(size_t pos, CharClass cls) const {
    while (pos < text_.size()) {
      Char ch = at(pos);
      if (ch.cls != cls) break;
      pos += ch.size;
    }
    return pos;
  }

 private:
  std::string_view text_;
  const std::array<CharClass, 0x10000>& bmp_;
};

char32_t ascii_lower(char32_t c) {
  return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

// Length of `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at pos (text[pos] == '\''), 0 when none matches.
size_t contraction_length(const Reader& r, size_t pos) {
  size_t p1 = pos + 1;
  if (p1 >= r.size()) return 0;
  char32_t c1 = ascii_lower(r.at(p1).code_point);
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if (c1 != 'r' && c1 != 'v' && c1 != 'l') return 0;
  size_t p2 = p1 + 1;
  if (p2 >= r.size()) return 0;
  char32_t c2 = ascii_lower(r.at(p2).code_point);
  if ((c1 == 'r' || c1 == 'v') && c2 == 'e') return 3;
  if (c1 == 'l' && c2 == 'l') return 3;
  return 0;
}

// End of the match starting at pos (pos < size).
size_t match_end(const Reader& r, size_t pos) {
  const size_t size = r.size();
  Char first = r.at(pos);
  size_t after_first = pos + first.size;

  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (first.code_point == '\'') {
    if (size_t n = contraction_length(r, pos)) return pos + n;
  }
  // [^\r\n\p{L}\p{N}]?\p{L}+ — the optional character only counts when a letter follows it.
  if (first.cls == CharClass::Letter) return r.run_end(after_first, CharClass::Letter);
  Char second = after_first < size ? r.at(after_first) : Char{0, CharClass::Other, 0};
  bool has_second = after_first < size;
  if ((first.cls == CharClass::Space || first.cls == CharClass::Other) && has_second &&
      second.cls == CharClass::Letter) {
    return r.run_end(after_first + second.size, CharClass::Letter);
  }
  // \p{N} — one digit per piece.
  if (first.cls == CharClass::Number) return after_first;
  // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
  size_t symbols = std::string_view::npos;
  if (first.code_point == ' ' && has_second && second.cls == CharClass::Other) symbols = after_first;
  if (first.cls == CharClass::Other) symbols = pos;
  if (symbols != std::string_view::npos) {
    return r.run_end(r.run_end(symbols, CharClass::Other), CharClass::Newline);
  }
  // Only whitespace is left: `\s*[\r\n]+|\s+(?!\S)|\s+` over the whitespace run [pos, end).
  size_t end = pos, last_start = pos, after_newline = 0;
  int count = 0;
  while (end < size) {
    Char ch = r.at(end);
    if (ch.cls != CharClass::Space && ch.cls != CharClass::Newline) break;
    last_start = end;
    end += ch.size;
    ++count;
    if (ch.cls == CharClass::Newline) after_newline = end;
  }
  // \s*[\r\n]+ : \s* backtracks to the last newline of the run, [\r\n]+ takes it.
  if (after_newline != 0) return after_newline;
  // \s+(?!\S) : the whole run at the end of text, else all but its last character.
  if (end == size) return end;
  if (count >= 2) return last_start;
  return end;  // \s+
}

}  // namespace

CharClass char_class(char32_t code_point) {
  if (code_point < 0x10000) return bmp_classes()[code_point];
  return code_point == kInvalidCodePoint ? CharClass::Other : classify(code_point);
}

size_t decode_utf8(std::string_view text, size_t pos, char32_t& code_point) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  unsigned char b0 = byte(pos);
  code_point = kInvalidCodePoint;
  if (b0 < 0x80) {
    code_point = b0;
    return 1;
  }
  size_t n;
  unsigned char low = 0x80, high = 0xBF;  // the allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) low = 0xA0;   // overlong
    if (b0 == 0xED) high = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) low = 0x90;   // overlong
    if (b0 == 0xF4) high = 0x8F;  // above U+10FFFF
  } else {
    return 1;
  }
  if (pos + n > text.size()) return 1;
  unsigned char b1 = byte(pos + 1);
  if (b1 < low || b1 > high) return 1;
  char32_t c = (b0 & (0x7F >> n)) << 6 | (b1 & 0x3F);
  for (size_t i = 2; i < n; ++i) {
    unsigned char b = byte(pos + i);
    if ((b & 0xC0) != 0x80) return 1;
    c = c << 6 | (b & 0x3F);
  }
  code_point = c;
  return n;
}

namespace {
void append_nfc_valid(std::string_view run, std::string& out) {
  bool ascii = true;
  for (char c : run) ascii &= static_cast<unsigned char>(c) < 0x80;
  if (ascii) {
    out.append(run);
    return;
  }
  utf8proc_uint8_t* result = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(run.data()),
                                    static_cast<utf8proc_ssize_t>(run.size()), &result,
                                    static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  // The run was validated above, so utf8proc can only fail by running out of memory.
  LVRL_ASSERT(n >= 0, std::string("utf8proc_map failed: ") + utf8proc_errmsg(n));
  out.append(reinterpret_cast<const char*>(result), static_cast<size_t>(n));
  std::free(result);
}
}  // namespace

void append_nfc(std::string_view text, std::string& out) {
  size_t run_start = 0, pos = 0;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    char32_t c;
    size_t n = decode_utf8(text, pos, c);
    if (c != kInvalidCodePoint) {
      pos += n;
      continue;
    }
    append_nfc_valid(text.substr(run_start, pos - run_start), out);
    out.push_back(text[pos]);
    run_start = ++pos;
  }
  append_nfc_valid(text.substr(run_start), out);
}

std::string nfc(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  append_nfc(text, out);
  return out;
}

bool PieceScanner::next(std::string_view& piece) {
  if (pos_ >= text_.size()) return false;
  Reader reader(text_);
  size_t end = match_end(reader, pos_);
  LVRL_ASSERT(end > pos_, "the split regex always matches at least one character");
  piece = text_.substr(pos_, end - pos_);
  pos_ = end;
  return true;
}

size_t append_utf8_lossy(std::string_view bytes, bool final, std::string& out) {
  static const char kReplacement[] = "\xEF\xBF\xBD";
  size_t pos = 0;
  while (pos < bytes.size()) {
    char32_t c;
    size_t n = decode_utf8(bytes, pos, c);
    if (c != kInvalidCodePoint) {
      out.append(bytes.data() + pos, n);
      pos += n;
      continue;
    }
    // The maximal subpart: the longest prefix of a well-formed sequence starting here (at least 1).
    auto b0 = static_cast<unsigned char>(bytes[pos]);
    size_t want = (b0 >= 0xC2 && b0 <= 0xDF)   ? 2
                  : (b0 >= 0xE0 && b0 <= 0xEF) ? 3
                  : (b0 >= 0xF0 && b0 <= 0xF4) ? 4
                                               : 1;
    size_t good = 1;
    while (good < want && pos + good < bytes.size()) {
      auto b = static_cast<unsigned char>(bytes[pos + good]);
      unsigned char low = 0x80, high = 0xBF;
      if (good == 1) {
        if (b0 == 0xE0) low = 0xA0;
        if (b0 == 0xED) high = 0x9F;
        if (b0 == 0xF0) low = 0x90;
        if (b0 == 0xF4) high = 0x8F;
      }
      if (b < low || b > high) break;
      ++good;
    }
    if (want > 1 && good < want && pos + good == bytes.size() && !final) return good;  // may complete
    out.append(kReplacement);
    pos += good;
  }
  return 0;
}

}  // namespace lvrl::model
