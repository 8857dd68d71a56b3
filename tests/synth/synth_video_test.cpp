// The synthetic dataset as the demo would see it: every question's answer is checked against the
// pixels of the frames configs/demo.yaml's recipe samples (pipeline/video_recipe.h's pick_frames; the
// frames at their coded size, where the demo would also resize them), read with classifiers written
// here from the layout's geometry — nearest palette colour of the panel, brightness of the lamp,
// best-matching shape mask, the ball's centroid. Every colour, shape, flash and gap must span at
// least 2 of those frames. The files are the dataset reader's, and the splits share no video.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "core/config.h"
#include "core/dataset.h"
#include "core/temp_dir.h"
#include "pipeline/preprocess.h"
#include "pipeline/video_recipe.h"
#include "synth/render.h"
#include "synth/synthesize.h"
#include "video/probe.h"
#include "video/sampling.h"

namespace lvrl::synth {
namespace {

pipeline::VideoRecipe demo_recipe() {
  return pipeline::preprocess_options_from(Config::load(std::string(LVRL_SOURCE_DIR) + "/configs/demo.yaml"))
      .recipe;
}

// One sampled frame, [H, W, 3] uint8 contiguous.
class Pixels {
 public:
  explicit Pixels(at::Tensor frame) : frame_(frame.contiguous()), h_(frame.size(0)), w_(frame.size(1)) {}
  double channel(int x, int y, int c) const {
    return frame_.data_ptr<uint8_t>()[(static_cast<int64_t>(y) * w_ + x) * 3 + c];
  }
  double luma(int x, int y) const {
    return 0.299 * channel(x, y, 0) + 0.587 * channel(x, y, 1) + 0.114 * channel(x, y, 2);
  }
  std::array<double, 3> mean(int x0, int y0, int x1, int y1) const {  // over [x0, x1) × [y0, y1)
    std::array<double, 3> sum{};
    for (int y = y0; y < y1; ++y) {
      for (int x = x0; x < x1; ++x) {
        for (int c = 0; c < 3; ++c) sum[c] += channel(x, y, c);
      }
    }
    for (double& s : sum) s /= (x1 - x0) * (y1 - y0);
    return sum;
  }

