#include "core/dataset.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "tests/support/expect_error.h"
#include "tests/support/files.h"

namespace lvrl::data {
namespace {

namespace fs = std::filesystem;

// A temporary tree:  root/videos/{a.mp4, sub/b.mp4}, root/outside/secret.mp4, root/videos2/.
class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    videos_ = root_ / "videos";
    fs::create_directories(videos_ / "sub");
    fs::create_directories(root_ / "outside");
    fs::create_directories(root_ / "videos2");
    touch(videos_ / "a.mp4");
    touch(videos_ / "sub" / "b.mp4");
    touch(root_ / "outside" / "secret.mp4");
    touch(root_ / "videos2" / "x.mp4");
    jsonl_ = (root_ / "data.jsonl").string();
  }

  static void touch(const fs::path& path) { test::write_file(path.string(), "not really a video"); }

  void write_jsonl(const std::string& text) { test::write_file(jsonl_, text); }

  std::vector<Sample> read(const std::string& text) {
    write_jsonl(text);
    return read_dataset(jsonl_, videos_.string());
  }

  std::string video(const std::string& relative) { return (videos_ / relative).string(); }

  // Reading `text` fails with an InputError at `line`, naming `key`, whose message contains `words`.
  void expect_error(const std::string& text, int line, const std::string& key, const std::string& words) {
    SCOPED_TRACE(text);
    write_jsonl(text);
    const InputError e = test::expect_input_error([&] { read_dataset(jsonl_, videos_.string()); }, key);
    EXPECT_EQ(e.file(), jsonl_) << e.what();
    EXPECT_EQ(e.line(), line) << e.what();
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos)
        << "expected '" << words << "' in: " << e.what();
    EXPECT_NE(std::string(e.what()).find(jsonl_ + ":" + std::to_string(line)), std::string::npos) << e.what();
  }

  // resolve_video_path(videos_, relative) fails naming `relative`, with `words` in the message.
  void expect_path_error(const std::string& relative, const std::string& words) {
    SCOPED_TRACE("video path '" + relative + "'");
    InputWhere where{jsonl_, 4, "video", relative};
    try {
      std::string resolved = resolve_video_path(videos_.string(), relative, where);
      ADD_FAILURE() << "accepted, resolved to " << resolved;
    } catch (const InputError& e) {
      EXPECT_EQ(e.line(), 4);
      EXPECT_EQ(e.value(), relative);
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos)
          << "expected '" << words << "' in: " << e.what();
    }
  }

  const TempDir temp_{"lvrl-dataset-test"};
  const fs::path root_ = temp_.path();
  fs::path videos_;
  std::string jsonl_;
};

TEST_F(DatasetTest, ReadsOurFormat) {
  std::vector<Sample> samples =
      read(R"({"id": "q1", "video": "a.mp4", "question": "What happens?", "options": ["A. run", "B. sit"],)"
           R"( "answer": "A", "problem_type": "multiple choice", "reasoning": "They run."})"
           "\n"
           "\n"
           "   \n"
           R"({"id": "q2", "video": "sub/b.mp4", "question": "Why?", "answer": "Because it rains."})"
           "\n");
  ASSERT_EQ(samples.size(), 2u);
  const Sample& first = samples[0];
  EXPECT_EQ(first.id, "q1");
  EXPECT_EQ(first.video, video("a.mp4"));
  EXPECT_EQ(first.question, "What happens?");
  EXPECT_EQ(first.options, (std::vector<std::string>{"A. run", "B. sit"}));
  EXPECT_EQ(first.answer, "A");
  EXPECT_EQ(first.problem_type, "multiple choice");
  EXPECT_EQ(first.reasoning, "They run.");
  EXPECT_EQ(first.line, 1);
  const Sample& second = samples[1];
  EXPECT_EQ(second.id, "q2");
  EXPECT_EQ(second.video, video("sub/b.mp4"));
  EXPECT_TRUE(second.options.empty());
  EXPECT_EQ(second.answer, "Because it rains.");
  EXPECT_EQ(second.problem_type, "");
  EXPECT_EQ(second.reasoning, "");
  EXPECT_EQ(second.line, 4) << "blank lines are skipped but still counted";
}

