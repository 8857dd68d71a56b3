#include "core/dataset.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <system_error>

namespace lvrl::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A field of ours and the other datasets' names for it, in the order they are reported.
struct FieldNames {
  const char* ours;
  std::vector<const char*> aliases;
};
const FieldNames kId{"id", {"problem_id"}};
const FieldNames kVideo{"video", {"videos", "path"}};
const FieldNames kQuestion{"question", {"problem"}};
const FieldNames kAnswer{"answer", {"solution"}};
const FieldNames kReasoning{"reasoning", {"process"}};

// Error values are shown in messages; a 20 kB reasoning trace would bury the point.
std::string excerpt(const std::string& text) {
  constexpr size_t kMax = 80;
  return text.size() <= kMax ? text : text.substr(0, kMax) + "...";
}

std::string excerpt(const json& value) {
  return excerpt(value.is_string() ? value.get<std::string>() : value.dump());
}

std::string trim(const std::string& s) {
  const char* space = " \t\r\n\f\v";
  size_t first = s.find_first_not_of(space);
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(space) - first + 1);
}

// "<tag> X </tag>" → "X"; anything else unchanged.
std::string strip_wrapping_tag(const std::string& text, const std::string& tag) {
  const std::string open = "<" + tag + ">", close = "</" + tag + ">";
  std::string trimmed = trim(text);
  if (trimmed.size() >= open.size() + close.size() && trimmed.compare(0, open.size(), open) == 0 &&
      trimmed.compare(trimmed.size() - close.size(), close.size(), close) == 0) {
    return trim(trimmed.substr(open.size(), trimmed.size() - open.size() - close.size()));
  }
  return text;
}

std::string also_accepted(const FieldNames& names) {
  std::string out;
  for (const char* alias : names.aliases) out += (out.empty() ? "" : ", ") + std::string(alias);
  return out;
}

fs::path canonical_video_dir(const std::string& video_dir) {
  const InputWhere where{"", 0, "video_dir", video_dir};
  std::error_code error;
  fs::file_status status = fs::status(video_dir, error);
  if (!fs::exists(status)) {
    throw InputError(
        where, "the video directory does not exist" + (error ? " (" + error.message() + ")" : std::string()));
  }
  if (!fs::is_directory(status)) throw InputError(where, "expected a directory of videos");
  fs::path canonical = fs::canonical(video_dir, error);
  if (error) throw InputError(where, "cannot resolve the video directory: " + error.message());
  return canonical;
}

// Is `path` strictly below `root`? Both absolute and canonical; compared by components, so
// "/data/videos2" is not inside "/data/videos".
bool strictly_inside(const fs::path& root, const fs::path& path) {
  auto [root_end, path_rest] = std::mismatch(root.begin(), root.end(), path.begin(), path.end());
  if (root_end != root.end()) return false;
  return std::any_of(path_rest, path.end(), [](const fs::path& part) { return !part.empty(); });
}

std::string resolve_under(const fs::path& root, const std::string& relative, const InputWhere& where) {
  if (relative.empty()) throw InputError(where, "empty video path");
  if (relative.find('\0') != std::string::npos) {
    throw InputError(where, "the video path contains a NUL character");
  }
  const fs::path path(relative);
  if (path.is_absolute() || path.has_root_directory()) {
    throw InputError(where, "expected a path relative to the video directory, not an absolute one");
  }
  for (const fs::path& part : path) {
    if (part == "..") throw InputError(where, "a video path may not contain '..'");
  }
  std::error_code error;
  fs::path resolved = fs::weakly_canonical(root / path, error);
  if (error) throw InputError(where, "cannot resolve the video path: " + error.message());
  if ((resolved.has_filename() ? resolved : resolved.parent_path()) == root) {
    throw InputError(where, "names the video directory itself, not a video in it");
  }
  if (!strictly_inside(root, resolved)) {
    throw InputError(where, fmt::format("resolves to '{}', outside the video directory '{}'",
                                        resolved.string(), root.string()));
  }
  // weakly_canonical stops following links at the first missing component; when that component is a
  // link itself (its target is missing), where it points can't be checked, so it isn't accepted.
  for (fs::path missing = resolved; missing != root && !fs::exists(missing, error);
       missing = missing.parent_path()) {
    if (fs::is_symlink(fs::symlink_status(missing, error))) {
      throw InputError(where, fmt::format("'{}' is a symlink to the missing '{}'; a video path may "
                                          "not go through a dangling link",
                                          missing.string(), fs::read_symlink(missing, error).string()));
    }
  }
  return resolved.string();
}