 private:
  at::Tensor frame_;
  int64_t h_, w_;
};

// The panel's colour: the palette entry nearest the mean of its interior (2 px in from the edges).
std::string panel_colour(const Pixels& p, const Layout& l, double* distance) {
  const Rect& r = l.panel;
  const auto mean = p.mean(r.x + 2, r.y + 2, r.x + r.width - 2, r.y + r.height - 2);
  std::string best;
  *distance = 1e9;
  for (const Colour& c : kPalette) {
    const double d = std::hypot(mean[0] - c.r, mean[1] - c.g, mean[2] - c.b);
    if (d < *distance) *distance = d, best = c.name;
  }
  return best;
}

// Lit: the lamp's centre (a square of half its radius) is brighter than half-way from dark to lit.
bool lamp_lit(const Pixels& p, const Layout& l) {
  const int cx = l.lamp_x2 / 2, cy = l.lamp_y2 / 2, half = std::max(1, l.lamp_radius / 2);
  double sum = 0;
  for (int y = cy - half; y < cy + half; ++y) {
    for (int x = cx - half; x < cx + half; ++x) sum += p.luma(x, y);
  }
  return sum / (4 * half * half) > 160;
}

// The shape whose ideal mask (pixel centres inside, in pixel units) differs least from the frame.
std::string shape_seen(const Pixels& p, const Layout& l, double* margin) {
  const double cx = l.shape_x2 / 2.0, cy = l.shape_y2 / 2.0, r = l.shape_radius;
  const std::map<std::string, std::function<bool(double, double)>> masks{
      {"square", [&](double dx, double dy) { return std::abs(dx) <= r && std::abs(dy) <= r; }},
      {"circle", [&](double dx, double dy) { return dx * dx + dy * dy <= r * r; }},
      {"triangle", [&](double dx, double dy) { return std::abs(dy) <= r && 2 * std::abs(dx) <= dy + r; }},
      {"cross", [&](double dx, double dy) {
         const double arm =
             std::floor(2 * r / 3) / 2;  // the renderer's arm: a third of the side, whole half pixels
         return std::abs(dx) <= r && std::abs(dy) <= r && (std::abs(dx) <= arm || std::abs(dy) <= arm);
       }}};
  std::vector<std::pair<double, std::string>> scores;
  for (const auto& [name, inside] : masks) {
    double error = 0;
    for (int y = static_cast<int>(cy - r) - 2; y <= static_cast<int>(cy + r) + 2; ++y) {
      for (int x = static_cast<int>(cx - r) - 2; x <= static_cast<int>(cx + r) + 2; ++x) {
        const double want = inside(x + 0.5 - cx, y + 0.5 - cy) ? kForeground.r : kBackground.r;
        error += std::abs(p.luma(x, y) - want);
      }
    }
    scores.emplace_back(error, name);
  }
  std::sort(scores.begin(), scores.end());
  *margin = scores[1].first / std::max(scores[0].first, 1.0);
  return scores[0].second;
}

// The centroid of the bright pixels in the ball's quadrant.
std::pair<double, double> ball_position(const Pixels& p, const Layout& l) {
  const Rect& r = l.motion;
  double sx = 0, sy = 0, n = 0;
  for (int y = r.y; y < r.y + r.height; ++y) {
    for (int x = r.x; x < r.x + r.width; ++x) {
      if (p.luma(x, y) > 134) sx += x + 0.5, sy += y + 0.5, ++n;
    }
  }
  EXPECT_GT(n, 0) << "no ball in its quadrant";
  return {sx / std::max(n, 1.0), sy / std::max(n, 1.0)};
}

template <typename T>
std::vector<std::pair<T, int>> runs(const std::vector<T>& values) {
  std::vector<std::pair<T, int>> out;
  for (const T& v : values) {
    if (out.empty() || out.back().first != v) out.emplace_back(v, 0);
    ++out.back().second;
  }
  return out;
}

std::string answer_text(const data::Sample& s) {
  const int letter = s.answer.at(0) - 'A';
  return s.options.at(letter).substr(3);  // "B. green" → "green"
}

// Checks one video's questions against the frames the demo recipe samples from it.
void check_video(const std::string& path, const std::vector<data::Sample>& questions,
                 const pipeline::VideoRecipe& recipe, int width, int height) {
  SCOPED_TRACE(path);
  const video::VideoInfo info = video::probe(path);
  const pipeline::FramePick pick = pipeline::pick_frames(recipe, info);
  ASSERT_EQ(pick.times.size(), 16u);
  video::OutputSize size;
  size.width = width;
  size.height = height;
  const video::SampledFrames sampled =
      video::sample_frames(path, video::SamplingPlan::at_times(pick.times), size);
  ASSERT_TRUE(sampled.warnings.empty());
  const Layout layout = make_layout(width, height);

  std::vector<std::string> colours, shapes;
  std::vector<bool> lit;
  std::vector<std::pair<double, double>> ball;
  for (int64_t i = 0; i < sampled.frames.size(0); ++i) {
    const Pixels p(sampled.frames[i]);
    double distance = 0, margin = 0;
    colours.push_back(panel_colour(p, layout, &distance));
    EXPECT_LT(distance, 40) << "frame " << i << ": the panel is no palette colour";
    shapes.push_back(shape_seen(p, layout, &margin));
    EXPECT_GT(margin, 1.5) << "frame " << i << ": the shape is ambiguous";
    lit.push_back(lamp_lit(p, layout));
    ball.push_back(ball_position(p, layout));
  }
  const auto colour_runs = runs(colours), shape_runs = runs(shapes);
  const auto lamp_runs = runs(lit);
  for (const auto& [colour, frames] : colour_runs) EXPECT_GE(frames, 2) << "colour " << colour;
  for (const auto& [shape, frames] : shape_runs) EXPECT_GE(frames, 2) << "shape " << shape;
  EXPECT_FALSE(lit.front());
  EXPECT_FALSE(lit.back());
  int flashes = 0;
  for (size_t r = 0; r < lamp_runs.size(); ++r) {
    flashes += lamp_runs[r].first;
    if (r > 0 && r + 1 < lamp_runs.size()) {
      EXPECT_GE(lamp_runs[r].second, 2) << "lamp run " << r;
    }
  }

  const std::map<std::string, int> counts{{"once", 1}, {"twice", 2}, {"three times", 3}, {"four times", 4}};
  for (const data::Sample& q : questions) {
    SCOPED_TRACE(q.id + ": " + q.question + " → " + answer_text(q));
    const std::string answer = answer_text(q);
    const std::string kind = q.id.substr(q.id.rfind('-') + 1);
    if (kind == "colour_first") {
      EXPECT_EQ(colour_runs.front().first, answer);
    } else if (kind == "colour_last") {
      EXPECT_EQ(colour_runs.back().first, answer);
    } else if (kind == "flash_count") {
      EXPECT_EQ(flashes, counts.at(answer));
    } else if (kind == "end_shape") {
      EXPECT_EQ(shape_runs.back().first, answer);
    } else if (kind == "motion") {
      const bool horizontal = answer == "left" || answer == "right";
      const double sign = answer == "right" || answer == "down" ? 1 : -1;
      const double travel = horizontal ? layout.motion.width : layout.motion.height;
      auto along = [&](size_t i) { return sign * (horizontal ? ball[i].first : ball[i].second); };
      auto across = [&](size_t i) { return horizontal ? ball[i].second : ball[i].first; };
      EXPECT_GT(along(ball.size() - 1) - along(0), 0.4 * travel) << "the ball does not move " << answer;
      EXPECT_NEAR(across(ball.size() - 1), across(0), 1.0);
      for (size_t i = 1; i < ball.size(); ++i) EXPECT_GE(along(i), along(i - 1) - 0.5) << "frame " << i;
    } else {
      ADD_FAILURE() << "unknown question kind " << kind;
    }
  }
}

std::map<std::string, std::vector<data::Sample>> by_video(const std::vector<data::Sample>& samples) {
  std::map<std::string, std::vector<data::Sample>> out;
  for (const data::Sample& s : samples) out[s.video].push_back(s);
  return out;
}

class SynthDataset : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(SynthDataset, AnswersAreWhatTheSampledFramesShow) {
  const auto [width, height] = GetParam();
  TempDir dir("lvrl_synth");
  SynthOptions options;
  options.out_dir = dir.path();
  options.videos = 16;
  options.seed = 11;
  options.width = width;
  options.height = height;
  options.test_fraction = 0.25;
  const SynthSummary summary = synthesize(options);
  EXPECT_EQ(summary.train_videos, 12);
  EXPECT_EQ(summary.test_videos, 4);
  EXPECT_EQ(summary.sampled_frames, 16);

