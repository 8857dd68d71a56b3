// The multiple-choice questions a Scene answers, and how they become dataset rows.
//
// Five kinds, one per video each: the panel's first colour, its last colour, how many times the
// lamp lights up, the shape at the end, the ball's direction. Each has 4 options. Leaking the answer
// through the text is ruled out by construction: a kind's question is one fixed sentence, its answer
// is uniform over its options (synth/scene.h), the letter it lands on is drawn from a balanced
// list per split and kind (so letters are balanced, and independent of everything else), and the
// other options are shuffled into the remaining places. A guess keyed on (question, options) can
// therefore do no better than 1 in 4.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "synth/rng.h"
#include "synth/scene.h"

namespace lvrl::synth {

enum class QuestionKind { ColourFirst, ColourLast, FlashCount, EndShape, Motion };
constexpr std::array<QuestionKind, 5> kQuestionKinds{QuestionKind::ColourFirst, QuestionKind::ColourLast,
                                                     QuestionKind::FlashCount, QuestionKind::EndShape,
                                                     QuestionKind::Motion};
const char* kind_name(QuestionKind kind);  // "colour_first", ... (part of each row's id)

constexpr int kOptions = 4;

struct Question {
  QuestionKind kind = QuestionKind::ColourFirst;
  std::string text;
  std::string answer;                    // the right option's text
  std::vector<std::string> distractors;  // kOptions - 1 wrong options' texts, in random order
  std::string reasoning;                 // a short trace: what the video shows, then the answer
};

// The scene's question of every kind, in kQuestionKinds order.
std::vector<Question> make_questions(const Scene& scene, Rng& rng);

// A question laid out for a dataset row: the answer at letter `letter` (0 = A), the distractors in
// the other places in their order; options read "A. red".
struct Choice {
  std::vector<std::string> options;  // [kOptions]
  std::string answer;                // "A".."D"
};
Choice lay_out(const Question& question, int letter);

// `count` letters in 0..kOptions-1, each count/kOptions or one more times (which ones get one more is
// random), in random order.
std::vector<int> balanced_letters(int64_t count, Rng& rng);

}  // namespace lvrl::synth
