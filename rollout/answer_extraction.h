// Reading the final answer out of a free-text reply, robustly: the official scorers take "the first
// letter anywhere" and read "Based on…" as B. The contract (docs/rollout.md, "Answer extraction"):
// containers scope the search, explicit declarations beat implicit mentions and the last one wins,
// alternatives and echoed option lists abstain, and letters inside words, acronyms, identifiers,
// decimals, URLs or non-ASCII words never count. Abstaining ("") is always preferred to guessing:
// a wrong letter read as the policy's choice is a wrong reward.
//
// The same extractor scores rollouts (rollout/reward.h) and evaluation.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace lvrl::rollout {

// The letters offered when a question names none: A–H.
const std::vector<char>& default_choices();

// The chosen letter, uppercase, or "" when the reply gives no single offered letter. `choices` are the
// offered letters in either case (empty = A–H); anything but ASCII letters there is a bug (asserts).
std::string extract_choice(std::string_view response, const std::vector<char>& choices = {});

// The reply as every scorer reads it: full-width ASCII forms (Ｂ, （, ：) and no-break spaces become
// ASCII; math delimiters ($, \( \), \[ \]) go; presentation wrappers (\text{…}, \textbf{…},
// \mathrm{…}, …) are replaced by their content, so \boxed{\text{B}} reads \boxed{B}.
std::string normalize_reply(std::string_view response);

// Where the final answer sits (docs/rollout.md, "Answer extraction", rule 1): the content of the last
// container — <answer>…</answer> or \boxed{…}, whichever starts last; a box inside an answer block is
// that block's last container — or the whole text when there is none. A container nested in one of
// its own kind, an unclosed one, a stray </answer> or a tag inside a box make the reply Malformed.
struct AnswerScope {
  enum class Kind { Whole, Container, Malformed };
  Kind kind = Kind::Whole;
  std::string text;  // empty when Malformed
};
AnswerScope answer_scope(std::string_view normalized_reply);

}  // namespace lvrl::rollout
