#include "synth/questions.h"

#include <fmt/format.h>

#include "core/error.h"

namespace lvrl::synth {
namespace {

const std::array<const char*, 4> kCounts{"once", "twice", "three times", "four times"};

// "a", "a and b", "a, b and c"
std::string join_words(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == items.size() ? " and " : ", ") + items[i];
  }
  return out;
}

std::string at_time(const Scene& scene, const Segment& segment) {
  const Timeline& t = scene.timeline;
  return fmt::format("{:.1f} s", t.seconds(t.slot_start[static_cast<size_t>(segment.first_slot)]));
}

// The options of a kind whose options are all of `names`: the answer's, and the others shuffled.
Question with_options(QuestionKind kind, std::string text, const std::vector<std::string>& names,
                      size_t answer, size_t take, Rng& rng) {
  Question question;
  question.kind = kind;
  question.text = std::move(text);
  question.answer = names[answer];
  for (size_t i = 0; i < names.size(); ++i) {
    if (i != answer) question.distractors.push_back(names[i]);
  }
  rng.shuffle(question.distractors);
  question.distractors.resize(take);
  return question;
}

std::vector<std::string> colour_names() {
  std::vector<std::string> names;
  for (const Colour& colour : kPalette) names.push_back(colour.name);
  return names;
}

template <typename T, size_t N>
std::vector<std::string> names_of(const std::array<T, N>& values, const char* (*name)(T)) {
  std::vector<std::string> names;
  for (T value : values) names.push_back(name(value));
  return names;
}

std::string panel_story(const Scene& scene) {
  std::vector<std::string> steps;
  for (size_t i = 0; i < scene.panel.size(); ++i) {
    const Segment& s = scene.panel[i];
    steps.push_back(
        fmt::format("{}{} at {}", i == 0 ? "" : "turns ", kPalette[s.value].name, at_time(scene, s)));
  }
  return "The panel in the top-left corner is " + join_words(steps) + ".";
}

std::string shape_story(const Scene& scene) {
  std::vector<std::string> steps;
  for (size_t i = 0; i < scene.shapes.size(); ++i) {
    const Segment& s = scene.shapes[i];
    steps.push_back(fmt::format("{}a {} {} {}", i == 0 ? "" : "then ",
                                shape_name(static_cast<Shape>(s.value)), i == 0 ? "at" : "from",
                                at_time(scene, s)));
  }
  return "The bottom-left corner shows " + join_words(steps) + " until the end.";
}

std::string motion_story(Direction direction) {
  const char* from = "";
  const char* to = "";
  switch (direction) {
    case Direction::Left:
      from = "right", to = "left";
      break;
    case Direction::Right:
      from = "left", to = "right";
      break;
    case Direction::Up:
      from = "bottom", to = "top";
      break;
    case Direction::Down:
      from = "top", to = "bottom";
      break;
  }
  return fmt::format(
      "The ball in the bottom-right corner starts at the {} edge of its corner and ends at the {} "
      "edge, so it moves {}.",
      from, to, direction_name(direction));
}

}  // namespace

const char* kind_name(QuestionKind kind) {
  // Indexed by the enumerator's value: kQuestionKinds lists them in declaration order.
  constexpr std::array<const char*, 5> kNames{"colour_first", "colour_last", "flash_count", "end_shape",
                                              "motion"};
  const auto index = static_cast<size_t>(kind);
  LVRL_ASSERT(index < kNames.size(), "unknown QuestionKind");
  return kNames[index];
}

std::vector<Question> make_questions(const Scene& scene, Rng& rng) {
  const size_t take = kOptions - 1;
  std::vector<Question> out;

  const std::vector<std::string> colours = colour_names();
  Question first = with_options(QuestionKind::ColourFirst,
                                "Which colour does the panel in the top-left corner show first?", colours,
                                static_cast<size_t>(scene.panel.front().value), take, rng);
  first.reasoning = panel_story(scene) + fmt::format(" The first colour it shows is {}.", first.answer);
  out.push_back(std::move(first));

  Question last =
      with_options(QuestionKind::ColourLast, "Which colour does the panel in the top-left corner show last?",
                   colours, static_cast<size_t>(scene.panel.back().value), take, rng);
  last.reasoning = panel_story(scene) + fmt::format(" The last colour it shows is {}.", last.answer);
  out.push_back(std::move(last));

  const std::vector<std::string> counts(kCounts.begin(), kCounts.end());
  Question flashes =
      with_options(QuestionKind::FlashCount, "How many times does the lamp in the top-right corner light up?",
                   counts, scene.flashes.size() - 1, take, rng);
  std::vector<std::string> times;
  for (const Segment& s : scene.flashes) times.push_back(at_time(scene, s));
  flashes.reasoning = fmt::format("The lamp in the top-right corner lights up at {}{}, so it lights up {}.",
                                  join_words(times),
                                  scene.flashes.size() > 1 ? " and is dark in between" : "", flashes.answer);
  out.push_back(std::move(flashes));

  Question end = with_options(
      QuestionKind::EndShape, "Which shape is in the bottom-left corner at the end of the video?",
      names_of(kShapes, shape_name), static_cast<size_t>(scene.shapes.back().value), take, rng);
  end.reasoning = shape_story(scene) + fmt::format(" At the end it shows a {}.", end.answer);
  out.push_back(std::move(end));

  Question motion =
      with_options(QuestionKind::Motion, "Which way does the ball in the bottom-right corner move?",
                   names_of(kDirections, direction_name), static_cast<size_t>(scene.motion), take, rng);
  motion.reasoning = motion_story(scene.motion);
  out.push_back(std::move(motion));
  return out;
}

Choice lay_out(const Question& question, int letter) {
  LVRL_ASSERT(letter >= 0 && letter < kOptions, "lay_out: letter out of range");
  LVRL_ASSERT(question.distractors.size() == kOptions - 1, "lay_out: a question needs 3 distractors");
  Choice choice;
  size_t next = 0;
  for (int i = 0; i < kOptions; ++i) {
    const std::string& text = i == letter ? question.answer : question.distractors[next++];
    choice.options.push_back(fmt::format("{}. {}", static_cast<char>('A' + i), text));
  }
  choice.answer = std::string(1, static_cast<char>('A' + letter));
  return choice;
}

std::vector<int> balanced_letters(int64_t count, Rng& rng) {
  // Whole rounds of A..D, then the remainder's letters drawn at random, so no letter is favoured
  // when several kinds' lists are pooled.
  std::vector<int> spare{0, 1, 2, 3};
  rng.shuffle(spare);
  std::vector<int> letters;
  for (int64_t i = 0; i < count - count % kOptions; ++i) letters.push_back(static_cast<int>(i % kOptions));
  for (int64_t i = 0; i < count % kOptions; ++i) letters.push_back(spare[static_cast<size_t>(i)]);
  rng.shuffle(letters);
  return letters;
}

}  // namespace lvrl::synth