TEST_F(DatasetTest, ReadsLongVideoReasonRecords) {
  // The record NVlabs/Long-RL longvideo-reason/step6_reformat_reasoning_data.py writes.
  std::vector<Sample> samples = read(
      R"({"problem_id": 7, "data_type": "video", "videos": "sub/b.mp4", "problem": "Who wins?\nA. red\nB. blue",)"
      R"( "problem_type": "general", "reasoning": "Checking the video, blue scores last.",)"
      R"( "answer": "<answer>B</answer>"})"
      "\n"
      R"({"problem_id": 8, "videos": ["a.mp4"], "problem": "Q", "answer": "  <answer> open text </answer>\n"})");
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].id, "7");
  EXPECT_EQ(samples[0].video, video("sub/b.mp4"));
  EXPECT_EQ(samples[0].question, "Who wins?\nA. red\nB. blue");
  EXPECT_EQ(samples[0].answer, "B");
  EXPECT_EQ(samples[0].problem_type, "general");
  EXPECT_EQ(samples[0].reasoning, "Checking the video, blue scores last.");
  EXPECT_EQ(samples[1].id, "8");
  EXPECT_EQ(samples[1].video, video("a.mp4"));
  EXPECT_EQ(samples[1].answer, "open text");
}

TEST_F(DatasetTest, ReadsVideoR1Records) {
  // Video-R1's field names (src/r1-v/src/open_r1/sft_video.py): path, problem, options, process,
  // solution, plus fields we don't use.
  std::vector<Sample> samples = read(
      R"({"problem_id": 3, "problem": "Which way?", "data_type": "video", "problem_type": "multiple choice",)"
      R"( "options": ["A. left", "B. right"], "process": "<think>It turns left.</think>",)"
      R"( "solution": "<answer>A</answer>", "path": "./sub/b.mp4", "data_source": "somewhere"})");
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].id, "3");
  EXPECT_EQ(samples[0].video, video("sub/b.mp4"));
  EXPECT_EQ(samples[0].options, (std::vector<std::string>{"A. left", "B. right"}));
  EXPECT_EQ(samples[0].reasoning, "It turns left.");
  EXPECT_EQ(samples[0].answer, "A");
}

TEST_F(DatasetTest, ImageSamplesAreRejectedByName) {
  expect_error(R"({"problem_id": 4, "problem": "q", "data_type": "image", "solution": "A", "path": "a.mp4"})",
               1, "data_type", "only video samples");
}

TEST_F(DatasetTest, PlainAnswersAreKeptAsWritten) {
  std::vector<Sample> samples =
      read(R"({"id": "1", "video": "a.mp4", "question": "Q", "answer": " 42 "})"
           "\n"
           R"({"id": "2", "video": "a.mp4", "question": "Q", "answer": "<answer>A</answer> and more"})");
  EXPECT_EQ(samples[0].answer, " 42 ");
  EXPECT_EQ(samples[1].answer, "<answer>A</answer> and more");
}

TEST_F(DatasetTest, NullOptionalFieldsReadAsAbsent) {
  // Exports from Hugging Face datasets write null for a column a row doesn't have.
  std::vector<Sample> samples =
      read(R"({"id": "1", "video": "a.mp4", "question": "Q", "answer": "A", "options": null,)"
           R"( "problem_type": null, "reasoning": null, "problem_id": null})");
  EXPECT_TRUE(samples[0].options.empty());
  EXPECT_EQ(samples[0].problem_type, "");
  EXPECT_EQ(samples[0].reasoning, "");
}

TEST_F(DatasetTest, AgreeingAliasesAreFine) {
  std::vector<Sample> samples =
      read(R"({"id": "5", "problem_id": 5, "video": "a.mp4", "videos": ["a.mp4"], "question": "Q",)"
           R"( "problem": "Q", "answer": "A", "solution": "<answer>A</answer>"})");
  EXPECT_EQ(samples[0].id, "5");
  EXPECT_EQ(samples[0].answer, "A");
}

TEST_F(DatasetTest, DisagreeingAliasesAreErrors) {
  const std::string rest = R"("question": "Q", "answer": "A")";
  expect_error(R"({"id": "a", "problem_id": "b", "video": "a.mp4", )" + rest + "}", 1, "problem_id",
               "disagrees with 'id' = 'a'");
  expect_error(R"({"id": "a", "video": "a.mp4", "path": "sub/b.mp4", )" + rest + "}", 1, "path",
               "disagrees with 'video'");
  expect_error(R"({"id": "a", "video": "a.mp4", "question": "Q", "problem": "P", "answer": "A"})", 1,
               "problem", "disagrees with 'question'");
  expect_error(R"({"id": "a", "video": "a.mp4", "question": "Q", "answer": "A", "solution": "B"})", 1,
               "solution", "disagrees with 'answer'");
}

