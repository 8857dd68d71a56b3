#include "rollout/reward_accuracy.h"

#include <fmt/format.h>

#include <memory>
#include <optional>

#include "core/config.h"
#include "core/error.h"
#include "rollout/answer_extraction.h"
#include "rollout/reward_numeric.h"
#include "rollout/reward_text.h"

namespace lvrl::rollout {
namespace {
using text::is_ascii_letter;

// "A. red" → 'A'; "red" → nothing.
std::optional<char> option_label(std::string_view option) {
  const std::string_view t = text::trim(option);
  if (t.size() >= 3 && t[0] == '(' && is_ascii_letter(t[1]) && t[2] == ')') return text::to_upper(t[1]);
  if (!t.empty() && is_ascii_letter(t[0]) && (t.size() == 1 || t[1] == '.' || t[1] == ')' || t[1] == ':')) {
    if (t.size() > 2 && !text::is_space(t[2])) return std::nullopt;  // "A.M. …", "U.S."
    return text::to_upper(t[0]);
  }
  return std::nullopt;
}

// The option's text without its label.
std::string_view option_text(std::string_view option) {
  std::string_view t = text::trim(option);
  if (option_label(t)) t.remove_prefix(t[0] == '(' ? 3 : std::min<size_t>(2, t.size()));
  return text::trim(t);
}

// The key's own text: the content of <answer>…</answer> when the key is wrapped in it.
std::string key_text(const std::string& answer) {
  const AnswerScope scope = answer_scope(normalize_reply(answer));
  return std::string(text::trim(scope.kind == AnswerScope::Kind::Malformed ? answer : scope.text));
}

char key_letter(const RewardInput& input, const std::vector<char>& letters) {
  const std::string letter = extract_choice(input.answer, letters);
  if (!letter.empty()) return letter[0];
  const std::string wanted = normalize_for_match(key_text(input.answer));
  for (size_t i = 0; i < input.options.size() && !wanted.empty(); ++i) {
    if (normalize_for_match(option_text(input.options[i])) == wanted) return letters[i];
  }
  throw InputError({"", 0, "answer", input.answer},
                   fmt::format("names none of the offered letters ({}) and no option's text",
                               std::string(letters.begin(), letters.end())));
}

double key_number(const RewardInput& input) {
  const std::vector<NumberInText> numbers = find_numbers(key_text(input.answer));
  if (numbers.empty())
    throw InputError({"", 0, "answer", input.answer}, "a numerical problem's key holds no number");
  return numbers.front().value;
}

// The reply's free-text answer: its last container, else what follows its last answer declaration
// on that line, else everything after its thinking.
std::string text_answer(std::string_view response) {
  const std::string normalized = normalize_reply(response);
  const AnswerScope scope = answer_scope(normalized);
  if (scope.kind != AnswerScope::Kind::Whole) return std::string(text::trim(scope.text));
  std::string_view t = scope.text;
  const size_t think_end = text::ascii_lower(t).rfind("</think>");
  if (think_end != std::string::npos) t.remove_prefix(think_end + 8);
  const size_t declared = text::after_last_answer_declaration(t);
  if (declared != std::string_view::npos) {
    t.remove_prefix(declared);
    t = text::trim(t);
    t = t.substr(0, t.find('\n'));
  }
  return std::string(text::trim(t));
}

bool strings_match(std::string_view got, std::string_view key, StringMatch match) {
  if (match == StringMatch::Exact) return text::trim(got) == text::trim(key);
  const std::string normalized = normalize_for_match(got);
  return !normalized.empty() && normalized == normalize_for_match(key);
}

std::string lower_kind(std::string_view problem_type) {
  std::string kind;
  for (char c : text::trim(problem_type)) kind += c == '_' || c == '-' ? ' ' : text::to_lower(c);
  return kind;
}
}  // namespace

AnswerKind answer_kind(const RewardInput& input) {
  if (!input.options.empty()) return AnswerKind::MultipleChoice;
  const std::string kind = lower_kind(input.problem_type);
  if (kind == "multiple choice" || kind == "multiple choice question" || kind == "mcq") {
    return AnswerKind::MultipleChoice;
  }
  if (kind == "numerical" || kind == "numeric" || kind == "number") return AnswerKind::Numeric;
  return AnswerKind::String;
}

std::vector<char> option_letters(const std::vector<std::string>& options) {
  if (options.empty()) return default_choices();
  std::vector<char> labels;
  for (const std::string& option : options) {
    const std::optional<char> label = option_label(option);
    if (!label || std::find(labels.begin(), labels.end(), *label) != labels.end()) break;
    labels.push_back(*label);
  }
  if (labels.size() == options.size()) return labels;
  if (options.size() > 26) {
    throw InputError({"", 0, "options", fmt::format("{} options", options.size())},
                     "more than 26 options without their own letters");
  }
  std::vector<char> letters;
  for (size_t i = 0; i < options.size(); ++i) letters.push_back(static_cast<char>('A' + i));
  return letters;
}

std::string normalize_for_match(std::string_view input) {
  std::string words;
  std::string word;
  auto flush = [&] {
    if (!word.empty() && word != "a" && word != "an" && word != "the")
      words += (words.empty() ? "" : " ") + word;
    word.clear();
  };
  for (char c : input) {
    const auto byte = static_cast<unsigned char>(c);
    if (text::is_space(c) || (byte < 0x80 && !text::is_ascii_alnum(c))) {
      flush();
    } else {
      word += text::to_lower(c);
    }
  }
  flush();
  return words;
}

std::string extract_answer(const RewardInput& input, StringMatch match) {
  switch (answer_kind(input)) {
    case AnswerKind::MultipleChoice:
      return extract_choice(input.response, option_letters(input.options));
    case AnswerKind::Numeric: {
      const std::optional<NumberInText> number = extract_number(input.response);
      return number ? number->text : "";
    }
    case AnswerKind::String:
      return match == StringMatch::Exact ? text_answer(input.response)
                                         : normalize_for_match(text_answer(input.response));
  }
  return "";
}

void check_answer_key(const RewardInput& input) {
  switch (answer_kind(input)) {
    case AnswerKind::MultipleChoice:
      key_letter(input, option_letters(input.options));
      break;
    case AnswerKind::Numeric:
      key_number(input);
      break;
    case AnswerKind::String:
      break;
  }
}

AnswerCheck check_answer(const RewardInput& input, StringMatch match) {
  AnswerCheck check;
  switch (answer_kind(input)) {
    case AnswerKind::MultipleChoice: {
      const std::vector<char> letters = option_letters(input.options);
      const char key = key_letter(input, letters);
      check.extracted = extract_choice(input.response, letters);
      check.score = check.extracted == std::string(1, key) ? 1.0 : 0.0;
      break;
    }
    case AnswerKind::Numeric: {
      const double key = key_number(input);
      const std::optional<NumberInText> number = extract_number(input.response);
      check.extracted = number ? number->text : "";
      check.score = number && numbers_match(number->value, key) ? 1.0 : 0.0;
      break;
    }
    case AnswerKind::String: {
      const std::string got = text_answer(input.response);
      check.extracted = match == StringMatch::Exact ? got : normalize_for_match(got);
      check.score = strings_match(got, key_text(input.answer), match) ? 1.0 : 0.0;
      break;
    }
  }
  return check;
}

namespace {
StringMatch string_match_of(const Config& config) {
  return config.get<std::string>("reward.string_match") == "exact" ? StringMatch::Exact
                                                                   : StringMatch::Normalized;
}

class AccuracyReward : public RewardFunction {
 public:
  explicit AccuracyReward(StringMatch match) : match_(match) {}
  std::string name() const override { return "accuracy"; }
  double score(const RewardInput& input) override { return check_answer(input, match_).score; }

 private:
  StringMatch match_;
};

const RegisterReward accuracy_reward("accuracy", [](const Config& config) {
  return std::make_unique<AccuracyReward>(string_match_of(config));
});
}  // namespace

}  // namespace lvrl::rollout
