// The answer extractor against the contract of docs/rollout.md, "Answer extraction": each table row is a
// reply and the letter the contract gives for it, written by hand from the rule it illustrates.
#include "rollout/answer_extraction.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace lvrl::rollout {
namespace {

struct Case {
  std::string response;
  std::string expected;            // "" = abstains
  std::vector<char> choices = {};  // empty = A–H
};

void expect_table(const std::vector<Case>& table) {
  for (const Case& c : table) {
    EXPECT_EQ(extract_choice(c.response, c.choices), c.expected)
        << "reply: " << c.response << "\nchoices: " << std::string(c.choices.begin(), c.choices.end());
  }
}

TEST(AnswerExtraction, ContainersScopeTheSearchAndTheLastWins) {  // rule 1
  expect_table({
      {"<answer>B.</answer>", "B"},
      {"<answer>b</answer>", "B"},
      {"<ANSWER>C</ANSWER>", "C"},
      {"<think>The answer is A, surely.</think><answer>C</answer>", "C"},
      {"<answer>A</answer> on second thought <answer>D</answer>", "D"},
      {"<answer>B</answer> or rather <answer>A or C</answer>", ""},  // the last is ambiguous: no answer
      {"<answer>B</answer> and finally <answer></answer>", ""},
      {"<answer>The answer is E</answer>", "", {'A', 'B', 'C', 'D'}},
      {"<think>…</think>\n<answer>(B) The man is cooking.</answer>", "B"},
      {"\\boxed{\\text{B}}", "B"},
      {"\\boxed{\\textbf{(D)}}", "D"},
      {"So the answer is $\\boxed{C}$.", "C"},
      {"<answer>\\boxed{B}</answer>", "B"},
      {"I first thought \\boxed{A}, but <answer>C</answer>", "C"},
      {"<answer>C</answer>, which I box: \\boxed{A}", "A"},
  });
}

TEST(AnswerExtraction, NestedOrUnclosedContainersAbstain) {  // rule 1
  expect_table({
      {"<answer>B", ""},
      {"The answer is B</answer>", ""},
      {"<answer><answer>B</answer></answer>", ""},
      {"<answer>A <answer>B</answer>", ""},
      {"\\boxed{\\boxed{B}}", ""},
      {"\\boxed{B", ""},
      {"\\boxed{<answer>B</answer>}", ""},
  });
}

TEST(AnswerExtraction, ExplicitDeclarationsAndTheLastWins) {  // rule 2
  expect_table({
      {"Based on the video, the answer is C", "C"},
      {"Answer: B. Wait, actually the answer is D", "D"},
      {"the answer is b", "B"},
      {"I choose C because the man leaves the room.", "C"},
      {"Option A is correct.", "A"},
      {"After watching, B is the best answer.", "B"},
      {"Final Answer: **C**", "C"},
      {"The correct option is (D).", "D"},
      {"My choice is `B`.", "B"},
      {"Answer:\n\nB", "B"},
      {"A. red\nB. blue\nAnswer:\nB", "B"},
      {"Answer:\nB. blue", "B"},
      {"Answer: I think B", "B"},
      {"The answer is clearly option B.", "B"},
      {"(A) looks plausible, but the answer is C.", "C"},
      {"A. red\nB. blue\nC. green\nThe answer is C.", "C"},
      {"B is not correct; C is correct.", "C"},
      {"I will go with D.", "D"},
      {"The answer seems to be C.", "C"},
      {"Let me double-check the answer: B", "B"},
      {"Maybe the answer is D.", "D"},
      {"The answer to B is unclear; the answer could be A.", "A"},
      {"answer → B", "B"},
  });
}

TEST(AnswerExtraction, DeclarationsInChineseKoreanAndJapanese) {  // rule 2
  expect_table({
      {"答案是B", "B"},
      {"我认为答案应该是C", "C"},
      {"答案在视频的结尾，B出现了。", ""},  // 答案 without a link declares nothing
      {"正确答案为（C）。", "C"},
      {"答案：Ｄ", "D"},
      {"我选D。", "D"},
      {"所以选择A。", "A"},
      {"正确选项是【B】", "B"},
      {"选项A描述了一个男人，选项B描述了一只狗。", ""},  // 选项 alone is "option", not a choice
      {"정답은 B입니다.", "B"},
      {"답: C", "C"},
      {"옵션 A가 정답입니다.", "A"},
      {"答えはCです。", "C"},
      {"答えは「B」です。", "B"},
  });
}

TEST(AnswerExtraction, TheFinalDeclarationDecidesEvenOutsideTheChoices) {  // rule 2
  const std::vector<char> abcd{'A', 'B', 'C', 'D'};
  expect_table({
      {"The answer is E.", "", abcd},
      {"Answer: B. On reflection the answer is E.", "", abcd},  // never the earlier distractor
      {"E", "", abcd},
      {"The answer is F", "F", {'A', 'C', 'F'}},  // not contiguous
      {"The answer is B", "", {'A', 'C', 'F'}},
      {"b", "B", {'a', 'b'}},
      {"Answer: M", "M", {'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N'}},
  });
}

TEST(AnswerExtraction, ImplicitEvidenceOnlyWithoutDeclarations) {  // rule 3
  expect_table({
      {"B", "B"},
      {"  b  ", "B"},
      {"(C)", "C"},
      {"**D**", "D"},
      {"`A`", "A"},
      {"Option B.", "B"},
      {"B. The man is cooking.", "B"},
      {"(b) the dog", "B"},
      {"C: the red car", "C"},
      {"D) the kitchen", "D"},
      {"**B**. The man is cooking.", "B"},
      {"The man opens the door (C).", "C"},
      {"I watched the whole video.\nB", "B"},
      {"Having watched it, B", "B"},
      {"The clip is short; C.", "C"},
      {"Among the options, A and D are wrong, so C.", "C"},
      {"Option C. The woman leaves.", "C"},
      {"<answer>Option B: cooking</answer>", "B"},
      {"I watched the whole video.\n__B__", "B"},
  });
}

TEST(AnswerExtraction, SeveralImplicitLabelsOrAnEchoedListAbstain) {  // rule 3
  expect_table({
      {"A. red\nB. blue\nC. green\nD. yellow", ""},
      {"Options:\n(A) red\n(B) blue\n\nB", ""},
      {"(A) is wrong and (B) fits", ""},
      {"<think>Each option:\nA. dancing - no\nB. cooking - yes\nC. running - no</think>\nHe cooks.", ""},
      {"Answer:\nA. red\nB. blue\nC. green", ""},
      {"It could be A, or C.", ""},
      {"A, B", ""},
      {"The man walks, b", ""},  // only a capital counts after a final comma
      {"I watched the whole video.\nb", ""},
  });
}

TEST(AnswerExtraction, ArticleAndPronounAreNotChoices) {  // rule 4
  expect_table({
      {"A cat sits on the mat", ""},
      {"a cat sits on the mat", ""},
      {"A cat sits on the mat.\nIt is black.", ""},
      {"A is correct because the cat sits.", "A"},
      {"A because the cat sits on the mat.", "A"},
      {"A. The cat sits.", "A"},
      {"The answer is a man walking his dog.", ""},
      {"plan b", ""},
      {"the value of c is small", ""},
      {"I think the man is happy.", "", {'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J'}},
  });
}

TEST(AnswerExtraction, AlternativesAbstain) {  // rule 5
  expect_table({
      {"A or B", ""},
      {"Answer: B and C", ""},
      {"The answer is A/B.", ""},
      {"The answer is either A or B.", ""},
      {"A or B is correct.", ""},
      {"Answer: B, C", ""},
      {"答案是A或B", ""},
      {"The answer is B, and C is wrong.", "B"},       // a new clause, not an alternative
      {"Answer: A or B. No — the answer is B.", "B"},  // a later single declaration still wins
  });
}

TEST(AnswerExtraction, LettersInsideWordsNeverCount) {  // rule 6
  expect_table({
      {"The DNA sample is from the USA.", ""},
      {"See https://example.com/(B) for the clip", ""},
      {"Write to team.b@example.com (C)", "C"},
      {"Answer: B2", ""},
      {"Answer: B_1", ""},
      {"The answer is e.g. the red one", ""},
      {"The answer is U.S. history", "", {'A', 'B', 'S', 'U'}},
      {"The answer is A's sister", ""},
      {"The answer is B-tree", ""},
      {"The answer is Bé", ""},
      {"Answer: ΩA", ""},
      {"Un café(B) noir", ""},  // like "person(s)": a bracket glued to a word is no label
      {"If A is correct, the man would stay.", ""},  // a hypothesis declares nothing
      {"C++ is used here", ""},
  });
}

TEST(AnswerExtraction, NormalisationAndScope) {
  EXPECT_EQ(normalize_reply("（Ｂ）：\\text{C} $x$"), "(B):C x");
  EXPECT_EQ(answer_scope("a <answer> B </answer>").text, " B ");
  EXPECT_EQ(answer_scope("no container").kind, AnswerScope::Kind::Whole);
  EXPECT_EQ(answer_scope("\\boxed{1} then <answer>2</answer> then \\boxed {3}").text, "3");
  EXPECT_EQ(answer_scope("<answer>1").kind, AnswerScope::Kind::Malformed);
  // Invalid UTF-8 never crashes and never reads as a letter's neighbour word.
  EXPECT_EQ(extract_choice(std::string("Answer: B \xff\xfe")), "B");
  EXPECT_EQ(extract_choice(std::string("\xc3")), "");
}

}  // namespace
}  // namespace lvrl::rollout
