#include "rollout/reward_numeric.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "rollout/answer_extraction.h"
#include "rollout/reward_text.h"

namespace lvrl::rollout {
namespace {
using text::is_digit;

// "\frac{3}{4}" (and \dfrac, \tfrac) → "3/4"; other fractions stay as they are.
std::string fractions_as_slashes(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    size_t skip = 0;
    for (std::string_view command : {"\\frac{", "\\dfrac{", "\\tfrac{"}) {
      if (s.substr(i, command.size()) == command) skip = command.size();
    }
    if (skip > 0) {
      const size_t numerator_end = s.find('}', i + skip);
      if (numerator_end != std::string_view::npos && numerator_end + 1 < s.size() &&
          s[numerator_end + 1] == '{') {
        const size_t denominator_end = s.find('}', numerator_end + 2);
        if (denominator_end != std::string_view::npos) {
          out.append(s.substr(i + skip, numerator_end - i - skip));
          out += '/';
          out.append(s.substr(numerator_end + 2, denominator_end - numerator_end - 2));
          i = denominator_end + 1;
          continue;
        }
      }
    }
    out += s[i++];
  }
  return out;
}

// An unsigned decimal at `p` ("1,234.5", ".5", "2e-3"): its end, and its digits without separators.
size_t scan_unsigned(std::string_view s, size_t p, std::string& digits) {
  size_t q = p;
  while (q < s.size() && is_digit(s[q])) digits += s[q++];
  if (q - p >= 1 && q - p <= 3) {
    while (q + 3 < s.size() && s[q] == ',' && is_digit(s[q + 1]) && is_digit(s[q + 2]) &&
           is_digit(s[q + 3]) && (q + 4 >= s.size() || !is_digit(s[q + 4]))) {
      digits.append(s.substr(q + 1, 3));
      q += 4;
    }
  }
  if (q + 1 < s.size() && s[q] == '.' && is_digit(s[q + 1])) {
    digits += '.';
    ++q;
    while (q < s.size() && is_digit(s[q])) digits += s[q++];
  }
  if (q > p && q + 1 < s.size() && (s[q] == 'e' || s[q] == 'E')) {
    size_t e = q + 1;
    if (e < s.size() && (s[e] == '-' || s[e] == '+')) ++e;
    if (e < s.size() && is_digit(s[e]) && !(e + 1 < s.size() && text::is_ascii_letter(s[e + 1]))) {
      digits.append(s.substr(q, e - q));
      q = e;
      while (q < s.size() && is_digit(s[q])) digits += s[q++];
    }
  }
  return q;
}

bool starts_unsigned(std::string_view s, size_t p) {
  return p < s.size() && (is_digit(s[p]) || (s[p] == '.' && p + 1 < s.size() && is_digit(s[p + 1])));
}

}  // namespace

bool numbers_match(double value, double key) {
  if (!std::isfinite(value) || !std::isfinite(key)) return false;
  return std::fabs(value - key) <=
         std::max(kNumericAbsoluteTolerance, kNumericRelativeTolerance * std::fabs(key));
}

std::vector<NumberInText> find_numbers(std::string_view input) {
  const std::string s = fractions_as_slashes(input);
  std::vector<NumberInText> numbers;
  for (size_t i = 0; i < s.size();) {
    const bool signed_start = (s[i] == '-' || s[i] == '+') && starts_unsigned(s, i + 1) &&
                              (i == 0 || !text::is_ascii_alnum(s[i - 1]));
    if (!signed_start && !starts_unsigned(s, i)) {
      ++i;
      continue;
    }
    if (i > 0 && (text::is_ascii_letter(s[i - 1]) || s[i - 1] == '_')) {  // H2O, x2, mp4
      while (i < s.size() && (text::is_ascii_alnum(s[i]) || s[i] == '_')) ++i;
      continue;
    }
    std::string digits = signed_start && s[i] == '-' ? "-" : "";
    size_t end = scan_unsigned(s, signed_start ? i + 1 : i, digits);
    double value = std::strtod(digits.c_str(), nullptr);
    if (end + 1 < s.size() && s[end] == '/' && starts_unsigned(s, end + 1)) {
      std::string denominator;
      const size_t denominator_end = scan_unsigned(s, end + 1, denominator);
      if (denominator_end + 1 < s.size() && s[denominator_end] == '/' && is_digit(s[denominator_end + 1])) {
        end = denominator_end;  // a date: skip it whole
        while (end < s.size() && (is_digit(s[end]) || s[end] == '/')) ++end;
        i = end;
        continue;
      }
      const double divisor = std::strtod(denominator.c_str(), nullptr);
      if (divisor != 0) {
        value /= divisor;
        end = denominator_end;
      }
    }
    numbers.push_back({value, s.substr(i, end - i)});
    i = end;
  }
  return numbers;
}

std::optional<NumberInText> extract_number(std::string_view response) {
  const std::string normalized = normalize_reply(response);
  const AnswerScope scope = answer_scope(normalized);
  if (scope.kind == AnswerScope::Kind::Malformed) return std::nullopt;
  if (scope.kind == AnswerScope::Kind::Container) {
    const std::vector<NumberInText> numbers = find_numbers(scope.text);
    if (numbers.empty()) return std::nullopt;
    return numbers.front();
  }
  const size_t after = text::after_last_answer_declaration(scope.text);
  if (after != std::string_view::npos) {
    const std::vector<NumberInText> numbers = find_numbers(std::string_view(scope.text).substr(after));
    if (!numbers.empty()) return numbers.front();
  }
  const std::vector<NumberInText> numbers = find_numbers(scope.text);
  if (numbers.empty()) return std::nullopt;
  return numbers.back();
}

}  // namespace lvrl::rollout