class LineParser {
 public:
  LineParser(const std::string& file, int line, const json& object)
      : file_(file), line_(line), object_(object) {}

  InputWhere where(const std::string& key, const std::string& value) const {
    return {file_, line_, key, value};
  }

  // The value under `names` after `normalize`, checking that every name present agrees.
  template <typename Normalize>
  std::optional<std::string> field(const FieldNames& names, Normalize normalize) const {
    std::optional<std::string> value;
    const char* value_from = nullptr;
    std::vector<const char*> all{names.ours};
    all.insert(all.end(), names.aliases.begin(), names.aliases.end());
    for (const char* name : all) {
      auto it = object_.find(name);
      if (it == object_.end() || it->is_null()) continue;
      std::string normalized = normalize(name, *it);
      if (value && normalized != *value) {
        throw InputError(where(name, excerpt(*it)),
                         fmt::format("disagrees with '{}' = '{}' on the same line; give one of them",
                                     value_from, excerpt(*value)));
      }
      value = std::move(normalized);
      value_from = name;
    }
    return value;
  }

  template <typename Normalize>
  std::string required(const FieldNames& names, Normalize normalize) const {
    std::optional<std::string> value = field(names, normalize);
    if (!value) {
      std::string aliases = also_accepted(names);
      throw InputError(
          where(names.ours, ""),
          "missing required field" + (aliases.empty() ? std::string() : " (also accepted: " + aliases + ")"));
    }
    return *value;
  }

  // A string (or, with `integer_ok`, an integer written as its decimal text); `non_empty` rejects "".
  std::string text(const char* name, const json& value, bool non_empty, bool integer_ok = false) const {
    std::string out;
    if (value.is_string()) {
      out = value.get<std::string>();
    } else if (integer_ok && (value.is_number_integer() || value.is_number_unsigned())) {
      out = value.dump();
    } else {
      throw InputError(
          where(name, excerpt(value)),
          fmt::format("expected a string{}, got {}", integer_ok ? " or an integer" : "", value.type_name()));
    }
    if (non_empty && trim(out).empty()) throw InputError(where(name, out), "must not be empty");
    return out;
  }

  // LongVideo-Reason's `videos` may be a list; lvrl trains on one video per sample.
  std::string video_path(const char* name, const json& value) const {
    if (!value.is_array()) return text(name, value, true);
    if (value.size() != 1) {
      throw InputError(where(name, excerpt(value)),
                       fmt::format("expected exactly one video path, got {}", value.size()));
    }
    return text(name, value[0], true);
  }

  std::vector<std::string> options() const {
    auto it = object_.find("options");
    if (it == object_.end() || it->is_null()) return {};
    if (!it->is_array()) {
      throw InputError(where("options", excerpt(*it)),
                       fmt::format("expected a list of strings, got {}", it->type_name()));
    }
    std::vector<std::string> out;
    for (size_t i = 0; i < it->size(); ++i) {
      const json& option = (*it)[i];
      if (!option.is_string()) {
        throw InputError(where(fmt::format("options[{}]", i), excerpt(option)),
                         fmt::format("expected a list of strings, got a {} here", option.type_name()));
      }
      out.push_back(option.get<std::string>());
    }
    return out;
  }

 private:
  const std::string& file_;
  int line_;
  const json& object_;
};

}  // namespace

std::string resolve_video_path(const std::string& video_dir, const std::string& relative,
                               const InputWhere& where) {
  return resolve_under(canonical_video_dir(video_dir), relative, where);
}

