// `lvrl dataset synth` end to end: the same seed gives byte-identical files (sha256sum of two runs,
// one with 1 encoding thread and one with 2), another seed gives other files, bad options are
// InputErrors naming the option (exit 2 from the command); and a majority guess keyed on
// (question, options), fitted on train, is right on 25 ± 5 % of at least 400 test questions — the
// text alone does not give answers away.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <numeric>

#include "core/dataset.h"
#include "core/error.h"
#include "core/temp_dir.h"
#include "synth/synthesize.h"
#include "tests/support/run_process.h"
#include "tests/video/test_videos.h"

namespace lvrl::synth {
namespace {

using test::ProcessResult;

ProcessResult synth(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"dataset", "synth"};
  argv.insert(argv.end(), args.begin(), args.end());
  test::ProcessOptions options;
  options.separate_stderr = true;
  options.timeout_s = 120;
  return test::run_lvrl(argv, options);
}

// 64×48 videos, half of them test: the options every test here synthesizes with.
SynthOptions tiny_videos(const std::string& out_dir, int64_t videos, uint64_t seed) {
  SynthOptions options;
  options.out_dir = out_dir;
  options.videos = videos;
  options.seed = seed;
  options.width = 64;
  options.height = 48;
  options.test_fraction = 0.5;
  return options;
}

// "HASH  NAME" lines of every file under dir, in name order.
std::string sha256_listing(const std::string& dir) {
  test::ProcessOptions options;
  options.separate_stderr = true;
  const ProcessResult r = test::run_process(
      {"bash", "-c", "cd \"$0\" && find . -type f | LC_ALL=C sort | xargs sha256sum", dir}, options);
  EXPECT_EQ(r.exit_code, 0) << r.error_output;
  return r.output;
}

TEST(SynthCommand, SameSeedGivesIdenticalFiles) {
  TempDir dir("lvrl_synth_cmd");
  auto run = [&](const std::string& out, const std::string& threads) {
    const ProcessResult r = synth({"--out", dir.file(out), "--seed", "3", "--threads", threads, "--videos",
                                   "6", "--size", "64x48", "--test-fraction", "0.5"});
    EXPECT_EQ(r.exit_code, 0) << r.error_output;
    EXPECT_NE(r.output.find("wrote 6 videos (3 train, 3 test"), std::string::npos) << r.output;
    return sha256_listing(dir.file(out));
  };
  const std::string first = run("a", "1");
  const std::string second = run("b", "2");
  EXPECT_EQ(std::count(first.begin(), first.end(), '\n'), 9) << first;  // 6 videos + 3 JSONL files
  EXPECT_EQ(first, second);

  synthesize(tiny_videos(dir.file("c"), 6, 4));  // the same but for the seed, in-process
  const std::string third = sha256_listing(dir.file("c"));
  for (const std::string name : {"train.jsonl", "test.jsonl", "sft.jsonl", "clip00000.mp4"}) {
    auto line_of = [&](const std::string& listing) {
      const size_t at = listing.find(name);
      return listing.substr(listing.rfind('\n', at) + 1, at - listing.rfind('\n', at) - 1);
    };
    EXPECT_NE(line_of(first), line_of(third)) << name << " does not depend on the seed";
  }
}

TEST(SynthCommand, BadOptionsNameTheOption) {
  TempDir dir("lvrl_synth_cmd");
  const ProcessResult r = synth({"--out", dir.file("x"), "--videos", "2", "--seed", "1", "--size", "big"});
  EXPECT_EQ(r.exit_code, 2) << r.error_output;
  EXPECT_NE(r.error_output.find("--size"), std::string::npos) << r.error_output;

  auto expect_error = [&](const std::string& option, auto change) {
    SynthOptions options;
    options.out_dir = dir.file("y");
    options.videos = 2;
    change(options);
    try {
      synthesize(options);
      ADD_FAILURE() << option << ": expected an InputError";
    } catch (const InputError& e) {
      EXPECT_EQ(e.key(), option) << e.what();
    }
  };
  expect_error("--size", [](SynthOptions& o) { o.width = 63; });
  expect_error("--size", [](SynthOptions& o) { o.height = 16; });
  expect_error("--duration", [](SynthOptions& o) { o.duration_s = 5; });
  expect_error("--videos", [](SynthOptions& o) { o.videos = 0; });
  expect_error("--test-fraction", [](SynthOptions& o) { o.test_fraction = 1.5; });
  EXPECT_FALSE(std::filesystem::exists(dir.file("y"))) << "nothing is written before the options are checked";
}

TEST(SynthDatasetBias, MajorityGuessOnTextScoresChance) {
  TempDir dir("lvrl_synth_bias");
  const SynthOptions options = tiny_videos(dir.path(), 180, 2024);
  synthesize(options);
  const auto train = data::read_dataset(dir.file("train.jsonl"), dir.file("videos"));
  const auto test = data::read_dataset(dir.file("test.jsonl"), dir.file("videos"));
  ASSERT_GE(test.size(), 400u);

  auto key = [](const data::Sample& s) {
    return std::accumulate(s.options.begin(), s.options.end(), s.question,
                           [](std::string a, const std::string& b) { return a + "\x1f" + b; });
  };
  std::map<std::string, std::map<std::string, int>> votes;  // key → answer letter → count
  std::map<std::string, int> overall;
  for (const auto& s : train) ++votes[key(s)][s.answer], ++overall[s.answer];
  auto majority = [](const std::map<std::string, int>& counts) {
    std::string best;
    int most = -1;
    for (const auto& [letter, count] : counts) {
      if (count > most) most = count, best = letter;
    }
    return best;
  };
  const std::string fallback = majority(overall);
  int right = 0, seen = 0;
  for (const auto& s : test) {
    const auto it = votes.find(key(s));
    seen += it != votes.end();
    right += (it != votes.end() ? majority(it->second) : fallback) == s.answer;
  }
  const double accuracy = static_cast<double>(right) / test.size();
  EXPECT_NEAR(accuracy, 0.25, 0.05) << right << " of " << test.size() << " right; " << seen
                                    << " test keys were seen in train";
  std::cout << "majority guess on (question, options): " << right << " of " << test.size()
            << " test questions\n";
  // Letters are balanced in both splits: per kind, each letter's count is n/4 rounded down or up.
  for (const auto* split : {&train, &test}) {
    std::map<std::string, std::map<std::string, int>> letters;  // kind → letter → count
    for (const auto& s : *split) ++letters[s.id.substr(s.id.rfind('-') + 1)][s.answer];
    ASSERT_EQ(letters.size(), 5u);
    for (const auto& [kind, counts] : letters) {
      ASSERT_EQ(counts.size(), 4u) << kind;
      for (const auto& [letter, count] : counts)
        EXPECT_NEAR(count, split->size() / 5 / 4.0, 0.75) << kind << " " << letter;
    }
  }
}

}  // namespace
}  // namespace lvrl::synth