TEST_F(DatasetTest, MissingRequiredFieldsAreNamed) {
  const std::string ok = R"({"id": "0", "video": "a.mp4", "question": "Q", "answer": "A"})"
                         "\n";
  expect_error(ok + R"({"video": "a.mp4", "question": "Q", "answer": "A"})", 2, "id",
               "missing required field (also accepted: problem_id)");
  expect_error(ok + R"({"id": "1", "question": "Q", "answer": "A"})", 2, "video",
               "missing required field (also accepted: videos, path)");
  expect_error(ok + R"({"id": "1", "video": "a.mp4", "answer": "A"})", 2, "question",
               "missing required field");
  expect_error(ok + R"({"id": "1", "video": "a.mp4", "question": "Q"})", 2, "answer",
               "missing required field");
  expect_error(ok + R"({"id": "1", "video": "a.mp4", "question": "  ", "answer": "A"})", 2, "question",
               "must not be empty");
  expect_error(ok + R"({"id": "1", "video": "a.mp4", "question": "Q", "answer": "<answer> </answer>"})", 2,
               "answer", "empty <answer> tags");
}

TEST_F(DatasetTest, WrongTypesAreNamed) {
  expect_error(R"({"id": 1.5, "video": "a.mp4", "question": "Q", "answer": "A"})", 1, "id",
               "expected a string or an integer, got number");
  expect_error(R"({"id": "1", "video": "a.mp4", "question": ["Q"], "answer": "A"})", 1, "question",
               "expected a string, got array");
  expect_error(R"({"id": "1", "video": "a.mp4", "question": "Q", "answer": 3})", 1, "answer",
               "expected a string, got number");
  expect_error(R"({"id": "1", "video": 7, "question": "Q", "answer": "A"})", 1, "video",
               "expected a string, got number");
  expect_error(R"({"id": "1", "video": "a.mp4", "question": "Q", "answer": "A", "problem_type": 2})", 1,
               "problem_type", "expected a string");
  expect_error(R"({"id": "1", "video": "a.mp4", "question": "Q", "answer": "A", "reasoning": {}})", 1,
               "reasoning", "expected a string, got object");
}

TEST_F(DatasetTest, OptionsMustBeAListOfStrings) {
  const std::string head = R"({"id": "1", "video": "a.mp4", "question": "Q", "answer": "A", "options": )";
  expect_error(head + R"("A. yes"})", 1, "options", "expected a list of strings, got string");
  expect_error(head + R"(["A. yes", 2]})", 1, "options[1]", "expected a list of strings, got a number");
  expect_error(head + R"({"A": "yes"}})", 1, "options", "expected a list of strings, got object");
}

TEST_F(DatasetTest, VideosListMustHoldExactlyOnePath) {
  expect_error(R"({"id": "1", "videos": ["a.mp4", "sub/b.mp4"], "question": "Q", "answer": "A"})", 1,
               "videos", "expected exactly one video path, got 2");
  expect_error(R"({"id": "1", "videos": [], "question": "Q", "answer": "A"})", 1, "videos",
               "expected exactly one video path, got 0");
}

TEST_F(DatasetTest, BadJsonNamesTheLineAndNlohmannsReason) {
  const std::string ok = R"({"id": "0", "video": "a.mp4", "question": "Q", "answer": "A"})"
                         "\n";
  expect_error(ok + ok.substr(0, 20) + "\n", 2, "", "parse error");
  expect_error(ok + "[1, 2]\n", 2, "", "expected a JSON object, got array");
  expect_error(ok + "\"just text\"\n", 2, "", "expected a JSON object, got string");
}

TEST_F(DatasetTest, DuplicateIdsNameBothLines) {
  expect_error(R"({"id": "7", "video": "a.mp4", "question": "Q", "answer": "A"})"
               "\n"
               R"({"id": "8", "video": "a.mp4", "question": "Q", "answer": "A"})"
               "\n"
               R"({"problem_id": 7, "videos": "a.mp4", "problem": "Q", "answer": "A"})"
               "\n",
               3, "problem_id", "duplicate id: line 1 already uses it");
}

TEST_F(DatasetTest, UnknownFieldsWindowsLineEndsAndByteOrderMarkAreFine) {
  std::vector<Sample> samples = read(
      "\xEF\xBB\xBF"
      R"({"id": "1", "video": "a.mp4", "question": "Q", "answer": "A", "duration": 3600, "meta": {"x": [1]}})"
      "\r\n"
      R"({"id": "2", "video": "a.mp4", "question": "Q", "answer": "A"})");
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[1].line, 2);
  EXPECT_EQ(samples[1].answer, "A");
}

