// The pure part of dataset synthesis: the random streams, the slot timeline against a float64
// reimplementation of qwen-vl-utils' frame choice, and the invariants of scenes and questions over
// thousands of seeds (every event >= 2 slots, answers uniform, letters balanced, options distinct).
#include "synth/scene.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <set>

#include "core/error.h"
#include "synth/questions.h"
#include "synth/rng.h"
#include "synth/timeline.h"

namespace lvrl::synth {
namespace {

TEST(SynthRng, MatchesSplitMix64AndMt19937_64) {
  // SplitMix64's first output from state 0 (Vigna's reference splitmix64.c).
  EXPECT_EQ(mix_seed(0), 0xe220a8397b1dcdafULL);
  // A power-of-two range rejects nothing: below(2^k) is the engine's output mod 2^k.
  std::mt19937_64 engine(mix_seed(mix_seed(7) ^ 3));
  Rng rng(7, 3);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(rng.below(64), engine() % 64) << "draw " << i;
}

TEST(SynthRng, BelowIsUniform) {
  Rng rng(1, 0);
  std::vector<int> counts(6);
  const int draws = 60000;
  for (int i = 0; i < draws; ++i) ++counts[rng.below(6)];
  for (int c : counts) EXPECT_NEAR(c, draws / 6, 300);  // sd ≈ 91: > 3 sd
  std::vector<int> values{0, 1, 2, 3, 4};
  std::map<std::vector<int>, int> orders;
  for (int i = 0; i < 12000; ++i) {
    std::vector<int> v = values;
    rng.shuffle(v);
    ++orders[v];
  }
  EXPECT_EQ(orders.size(), 120u);                                         // every permutation of 5
  for (const auto& [order, count] : orders) EXPECT_NEAR(count, 100, 45);  // sd 10
}

// qwen-vl-utils in float64: n = clamp(frames / fps · 2, 4, 16) rounded down to even; indices
// round(linspace(0, frames - 1, n)) (no .5 ties for the sizes below).
std::vector<int64_t> reference_indices(int64_t frames, int fps) {
  double n = std::min(std::max(static_cast<double>(frames) / fps * 2.0, 4.0), 16.0);
  const auto count = static_cast<int64_t>(std::floor(n / 2)) * 2;
  std::vector<int64_t> out;
  for (int64_t j = 0; j < count; ++j) {
    out.push_back(std::llround(static_cast<double>(j) * static_cast<double>(frames - 1) / (count - 1)));
  }
  return out;
}

TEST(SynthTimeline, SlotsHoldOneSampledFrameEach) {
  for (auto [duration, fps] : {std::pair{8.0, 10}, {8.0, 12}, {9.5, 10}, {20.0, 10}, {13.0, 7}}) {
    SCOPED_TRACE(testing::Message() << duration << " s at " << fps << " fps");
    const Timeline t = make_timeline(duration, fps, SampleGrid{});
    EXPECT_EQ(t.frames, std::llround(duration * fps));
    EXPECT_EQ(t.sampled, reference_indices(t.frames, fps));
    ASSERT_EQ(t.slot_start.size(), t.sampled.size() + 1);
    EXPECT_EQ(t.slot_start.front(), 0);
    EXPECT_EQ(t.slot_start.back(), t.frames);
    for (int64_t j = 0; j < t.slots(); ++j) {
      EXPECT_EQ(t.slot_of(t.sampled[j]), j);
      // Boundaries half-way between samples: the frames of slot j - 1 after its sample and those of
      // slot j before its sample differ in number by at most one.
      if (j > 0) {
        const int64_t after = t.slot_start[j] - 1 - t.sampled[j - 1], before = t.sampled[j] - t.slot_start[j];
        EXPECT_LE(std::abs(after - before), 1) << "slot " << j;
      }
    }
  }
}

TEST(SynthTimeline, TooShortForTheQuestionsNamesDuration) {
  try {
    make_timeline(6, 10, SampleGrid{});  // 12 sampled frames
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), "--duration");
    EXPECT_EQ(e.value(), "6");
    EXPECT_NE(e.problem().find("samples 12 frames"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_timeline(0, 10, SampleGrid{}), InputError);
}

void expect_covering(const std::vector<Segment>& segments, int64_t slots, const char* what) {
  int64_t next = 0;
  std::set<int> values;
  for (const Segment& s : segments) {
    EXPECT_EQ(s.first_slot, next) << what;
    EXPECT_GE(s.slots, 2) << what;
    values.insert(s.value);
    next = s.end_slot();
  }
  EXPECT_EQ(next, slots) << what;
  EXPECT_EQ(values.size(), segments.size()) << what << ": values must be distinct";
}

TEST(SynthScene, EveryEventLastsTwoSlotsAndAnswersAreUniform) {
  const Timeline timeline = make_timeline(8, 10, SampleGrid{});
  std::map<int, int> first_colour, last_colour, flash_count, end_shape, motion;
  const int scenes = 3000;
  for (int i = 0; i < scenes; ++i) {
    Rng rng(42, static_cast<uint64_t>(i));
    const Scene scene = make_scene(timeline, rng);
    expect_covering(scene.panel, timeline.slots(), "panel");
    expect_covering(scene.shapes, timeline.slots(), "shapes");
    ASSERT_GE(scene.panel.size(), 3u);
    ASSERT_GE(scene.shapes.size(), 2u);
    ASSERT_GE(scene.flashes.size(), 1u);
    ASSERT_LE(scene.flashes.size(), 4u);
    EXPECT_GE(scene.flashes.front().first_slot, 1);
    EXPECT_LE(scene.flashes.back().end_slot(), timeline.slots() - 1);
    for (size_t f = 0; f < scene.flashes.size(); ++f) {
      EXPECT_GE(scene.flashes[f].slots, 2);
      if (f > 0) {
        EXPECT_GE(scene.flashes[f].first_slot - scene.flashes[f - 1].end_slot(), 2);
      }
    }
    ++first_colour[scene.panel.front().value];
    ++last_colour[scene.panel.back().value];
    ++flash_count[static_cast<int>(scene.flashes.size())];
    ++end_shape[scene.shapes.back().value];
    ++motion[static_cast<int>(scene.motion)];
  }
  // Uniform answers: each count within 5 sd of its mean (sd = sqrt(n p (1 - p))).
  auto expect_uniform = [&](const std::map<int, int>& counts, int options, const char* what) {
    EXPECT_EQ(static_cast<int>(counts.size()), options) << what;
    const double p = 1.0 / options, sd = std::sqrt(scenes * p * (1 - p));
    for (const auto& [value, count] : counts) EXPECT_NEAR(count, scenes * p, 5 * sd) << what << " " << value;
  };
  expect_uniform(first_colour, 6, "first colour");
  expect_uniform(last_colour, 6, "last colour");
  expect_uniform(flash_count, 4, "flash count");
  expect_uniform(end_shape, 4, "end shape");
  expect_uniform(motion, 4, "motion");
}

TEST(SynthQuestions, AnswerLandsOnItsLetterAmongDistinctOptions) {
  const Timeline timeline = make_timeline(8, 10, SampleGrid{});
  Rng rng(5, 0);
  const Scene scene = make_scene(timeline, rng);
  const std::vector<Question> questions = make_questions(scene, rng);
  ASSERT_EQ(questions.size(), kQuestionKinds.size());
  EXPECT_EQ(questions[0].answer, kPalette[scene.panel.front().value].name);
  EXPECT_EQ(questions[1].answer, kPalette[scene.panel.back().value].name);
  EXPECT_EQ(questions[3].answer, shape_name(static_cast<Shape>(scene.shapes.back().value)));
  EXPECT_EQ(questions[4].answer, direction_name(scene.motion));
  for (const Question& q : questions) {
    EXPECT_NE(q.reasoning.find(q.answer), std::string::npos) << q.reasoning;
    for (int letter = 0; letter < kOptions; ++letter) {
      const Choice choice = lay_out(q, letter);
      ASSERT_EQ(choice.options.size(), 4u);
      EXPECT_EQ(choice.answer, std::string(1, static_cast<char>('A' + letter)));
      EXPECT_EQ(choice.options[letter], std::string(1, static_cast<char>('A' + letter)) + ". " + q.answer);
      std::set<std::string> texts(choice.options.begin(), choice.options.end());
      EXPECT_EQ(texts.size(), 4u);
    }
  }
}

TEST(SynthQuestions, BalancedLetters) {
  Rng rng(9, 1);
  for (int64_t count : {0, 1, 7, 400, 401}) {
    const std::vector<int> letters = balanced_letters(count, rng);
    ASSERT_EQ(static_cast<int64_t>(letters.size()), count);
    std::vector<int64_t> per(4);
    for (int letter : letters) ++per[letter];
    for (int64_t c : per) EXPECT_TRUE(c == count / 4 || c == count / 4 + 1) << count;
  }
}

}  // namespace
}  // namespace lvrl::synth
