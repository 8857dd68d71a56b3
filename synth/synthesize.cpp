#include "synth/synthesize.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "synth/questions.h"
#include "synth/render.h"
#include "synth/scene.h"
#include "video/video_writer.h"

namespace lvrl::synth {
namespace {

namespace fs = std::filesystem;

// Letter streams sit far above any video's stream id (the video index).
constexpr uint64_t kLetterStream = uint64_t{1} << 62;

enum Split { kTrain = 0, kTest = 1 };

struct Row {
  int64_t video = 0;
  const Question* question = nullptr;
  Choice choice;
};

void check_options(const SynthOptions& o) {
  if (o.videos < 1 || o.videos > 1000000) {
    throw InputError({"", 0, "--videos", std::to_string(o.videos)}, "expected 1 to 1000000 videos");
  }
  if (o.width < 32 || o.height < 32 || o.width > 4096 || o.height > 4096 || o.width % 2 != 0 ||
      o.height % 2 != 0) {
    throw InputError({"", 0, "--size", fmt::format("{}x{}", o.width, o.height)},
                     "expected even width and height in [32, 4096] (H.264 4:2:0)");
  }
  if (!(o.test_fraction >= 0 && o.test_fraction <= 1)) {
    throw InputError({"", 0, "--test-fraction", fmt::format("{}", o.test_fraction)},
                     "expected a number in [0, 1]");
  }
  if (o.out_dir.empty()) throw InputError({"", 0, "--out", ""}, "expected the output directory");
}

void make_directory(const fs::path& dir) {
  std::error_code error;
  fs::create_directories(dir, error);
  if (error || !fs::is_directory(dir)) {
    throw InputError({dir.string(), 0, "--out", ""}, "cannot create the directory: " + error.message());
  }
}

// Written to a temporary name and renamed, so a reader never sees half a file.
void write_jsonl(const fs::path& path, const std::vector<Row>& rows, uint64_t seed, bool with_reasoning) {
  const fs::path partial = path.string() + ".partial";
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    for (const Row& row : rows) {
      nlohmann::ordered_json line;
      line["id"] = fmt::format("synth{}-{:05d}-{}", seed, row.video, kind_name(row.question->kind));
      line["video"] = video_name(row.video);
      line["question"] = row.question->text;
      line["options"] = row.choice.options;
      if (with_reasoning) line["reasoning"] = row.question->reasoning;
      line["answer"] = row.choice.answer;
      line["problem_type"] = "multiple choice";
      out << line.dump() << '\n';
    }
    out.close();
    if (!out) throw InputError({partial.string(), 0, "", ""}, "cannot write the file");
  }
  fs::rename(partial, path);
}

void encode_video(const Scene& scene, const SynthOptions& o, const fs::path& path) {
  const Layout layout = make_layout(o.width, o.height);
  const fs::path partial = path.string() + ".partial";
  video::VideoWriter writer;
  writer.open(partial.string(), o.width, o.height, o.fps, o.gop, o.crf);
  std::vector<uint8_t> rgb;  // [height, width, 3]
  for (int64_t frame = 0; frame < scene.timeline.frames; ++frame) {
    render_frame(scene, layout, frame, rgb);
    writer.write_rgb(rgb.data());
  }
  writer.finish();
  fs::rename(partial, path);
}

// Each video on whichever thread is free; the first failure stops the rest and is rethrown.
void encode_all(const std::vector<Scene>& scenes, const SynthOptions& o, const fs::path& video_dir) {
  const int threads = static_cast<int>(std::min<int64_t>(
      o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency()), scenes.size()));
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (int64_t i = next++; i < static_cast<int64_t>(scenes.size()) && !failed; i = next++) {
      try {
        encode_video(scenes[static_cast<size_t>(i)], o, video_dir / video_name(i));
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!failed.exchange(true)) error = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& thread : pool) thread.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace

std::string video_name(int64_t index) {
  return fmt::format("clip{:05d}.mp4", index);
}

SynthSummary synthesize(const SynthOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  check_options(options);
  const Timeline timeline = make_timeline(options.duration_s, options.fps, options.grid);
  SynthSummary summary;
  summary.test_videos = std::llround(static_cast<double>(options.videos) * options.test_fraction);
  summary.train_videos = options.videos - summary.test_videos;
  summary.sampled_frames = timeline.slots();

  std::vector<Scene> scenes;
  std::vector<std::vector<Question>> questions;
  for (int64_t i = 0; i < options.videos; ++i) {
    Rng rng(options.seed, static_cast<uint64_t>(i));
    scenes.push_back(make_scene(timeline, rng));
    questions.push_back(make_questions(scenes.back(), rng));
  }

  // Rows video by video, kinds in order; each (split, kind) has its own balanced letters.
  std::vector<Row> rows[2];
  for (int split : {kTrain, kTest}) {
    const int64_t first = split == kTrain ? 0 : summary.train_videos;
    const int64_t count = split == kTrain ? summary.train_videos : summary.test_videos;
    std::vector<std::vector<int>> letters;
    for (size_t k = 0; k < kQuestionKinds.size(); ++k) {
      Rng rng(options.seed, kLetterStream | (static_cast<uint64_t>(split) << 8) | k);
      letters.push_back(balanced_letters(count, rng));
    }
    for (int64_t v = 0; v < count; ++v) {
      for (size_t k = 0; k < kQuestionKinds.size(); ++k) {
        const Question& question = questions[static_cast<size_t>(first + v)][k];
        rows[split].push_back({first + v, &question, lay_out(question, letters[k][static_cast<size_t>(v)])});
      }
    }
  }
  summary.train_questions = static_cast<int64_t>(rows[kTrain].size());
  summary.test_questions = static_cast<int64_t>(rows[kTest].size());

  const fs::path out_dir(options.out_dir);
  make_directory(out_dir / "videos");
  encode_all(scenes, options, out_dir / "videos");  // before the rows, which name the videos
  write_jsonl(out_dir / "train.jsonl", rows[kTrain], options.seed, false);
  write_jsonl(out_dir / "test.jsonl", rows[kTest], options.seed, false);
  write_jsonl(out_dir / "sft.jsonl", rows[kTrain], options.seed, true);
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace lvrl::synth
