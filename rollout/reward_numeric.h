// Numeric answers: reading numbers the way people write them ("1,234.5", "3/4", "\frac{3}{4}", "5 km",
// "-2.5e3") and comparing them with a tolerance (docs/rollout.md, "Rewards").
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lvrl::rollout {

// A reply matches the key when |value − key| ≤ max(absolute, relative × |key|).
constexpr double kNumericRelativeTolerance = 1e-4;
constexpr double kNumericAbsoluteTolerance = 1e-6;
bool numbers_match(double value, double key);

struct NumberInText {
  double value = 0;
  std::string text;  // as written: "1,234.5", "3/4"
};

// Every number in `text`, in order. Thousands separators only in groups of three ("1,234" is one
// number, "1,23" two); a fraction's denominator is not zero; dates ("3/4/2020") and digits inside
// identifiers ("H2O", "x2", "mp4") are not numbers; units and percent signs after a number are ignored.
std::vector<NumberInText> find_numbers(std::string_view text);

// The number a reply answers with: the first one in its last container (answer_scope), else the first
// one after its last "answer is" / "answer:" / 答案, else the last one in the reply. None for a
// malformed reply or one without numbers.
std::optional<NumberInText> extract_number(std::string_view response);

}  // namespace lvrl::rollout