  const pipeline::VideoRecipe recipe = demo_recipe();
  // The events are timed for this recipe's frame choice (synth/timeline.h's defaults).
  EXPECT_EQ(recipe.fps, options.grid.fps);
  EXPECT_EQ(recipe.min_frames, options.grid.min_frames);
  EXPECT_EQ(recipe.max_frames, options.grid.max_frames);

  const std::string videos = dir.file("videos");
  const auto train = data::read_dataset(dir.file("train.jsonl"), videos);
  const auto test = data::read_dataset(dir.file("test.jsonl"), videos);
  EXPECT_EQ(static_cast<int64_t>(train.size()), summary.train_questions);
  EXPECT_EQ(train.size(), 60u);
  EXPECT_EQ(test.size(), 20u);
  std::set<std::string> train_videos;
  for (const auto& s : train) train_videos.insert(s.video);
  for (const auto& s : test) EXPECT_EQ(train_videos.count(s.video), 0u) << s.video << " is in both splits";
  for (const auto* split : {&train, &test}) {
    for (const auto& [video, questions] : by_video(*split)) {
      EXPECT_EQ(questions.size(), 5u);
      check_video(video, questions, recipe, width, height);
      for (const auto& q : questions) EXPECT_EQ(q.problem_type, "multiple choice");
    }
  }
  const auto sft = data::read_dataset(dir.file("sft.jsonl"), videos);
  ASSERT_EQ(sft.size(), train.size());
  for (size_t i = 0; i < sft.size(); ++i) {
    EXPECT_EQ(sft[i].id, train[i].id);
    EXPECT_EQ(sft[i].options, train[i].options);
    EXPECT_EQ(sft[i].answer, train[i].answer);
    EXPECT_NE(sft[i].reasoning.find(answer_text(sft[i])), std::string::npos) << sft[i].reasoning;
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, SynthDataset, ::testing::Values(std::pair{64, 48}, std::pair{96, 64}),
                         [](const auto& info) {
                           return std::to_string(info.param.first) + "x" + std::to_string(info.param.second);
                         });

}  // namespace
}  // namespace lvrl::synth