DatasetReader::DatasetReader(std::string jsonl_path, std::string video_dir)
    : jsonl_path_(std::move(jsonl_path)), video_root_(canonical_video_dir(video_dir)) {
  if (fs::is_directory(jsonl_path_)) {
    throw InputError({jsonl_path_, 0, "", ""}, "expected a JSONL file, got a directory");
  }
  file_.open(jsonl_path_, std::ios::binary);
  if (!file_) {
    throw InputError({jsonl_path_, 0, "", ""},
                     std::string("cannot open the dataset: ") + std::strerror(errno));
  }
}

bool DatasetReader::next(Sample& out) {
  std::string text;
  while (std::getline(file_, text)) {
    ++line_;
    if (!text.empty() && text.back() == '\r') text.pop_back();                    // written on Windows
    if (line_ == 1 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);  // UTF-8 BOM
    if (trim(text).empty()) continue;
    out = parse_line(text);
    return true;
  }
  if (file_.bad()) {
    throw InputError({jsonl_path_, line_ + 1, "", ""},
                     std::string("cannot read the dataset: ") + std::strerror(errno));
  }
  return false;
}

Sample DatasetReader::parse_line(const std::string& text) {
  json object;
  try {
    object = json::parse(text);
  } catch (const json::parse_error& e) {
    throw InputError({jsonl_path_, line_, "", excerpt(text)},
                     std::string("expected one JSON object per line: ") + e.what());
  }
  if (!object.is_object()) {
    throw InputError({jsonl_path_, line_, "", excerpt(text)},
                     fmt::format("expected a JSON object, got {}", object.type_name()));
  }
  const LineParser parser(jsonl_path_, line_, object);
  auto required_text = [&](const char* name, const json& value) { return parser.text(name, value, true); };
  auto optional_text = [&](const char* name, const json& value) { return parser.text(name, value, false); };

  // Video-R1 files mix image samples in; their paths must never reach the video decoder.
  auto data_type = object.find("data_type");
  if (data_type != object.end() && !data_type->is_null() && *data_type != "video") {
    throw InputError(parser.where("data_type", excerpt(*data_type)),
                     "expected \"video\": only video samples are supported");
  }

  Sample sample;
  sample.line = line_;
  const char* id_from = nullptr;
  sample.id = parser.required(kId, [&](const char* name, const json& value) {
    id_from = name;
    return parser.text(name, value, true, /*integer_ok=*/true);
  });
  sample.question = parser.required(kQuestion, required_text);
  sample.answer = parser.required(kAnswer, [&](const char* name, const json& value) {
    std::string answer = strip_wrapping_tag(parser.text(name, value, true), "answer");
    if (answer.empty()) throw InputError(parser.where(name, excerpt(value)), "empty <answer> tags");
    return answer;
  });
  sample.options = parser.options();
  auto problem_type = object.find("problem_type");
  if (problem_type != object.end() && !problem_type->is_null()) {
    sample.problem_type = optional_text("problem_type", *problem_type);
  }
  sample.reasoning = parser
                         .field(kReasoning,
                                [&](const char* name, const json& value) {
                                  return strip_wrapping_tag(optional_text(name, value), "think");
                                })
                         .value_or("");

  // The path is checked last: it costs syscalls, and bad JSON fields are the likelier mistake.
  const char* video_from = nullptr;
  std::string relative = parser.required(kVideo, [&](const char* name, const json& value) {
    video_from = name;
    return parser.video_path(name, value);
  });
  sample.video = resolve_under(video_root_, relative, parser.where(video_from, relative));

  auto [first, inserted] = id_lines_.emplace(sample.id, line_);
  if (!inserted) {
    throw InputError(parser.where(id_from, sample.id),
                     fmt::format("duplicate id: line {} already uses it", first->second));
  }
  return sample;
}

std::vector<Sample> read_dataset(const std::string& jsonl_path, const std::string& video_dir) {
  DatasetReader reader(jsonl_path, video_dir);
  std::vector<Sample> samples;
  Sample sample;
  while (reader.next(sample)) samples.push_back(std::move(sample));
  return samples;
}

}  // namespace lvrl::data
