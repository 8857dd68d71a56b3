// Accuracy: does the reply's answer equal the key? Which scorer applies follows the row
// (docs/rollout.md, "Rewards"): options, or a problem_type of multiple choice → the option letter
// (rollout/answer_extraction.h); problem_type numerical → numbers with a tolerance
// (rollout/reward_numeric.h); anything else → string match, exact or normalised.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "rollout/reward.h"

namespace lvrl::rollout {

enum class AnswerKind { MultipleChoice, Numeric, String };
AnswerKind answer_kind(const RewardInput& input);

enum class StringMatch { Normalized, Exact };

// The letters of the options, in order: their own labels when every option has one ("A. red",
// "(B) blue", "C) …", "D: …") and no letter repeats, else A, B, C… by position; A–H when there are no
// options. More than 26 unlabelled options is an InputError naming `options`.
std::vector<char> option_letters(const std::vector<std::string>& options);

// Lowercase ASCII, punctuation as spaces, no articles (a, an, the), single spaces: "The Eiffel
// tower." and "eiffel  Tower" both read "eiffel tower".
std::string normalize_for_match(std::string_view text);

// What the accuracy scorer reads from the reply: the letter, the number as written, or the text.
std::string extract_answer(const RewardInput& input, StringMatch match);

// The key must be readable: a letter among the options (or an option's text), a number for a numeric
// row. InputError naming `answer` (or `options`) otherwise.
void check_answer_key(const RewardInput& input);

struct AnswerCheck {
  double score = 0;       // 1 when the reply's answer equals the key, else 0
  std::string extracted;  // as extract_answer
};
AnswerCheck check_answer(const RewardInput& input, StringMatch match);

}  // namespace lvrl::rollout
