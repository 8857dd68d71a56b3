// The answer extractor (docs/rollout.md, "Answer extraction"). One pass per rule, over plain bytes:
// UTF-8 is decoded only next to a candidate letter (rule 6: is it inside a non-ASCII word?) and in the
// normalisation. No regular expressions: std::regex is slow on long replies and cannot say "a letter
// that is not inside a word" without lookbehind.
#include "rollout/answer_extraction.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <set>

#include "core/error.h"
#include "rollout/reward_text.h"

namespace lvrl::rollout {
namespace {
using text::contains;
using text::is_ascii_letter;
using text::is_space;
using text::lower_word_at;
using text::starts_with_any;
using text::to_upper;

// ---- Declarations (rule 2) -------------------------------------------------------------------------

// A declared choice: where its letter is, and whether the declaration offers alternatives (rule 5).
struct Declaration {
  size_t at = 0;
  char letter = 0;
  bool alternatives = false;
};

// Words that announce the choice that follows. `needs_link`: the word alone is prose ("option B
// shows…", 答案在视频里) and declares only with a link: a colon, '=' or a copula ("the correct option is
// B", "option: B", 答案是B). `heads_list`: "Options:" followed by a line break starts a list.
struct Keyword {
  std::string_view text;
  bool ascii_word;
  bool needs_link;
  bool heads_list;
};
constexpr std::array<Keyword, 25> kKeywords{{
    {"answer", true, false, false},   {"correct one", true, true, false}, {"right one", true, true, false},
    {"choose", true, false, false},   {"chose", true, false, false},      {"select", true, false, false},
    {"selected", true, false, false}, {"pick", true, false, false},       {"picked", true, false, false},
    {"go with", true, false, false},  {"going with", true, false, false}, {"opt for", true, false, false},
    {"option", true, true, true},     {"choice", true, true, true},       {"答案", false, true, false},
    {"选", false, false, false},      {"選", false, false, false},        {"选项", false, true, true},
    {"選項", false, true, true},      {"정답은", false, false, false},    {"답은", false, false, false},
    {"답:", false, false, false},     {"옵션", false, false, false},      {"答えは", false, false, false},
    {"正解は", false, false, false},
}};

// Words allowed between a declaration and its letter ("the answer is clearly option B", "the answer
// seems to be C"); copulas also count as the link a `needs_link` keyword wants.
constexpr std::array<std::string_view, 26> kFillers{
    "is",    "was",   "are",       "be",      "would",  "will",       "should",   "must",   "could",
    "might", "may",   "seems",     "appears", "option", "choice",     "letter",   "either", "then",
    "thus",  "hence", "therefore", "clearly", "likely", "definitely", "probably", "to"};
constexpr std::array<std::string_view, 4> kCopulas{"is", "was", "are", "be"};
// Between 选 / 答案 and the letter: 选择 ("choose"), 是 / 为 ("is"), 应该 ("should"), 可能 ("maybe").
// Not 项: 选项 alone is "option". Longer entries first: the first that matches is taken.
constexpr std::array<std::string_view, 12> kCjkFillers{"应该", "應該", "可能", "择", "擇", "是",
                                                       "为",   "為",   "应",   "應", "就", "也"};
constexpr std::array<std::string_view, 3> kCjkCopulas{"是", "为", "為"};

// Openers and quotes that may stand between a declaration and its letter.
constexpr std::array<std::string_view, 10> kOpeners{"“", "‘", "「", "『", "【", "《", "〈", "–", "—", "→"};
// Closers and quotes that may follow a letter before what comes next.
constexpr std::array<std::string_view, 7> kClosers{"”", "’", "」", "』", "】", "》", "〉"};
// Joining a second letter to the first: alternatives (rule 5).
constexpr std::array<std::string_view, 8> kCjkJoiners{"、",   "或者", "或",   "和",
                                                      "还是", "還是", "또는", "혹은"};

size_t skip_spaces(std::string_view s, size_t p, bool newlines = true) {
  while (p < s.size() && is_space(s[p]) && (newlines || s[p] != '\n')) ++p;
  return p;
}

size_t skip_closers(std::string_view s, size_t p) {
  while (p < s.size()) {
    if (s[p] == ')' || s[p] == ']' || s[p] == '}' || s[p] == '"' || s[p] == '\'' || s[p] == ' ') {
      ++p;
    } else if (size_t n = starts_with_any(s, p, kClosers)) {
      p += n;
    } else {
      break;
    }
  }
  return p;
}

// "a dog", "I think": an article or a pronoun, not a choice (rule 4). Uppercase A counts as a letter
// unless `article_a` (after a conjunction: "B and A man…").
bool is_prose_word(std::string_view s, size_t i, bool article_a) {
  const char c = s[i];
  if (!(c == 'a' || c == 'i' || c == 'I' || (c == 'A' && article_a))) return false;
  if (i + 1 >= s.size() || s[i + 1] != ' ') return false;
  const size_t word_at = skip_spaces(s, i + 1, false);
  if (word_at >= s.size() || !(s[word_at] >= 'a' && s[word_at] <= 'z')) return false;
  static constexpr std::array<std::string_view, 22> kAssertions{
      "is",   "was",  "because", "since", "as",      "or",   "and",  "nor",     "seems", "would", "should",
      "must", "will", "can",     "could", "matches", "fits", "best", "correct", "right", "then",  "wins"};
  return !contains(kAssertions, lower_word_at(s, word_at));
}

// "B, C is wrong": the second letter opens a clause of its own instead of offering an alternative.
bool opens_clause(std::string_view s, size_t letter_at) {
  static constexpr std::array<std::string_view, 12> kVerbs{
      "is", "isn", "was", "wasn", "seems", "does", "doesn", "has", "shows", "looks", "describes", "says"};
  const size_t p = skip_closers(s, letter_at + 1);
  return p > letter_at + 1 && contains(kVerbs, lower_word_at(s, p));
}

// After a declared letter: "or C", ", C", "/C", "and C" — alternatives (rule 5).
bool alternative_follows(std::string_view s, size_t letter_at) {
  size_t p = skip_closers(s, letter_at + 1);
  bool joined = false;
  if (p < s.size() && (s[p] == ',' || s[p] == '/' || s[p] == '&')) {
    joined = true;
    p = skip_spaces(s, p + 1, false);
  } else if (size_t n = starts_with_any(s, p, kCjkJoiners)) {
    joined = true;
    p = skip_spaces(s, p + n, false);
  }
  const std::string word = lower_word_at(s, p);
  if (word == "or" || word == "and" || word == "nor") {
    joined = true;
    p += word.size();
    if (s.substr(p, 3) == "/or") p += 3;
    p = skip_spaces(s, p, false);
  }
  if (!joined) return false;
  while (p < s.size() && (s[p] == '(' || s[p] == '[' || s[p] == '"' || s[p] == '\'')) ++p;
  const std::string filler = lower_word_at(s, p);
  if (filler == "option" || filler == "choice" || filler == "maybe" || filler == "perhaps") {
    p = skip_spaces(s, p + filler.size(), false);
  }
  if (p >= s.size() || !text::is_standalone_letter(s, p) || is_prose_word(s, p, true)) return false;
  return !opens_clause(s, p);
}

// Before an asserted letter: "A or B is correct", "A/B is correct".
bool alternative_precedes(std::string_view s, size_t letter_at) {
  size_t p = letter_at;
  auto skip_back = [&](auto&& predicate) {
    while (p > 0 && predicate(s[p - 1])) --p;
  };
  skip_back([](char c) { return c == ' ' || c == '(' || c == '[' || c == '"' || c == '\''; });
  for (std::string_view word : {"option", "choice"}) {
    if (p >= word.size() && text::equals_lower(s.substr(p - word.size(), word.size()), word)) {
      p -= word.size();
      skip_back([](char c) { return c == ' '; });
    }
  }
  if (p == 0) return false;
  if (s[p - 1] == ',' || s[p - 1] == '/' || s[p - 1] == '&') {
    --p;
  } else if (p >= 3 && text::equals_lower(s.substr(p - 3, 3), " or")) {
    p -= 2;
  } else if (p >= 4 && text::equals_lower(s.substr(p - 4, 4), " and")) {
    p -= 3;
  } else if (p >= 3 && (s.substr(p - 3, 3) == "或" || s.substr(p - 3, 3) == "和")) {
    p -= 3;
  } else {
    return false;
  }
  skip_back([](char c) { return c == ' ' || c == ')' || c == ']' || c == '"' || c == '\''; });
  return p > 0 && text::is_standalone_letter(s, p - 1);
}

// "If A is correct…", "whether B is the answer": a hypothesis, not a declaration.
bool hypothetical_before(std::string_view s, size_t at) {
  static constexpr std::array<std::string_view, 8> kHypotheses{"if",       "whether", "unless", "suppose",
                                                               "assuming", "assume",  "not",    "why"};
  static constexpr std::array<std::string_view, 8> kSkipped{"the",   "option",  "choice", "answer",
                                                            "final", "correct", "right",  "my"};
  size_t p = at;
  for (int words = 0; words < 4; ++words) {
    while (p > 0 && (s[p - 1] == ' ' || s[p - 1] == '(' || s[p - 1] == '[')) --p;
    size_t begin = p;
    while (begin > 0 && is_ascii_letter(s[begin - 1])) --begin;
    if (begin == p) return false;
    const std::string word = lower_word_at(s, begin);
    if (contains(kHypotheses, word)) return true;
    if (!contains(kSkipped, word)) return false;
    p = begin;
  }
  return false;
}

// The letter a declaration at `p` (just past its keyword) names, if one sits next to it.
std::optional<Declaration> declared_letter(std::string_view s, size_t p, const Keyword& keyword) {
  bool linked = false;
  for (int words = 0; words <= 5; ++words) {
    while (p < s.size()) {
      const char c = s[p];
      if (c == ':' || c == '=') {
        linked = true;
        ++p;
      } else if (c == '\n' && keyword.heads_list) {
        return std::nullopt;  // "Options:\nA. red\nB. blue" heads a list, it declares nothing
      } else if (is_space(c) || c == '(' || c == '[' || c == '{' || c == '"' || c == '\'' || c == '-' ||
                 c == '>') {
        ++p;
      } else if (size_t n = starts_with_any(s, p, kOpeners)) {
        p += n;
      } else {
        break;
      }
    }
    if (p >= s.size()) return std::nullopt;
    if (text::is_standalone_letter(s, p)) {
      if (is_prose_word(s, p, false)) {
        // "Answer: I think B" — a hedge between the declaration and its letter.
        const size_t next = skip_spaces(s, p + 1, false);
        const std::string hedge = lower_word_at(s, next);
        if (s[p] == 'I' && (hedge == "think" || hedge == "believe" || hedge == "guess")) {
          p = next + hedge.size();
          continue;
        }
        return std::nullopt;
      }
      if (keyword.needs_link && !linked) return std::nullopt;
      return Declaration{p, to_upper(s[p]), alternative_follows(s, p)};
    }
    if (is_ascii_letter(s[p])) {
      const std::string word = lower_word_at(s, p);
      if (!contains(kFillers, word)) return std::nullopt;
      if (word == "to" && lower_word_at(s, skip_spaces(s, p + 2, false)) != "be")
        return std::nullopt;  // "seems to be"
      linked = linked || contains(kCopulas, word);
      p += word.size();
    } else if (size_t n = starts_with_any(s, p, kCjkFillers)) {
      linked = linked || starts_with_any(s, p, kCjkCopulas) != 0;
      p += n;
    } else {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// "B is correct", "Option A is the best answer", "B가 정답", "Cが正解": the letter, then the assertion.
bool assertion_follows(std::string_view s, size_t letter_at) {
  static constexpr std::array<std::string_view, 15> kCjkAssertions{
      "是正确",  "是正確",  "正确",  "正確",  "是答案", "为正确",   "為正確", "是对的",
      "가 정답", "이 정답", "가 맞", "이 맞", "が正解", "が正しい", "は正解"};
  size_t p = skip_closers(s, letter_at + 1);
  if (starts_with_any(s, p, kCjkAssertions)) return true;
  if (lower_word_at(s, p) != "is") return false;
  p = skip_spaces(s, p + 2, false);
  for (std::string_view skipped : {"the", "only", "definitely", "clearly"}) {
    if (lower_word_at(s, p) == skipped) p = skip_spaces(s, p + skipped.size(), false);
  }
  std::string word = lower_word_at(s, p);
  if (word == "correct" || word == "right" || word == "answer") return true;
  if (word == "most") {
    p = skip_spaces(s, p + 4, false);
    word = lower_word_at(s, p);
    if (word != "likely" && word != "appropriate" && word != "accurate" && word != "suitable" &&
        word != "reasonable") {
      return false;
    }
  } else if (word != "best" && word != "final") {
    return false;
  }
  p = skip_spaces(s, p + word.size(), false);
  word = lower_word_at(s, p);
  return word == "answer" || word == "option" || word == "choice" || word == "one";
}

std::set<char> line_labels(std::string_view scope);

// "Answer:\nA. red\nB. blue": the letter after the declaration opens a line of an echoed option list.
bool opens_listed_line(std::string_view s, size_t keyword_end, size_t letter_at) {
  size_t line_start = letter_at;
  while (line_start > keyword_end &&
         (s[line_start - 1] == ' ' || s[line_start - 1] == '\t' || s[line_start - 1] == '('))
    --line_start;
  if (line_start == keyword_end || s[line_start - 1] != '\n') return false;
  const size_t after = letter_at + 1;
  const bool labelled = after < s.size() && (s[after] == '.' || s[after] == ')' || s[after] == ':');
  return labelled && line_labels(s).size() >= 2;
}

std::vector<Declaration> find_declarations(std::string_view s) {
  std::vector<Declaration> found;
  const std::string lower = text::ascii_lower(s);
  for (const Keyword& keyword : kKeywords) {
    for (size_t at = lower.find(keyword.text); at != std::string::npos;
         at = lower.find(keyword.text, at + 1)) {
      const size_t end = at + keyword.text.size();
      if (keyword.ascii_word && (text::word_char_before(s, at) || text::word_char_at(s, end))) continue;
      if (keyword.ascii_word && hypothetical_before(s, at)) continue;
      const std::optional<Declaration> declaration = declared_letter(s, end, keyword);
      if (declaration && !opens_listed_line(s, end, declaration->at)) found.push_back(*declaration);
    }
  }
  for (size_t at = 0; at < s.size(); ++at) {
    if (!text::is_standalone_letter(s, at) || !assertion_follows(s, at) || hypothetical_before(s, at))
      continue;
    found.push_back({at, to_upper(s[at]), alternative_precedes(s, at)});
  }
  return found;
}

// ---- Implicit evidence (rules 3 and 4) -------------------------------------------------------------

constexpr std::array<std::string_view, 12> kWrappingMarks{"“",  "”",  "‘",  "’",  "「", "」",
                                                          "『", "』", "【", "】", "。", "、"};

bool is_wrapping_ascii(char c) {
  return is_space(c) || c == '(' || c == ')' || c == '[' || c == ']' || c == '{' || c == '}' || c == '"' ||
         c == '\'' || c == '.' || c == '!' || c == ':' || c == ',' || c == ';';
}

// `t` without the punctuation, brackets and quotes around it.
std::string_view strip_wrapping(std::string_view t) {
  for (bool changed = true; changed && !t.empty();) {
    changed = false;
    if (is_wrapping_ascii(t.front())) {
      t.remove_prefix(1);
      changed = true;
    } else if (size_t n = starts_with_any(t, 0, kWrappingMarks)) {
      t.remove_prefix(n);
      changed = true;
    }
    if (t.empty()) break;
    if (is_wrapping_ascii(t.back())) {
      t.remove_suffix(1);
      changed = true;
    } else {
      for (std::string_view mark : kWrappingMarks) {
        if (t.size() >= mark.size() && t.substr(t.size() - mark.size()) == mark) {
          t.remove_suffix(mark.size());
          changed = true;
          break;
        }
      }
    }
  }
  return t;
}

// "B", "(b)", "Option C.": the whole scope is one letter.
std::optional<char> bare_letter(std::string_view t) {
  t = strip_wrapping(t);
  for (std::string_view word : {"option", "choice"}) {
    if (t.size() > word.size() + 1 && text::equals_lower(t.substr(0, word.size()), word) &&
        is_space(t[word.size()])) {
      t = strip_wrapping(t.substr(word.size()));
    }
  }
  if (t.size() == 1 && is_ascii_letter(t[0])) return to_upper(t[0]);
  return std::nullopt;
}

// The label a line opens with: "B. …", "(b) …", "C: …", "D) …", "B - …", a capital alone on its line,
// and on the first line "A because…". `s` is the whole scope, [begin, end) the line.
std::optional<char> line_label(std::string_view s, size_t begin, size_t end, bool first_line) {
  size_t p = begin;
  while (p < end && (s[p] == ' ' || s[p] == '\t')) ++p;
  while (p < end && (s[p] == '-' || s[p] == '+' || s[p] == '>' || s[p] == '#') && p + 1 < end &&
         s[p + 1] == ' ') {
    p = skip_spaces(s, p + 1, false);
  }
  if (s.substr(p, 3) == "•") p = skip_spaces(s, p + 3, false);
  for (std::string_view word : {"option", "choice"}) {  // "Option C. The woman leaves."
    if (lower_word_at(s, p) == word && p + word.size() < end && s[p + word.size()] == ' ') {
      p = skip_spaces(s, p + word.size(), false);
    }
  }
  if (p + 2 < end && (s[p] == '(' || s[p] == '[') && is_ascii_letter(s[p + 1]) &&
      (s[p + 2] == ')' || s[p + 2] == ']')) {
    return to_upper(s[p + 1]);
  }
  if (p >= end || !text::is_standalone_letter(s, p)) return std::nullopt;
  const char letter = s[p];
  size_t q = p + 1;
  const std::string_view rest = strip_wrapping(s.substr(q, end - q));
  if (rest.empty()) {  // alone on its line
    if (letter >= 'A' && letter <= 'Z') return letter;
    return std::nullopt;
  }
  if ((s[q] == '.' || s[q] == ')' || s[q] == ':') && (q + 1 == end || is_space(s[q + 1])))
    return to_upper(letter);
  if (s[q] != ' ') return std::nullopt;
  q = skip_spaces(s, q, false);
  if (starts_with_any(s, q, std::array<std::string_view, 3>{"- ", "– ", "— "})) return to_upper(letter);
  const std::string next = lower_word_at(s, q);
  if (first_line && (next == "because" || next == "since")) return to_upper(letter);
  return std::nullopt;
}

// "…, B" or "…; B" at the very end; "A, B" at the end is a list and gives both letters.
std::vector<char> after_final_separator(std::string_view t) {
  const size_t at = t.find_last_of(",;");
  if (at == std::string_view::npos) return {};
  std::string_view tail = strip_wrapping(t.substr(at + 1));
  for (std::string_view connective : {"so", "thus", "hence", "therefore", "then"}) {  // "…, so C"
    if (tail.size() == connective.size() + 2 && lower_word_at(tail, 0) == connective &&
        tail[connective.size()] == ' ') {
      tail.remove_prefix(connective.size() + 1);
    }
  }
  if (tail.size() != 1 || !(tail[0] >= 'A' && tail[0] <= 'Z')) return {};
  std::vector<char> letters{tail[0]};
  size_t p = at;
  while (p > 0 && (t[p - 1] == ' ' || t[p - 1] == ')' || t[p - 1] == ']')) --p;
  if (p > 0 && text::is_standalone_letter(t, p - 1)) letters.push_back(to_upper(t[p - 1]));
  return letters;
}

std::set<char> line_labels(std::string_view scope) {
  std::set<char> found;
  bool first_line = true;
  for (size_t begin = 0; begin < scope.size();) {
    size_t end = scope.find('\n', begin);
    if (end == std::string_view::npos) end = scope.size();
    if (skip_spaces(scope, begin, false) < end) {
      if (auto label = line_label(scope, begin, end, first_line)) found.insert(*label);
      first_line = false;
    }
    begin = end + 1;
  }
  return found;
}

std::set<char> implicit_letters(std::string_view scope) {
  if (auto bare = bare_letter(scope)) return {*bare};
  std::set<char> found = line_labels(scope);
  for (size_t at = scope.find('('); at != std::string_view::npos; at = scope.find('(', at + 1)) {
    if (at + 2 < scope.size() && is_ascii_letter(scope[at + 1]) && scope[at + 2] == ')' &&
        !text::word_char_before(scope, at)) {
      found.insert(to_upper(scope[at + 1]));
    }
  }
  for (char letter : after_final_separator(scope)) found.insert(letter);
  return found;
}

std::optional<char> read_choice(std::string_view scope) {
  const std::vector<Declaration> declarations = find_declarations(scope);
  if (!declarations.empty()) {
    const Declaration& last =
        *std::max_element(declarations.begin(), declarations.end(),
                          [](const Declaration& a, const Declaration& b) { return a.at < b.at; });
    if (last.alternatives) return std::nullopt;
    return last.letter;
  }
  const std::set<char> implicit = implicit_letters(scope);
  if (implicit.size() == 1) return *implicit.begin();
  return std::nullopt;
}

// ---- Normalisation and containers (rule 1) ---------------------------------------------------------

// TeX commands that only change how their argument looks.
constexpr std::array<std::string_view, 19> kPresentationWrappers{
    "text",      "textbf",       "textit", "textrm",     "textsf",  "texttt", "textup",
    "mathrm",    "mathbf",       "mathit", "mathsf",     "mathtt",  "emph",   "mbox",
    "underline", "operatorname", "bm",     "boldsymbol", "mathbfit"};

// The index of the '}' closing the '{' at `open`, or npos.
size_t matching_brace(std::string_view s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return i;
  }
  return std::string_view::npos;
}

// A wrapper command at `i` ("\textbf{"): the index of its '{', or npos.
size_t wrapper_brace(std::string_view s, size_t i) {
  size_t name_end = i + 1;
  while (name_end < s.size() && is_ascii_letter(s[name_end])) ++name_end;
  if (!contains(kPresentationWrappers, s.substr(i + 1, name_end - i - 1))) return std::string_view::npos;
  const size_t brace = skip_spaces(s, name_end, false);
  return brace < s.size() && s[brace] == '{' ? brace : std::string_view::npos;
}

std::string unwrap_tex(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c == '$') {
      ++i;
    } else if (c == '\\' && i + 1 < s.size() &&
               (s[i + 1] == '(' || s[i + 1] == ')' || s[i + 1] == '[' || s[i + 1] == ']')) {
      i += 2;
    } else if (size_t brace = c == '\\' ? wrapper_brace(s, i) : std::string_view::npos;
               brace != std::string_view::npos && matching_brace(s, brace) != std::string_view::npos) {
      const size_t close = matching_brace(s, brace);
      out += unwrap_tex(s.substr(brace + 1, close - brace - 1));
      i = close + 1;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

bool contains_lower(std::string_view s, std::string_view lower) {
  return text::ascii_lower(s).find(lower) != std::string::npos;
}

}  // namespace

const std::vector<char>& default_choices() {
  static const std::vector<char> letters{'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H'};
  return letters;
}

std::string normalize_reply(std::string_view response) {
  std::string out;
  out.reserve(response.size());
  for (size_t i = 0; i < response.size();) {
    const text::CodePoint cp = text::code_point_at(response, i);
    if (cp.value >= 0xFF01 && cp.value <= 0xFF5E) {  // full-width ASCII forms: Ｂ （ ： ，
      out += static_cast<char>(cp.value - 0xFEE0);
    } else if (cp.value == 0x3000 || cp.value == 0xA0 || cp.value == 0x202F || cp.value == 0x2009) {
      out += ' ';
    } else if (cp.value == 0x2212) {  // − minus sign
      out += '-';
    } else {
      out.append(response.substr(i, cp.size));
    }
    i += cp.size;
  }
  return unwrap_tex(out);
}

AnswerScope answer_scope(std::string_view s) {
  struct Container {
    size_t start, content_begin, content_end;
  };
  const AnswerScope malformed{AnswerScope::Kind::Malformed, ""};
  std::vector<Container> found;
  // <answer> blocks: none inside another, every one closed, no closing tag without its opening one.
  const std::string lower = text::ascii_lower(s);
  std::optional<size_t> open;
  for (size_t i = lower.find('<'); i != std::string::npos; i = lower.find('<', i + 1)) {
    if (lower.compare(i, 8, "<answer>") == 0) {
      if (open) return malformed;
      open = i;
    } else if (lower.compare(i, 9, "</answer>") == 0) {
      if (!open) return malformed;
      found.push_back({*open, *open + 8, i});
      open.reset();
    }
  }
  if (open) return malformed;
  // \boxed{…}: closed, with no box and no answer tag inside.
  for (size_t i = s.find("\\boxed"); i != std::string_view::npos; i = s.find("\\boxed", i + 1)) {
    const size_t brace = skip_spaces(s, i + 6, false);
    if (brace >= s.size() || s[brace] != '{') continue;  // \boxedfoo, or the word in prose
    const size_t close = matching_brace(s, brace);
    if (close == std::string_view::npos) return malformed;
    const std::string_view content = s.substr(brace + 1, close - brace - 1);
    if (content.find("\\boxed") != std::string_view::npos || contains_lower(content, "<answer>") ||
        contains_lower(content, "</answer>")) {
      return malformed;
    }
    found.push_back({i, brace + 1, close});
  }
  if (found.empty()) return {AnswerScope::Kind::Whole, std::string(s)};
  const Container& last = *std::max_element(
      found.begin(), found.end(), [](const Container& a, const Container& b) { return a.start < b.start; });
  return {AnswerScope::Kind::Container,
          std::string(s.substr(last.content_begin, last.content_end - last.content_begin))};
}

std::string extract_choice(std::string_view response, const std::vector<char>& choices) {
  const std::vector<char>& offered = choices.empty() ? default_choices() : choices;
  for (char c : offered) LVRL_ASSERT(is_ascii_letter(c), std::string("a choice that is no letter: ") + c);
  const std::string text = text::without_markup(normalize_reply(response));
  const AnswerScope scope = answer_scope(text);
  if (scope.kind == AnswerScope::Kind::Malformed) return "";
  const std::optional<char> letter = read_choice(scope.text);
  if (!letter) return "";
  for (char c : offered) {
    if (to_upper(c) == *letter) return std::string(1, *letter);
  }
  return "";
}

}  // namespace lvrl::rollout