TEST_F(DatasetTest, VideoPathsMayNotEscapeTheVideoDir) {
  fs::create_directory_symlink(root_ / "outside", videos_ / "out_dir");
  fs::create_symlink(root_ / "outside" / "secret.mp4", videos_ / "out_file.mp4");
  fs::create_symlink(root_ / "outside" / "not-yet.mp4", videos_ / "dangling.mp4");
  fs::create_directory_symlink(root_ / "videos2", videos_ / "sibling");

  expect_path_error("", "empty video path");
  expect_path_error("/etc/passwd", "not an absolute one");
  expect_path_error((videos_ / "a.mp4").string(), "not an absolute one");
  expect_path_error("../outside/secret.mp4", "may not contain '..'");
  expect_path_error("sub/../../outside/secret.mp4", "may not contain '..'");
  expect_path_error("sub/../a.mp4", "may not contain '..'");
  expect_path_error("out_dir/secret.mp4", "outside the video directory");
  expect_path_error("out_dir/missing.mp4", "outside the video directory");
  expect_path_error("out_file.mp4", "outside the video directory");
  expect_path_error("sibling/x.mp4", "outside the video directory");  // not a string-prefix check
  expect_path_error("dangling.mp4", "dangling link");
  expect_path_error(".", "the video directory itself");
  expect_path_error("sub/..", "may not contain '..'");
}

TEST_F(DatasetTest, MissingVideosPassTheChecksAndResolveUnderTheDir) {
  InputWhere where{jsonl_, 1, "video", ""};
  EXPECT_EQ(resolve_video_path(videos_.string(), "not/yet/there.mp4", where), video("not/yet/there.mp4"));
  EXPECT_EQ(resolve_video_path(videos_.string(), "./sub//b.mp4", where), video("sub/b.mp4"));
  // A link that stays inside is followed.
  fs::create_symlink(videos_ / "sub" / "b.mp4", videos_ / "alias.mp4");
  EXPECT_EQ(resolve_video_path(videos_.string(), "alias.mp4", where), video("sub/b.mp4"));
}

TEST_F(DatasetTest, VideoDirMayItselfBeALink) {
  fs::create_directory_symlink(videos_, root_ / "videos_link");
  write_jsonl(R"({"id": "1", "video": "a.mp4", "question": "Q", "answer": "A"})");
  std::vector<Sample> samples = read_dataset(jsonl_, (root_ / "videos_link").string());
  EXPECT_EQ(samples[0].video, video("a.mp4"));
}

TEST_F(DatasetTest, PathErrorsInTheFileNameTheLineAndField) {
  expect_error(R"({"id": "1", "video": "a.mp4", "question": "Q", "answer": "A"})"
               "\n"
               R"({"id": "2", "path": "../outside/secret.mp4", "question": "Q", "answer": "A"})",
               2, "path", "may not contain '..'");
}

TEST_F(DatasetTest, VideoDirMustBeAnExistingDirectory) {
  write_jsonl(R"({"id": "1", "video": "a.mp4", "question": "Q", "answer": "A"})");
  for (const fs::path& bad : {root_ / "no-such-dir", videos_ / "a.mp4"}) {
    try {
      read_dataset(jsonl_, bad.string());
      ADD_FAILURE() << "accepted video_dir " << bad;
    } catch (const InputError& e) {
      EXPECT_EQ(e.key(), "video_dir");
      EXPECT_EQ(e.value(), bad.string());
    }
  }
}

TEST_F(DatasetTest, MissingJsonlIsInputErrorNamingIt) {
  std::string missing = (root_ / "nope.jsonl").string();
  try {
    read_dataset(missing, videos_.string());
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), missing);
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
}

TEST_F(DatasetTest, StreamingReaderYieldsOneSampleAtATime) {
  write_jsonl(R"({"id": "1", "video": "a.mp4", "question": "Q", "answer": "A"})"
              "\n"
              "\n"
              R"({"id": "2", "video": "sub/b.mp4", "question": "Q", "answer": "B"})"
              "\n"
              "\n");
  DatasetReader reader(jsonl_, videos_.string());
  EXPECT_EQ(reader.line(), 0);
  Sample sample;
  ASSERT_TRUE(reader.next(sample));
  EXPECT_EQ(sample.id, "1");
  EXPECT_EQ(reader.line(), 1);
  ASSERT_TRUE(reader.next(sample));
  EXPECT_EQ(sample.id, "2");
  EXPECT_EQ(sample.line, 3);
  EXPECT_EQ(reader.line(), 3);
  EXPECT_FALSE(reader.next(sample));
  EXPECT_EQ(reader.line(), 4);
  EXPECT_FALSE(reader.next(sample));
}

TEST_F(DatasetTest, EmptyFileHasNoSamples) {
  EXPECT_TRUE(read("").empty());
  EXPECT_TRUE(read("\n\n  \n").empty());
}

}  // namespace
}  // namespace lvrl::data
