// Reading a video QA dataset: JSONL, one JSON object per line.
//
// Our fields: {"id", "video", "question", "options"?, "answer", "problem_type"?, "reasoning"?}.
// The field names of the public long-video RL datasets are accepted too, so their files load as
// they are:
//   problem_id  → id        (LongVideo-Reason writes a number; it becomes its decimal string)
//   videos      → video     (LongVideo-Reason: a string; a list holding exactly one path also works)
//   path        → video     (Video-R1)
//   problem     → question
//   solution    → answer    (Video-R1)
//   process     → reasoning (Video-R1's CoT-SFT data)
// An answer written "<answer>X</answer>" becomes "X"; a reasoning wrapped in "<think>…</think>"
// loses the tags. Sources: NVlabs/Long-RL longvideo-reason/step6_reformat_reasoning_data.py (the
// LongVideo-Reason record: problem_id, data_type, videos, problem, problem_type, reasoning,
// answer), Video-R1's src/r1-v/src/open_r1/sft_video.py (problem, problem_type, options, path,
// data_type, process, solution) and AReaL's longvideo_reason.py reader (videos joined under a
// video dir). `cot` appears only in text-only datasets, so it is not an alias here.
//
// Unknown fields are ignored (datasets carry many). Every problem is an InputError naming the file,
// the 1-based line, the field and its value.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/error.h"

namespace lvrl::data {

struct Sample {
  std::string id;
  std::string video;  // absolute path, symlinks resolved, inside video_dir
  std::string question;
  std::vector<std::string> options;  // empty for open questions
  std::string answer;                // without <answer> tags
  std::string problem_type;          // "" when absent
  std::string reasoning;             // "" when absent
  int line = 0;                      // 1-based line in the JSONL file
};

// Streams a JSONL file one sample at a time, for datasets too large to hold. Ids must be unique
// across the whole file, so the reader keeps every id seen (a few dozen bytes per sample).
class DatasetReader {
 public:
  // Opens the file and checks that video_dir is an existing directory (InputError otherwise).
  DatasetReader(std::string jsonl_path, std::string video_dir);

  // Reads the next sample into `out`; false at the end of the file.
  bool next(Sample& out);

  // The 1-based number of the last line read (0 before the first).
  int line() const { return line_; }

 private:
  Sample parse_line(const std::string& text);

  std::string jsonl_path_;
  std::filesystem::path video_root_;  // canonical video_dir
  std::ifstream file_;
  int line_ = 0;
  std::unordered_map<std::string, int> id_lines_;  // id → line of first use
};

std::vector<Sample> read_dataset(const std::string& jsonl_path, const std::string& video_dir);

// The absolute, symlink-resolved path of `relative` under `video_dir`. Rejected (InputError at
// `where`): an empty or absolute path, any ".." component, and a path that resolves outside the
// canonical video_dir (a symlink pointing out) or to video_dir itself. A path that doesn't exist is
// fine here — consumers report missing videos — but it must pass the same checks. video_dir itself
// must exist and be a directory.
std::string resolve_video_path(const std::string& video_dir, const std::string& relative,
                               const InputWhere& where);

}  // namespace lvrl::data
