#include "cache/rollout_record.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "core/error.h"

namespace lvrl::cache {
namespace {
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "token arrays are sent in host order: little-endian");

constexpr const char* kExtraPrefix = "x.";
constexpr const char* kRewardInfix = ".reward.";    // s<i>.reward.<component>
constexpr int64_t kMaxGridSide = int64_t{1} << 20;  // keeps t·h·w inside int64
constexpr int64_t kMaxSamples = int64_t{1} << 20;   // a garbage count must not size an allocation

[[noreturn]] void bad_field(const std::string& field, const std::string& value, const std::string& problem) {
  throw InputError({"", 0, field, value.substr(0, 80)}, problem);
}

std::string sample_field(size_t index, const char* name) {
  return fmt::format("s{}.{}", index, name);
}

template <typename T>
std::string to_bytes(const std::vector<T>& values) {
  std::string out(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

template <typename T>
std::vector<T> from_bytes(const std::string& bytes, const std::string& field) {
  if (bytes.size() % sizeof(T) != 0) {
    bad_field(field, "", fmt::format("{} bytes, not a multiple of {}", bytes.size(), sizeof(T)));
  }
  std::vector<T> out(bytes.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

std::string number_text(double value) {
  return fmt::format("{}", value);
}  // shortest round trip

double parse_number(const std::string& text, const std::string& field) {
  try {
    size_t used = 0;
    double value = std::stod(text, &used);
    if (used == text.size()) return value;
  } catch (const std::invalid_argument&) {  // std::stod: no number at all
  } catch (const std::out_of_range&) {      // std::stod: beyond double's range
  }
  bad_field(field, text, "not a number");
}

template <typename T>
T parse_integer(const std::string& text, const std::string& field) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) bad_field(field, text, "not an integer");
  return value;
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  size_t begin = 0;
  for (;;) {
    const size_t end = text.find(separator, begin);
    out.push_back(text.substr(begin, end - begin));
    if (end == std::string::npos) return out;
    begin = end + 1;
  }
}

std::string grids_text(const std::vector<std::array<int64_t, 3>>& grids) {
  std::string out;
  for (const auto& [t, h, w] : grids) out += fmt::format("{}{}x{}x{}", out.empty() ? "" : ",", t, h, w);
  return out;
}

std::vector<std::array<int64_t, 3>> parse_grids(const std::string& text) {
  std::vector<std::array<int64_t, 3>> out;
  for (const std::string& grid : split(text, ',')) {
    const std::vector<std::string> sides = split(grid, 'x');
    if (sides.size() != 3) bad_field("grids", text, fmt::format("'{}' is not t x h x w", grid));
    out.push_back({parse_integer<int64_t>(sides[0], "grids"), parse_integer<int64_t>(sides[1], "grids"),
                   parse_integer<int64_t>(sides[2], "grids")});
  }
  return out;
}

std::string numbers_text(const std::vector<double>& values) {
  std::string out;
  for (double value : values) out += (out.empty() ? "" : ",") + number_text(value);
  return out;
}

std::vector<double> parse_numbers(const std::string& text, const std::string& field) {
  std::vector<double> out;
  for (const std::string& part : split(text, ',')) out.push_back(parse_number(part, field));
  return out;
}

// The entry's fields by name, taken out one by one; whatever is left at the end is unknown.
class FieldTable {
 public:
  explicit FieldTable(const StreamFields& fields) {
    for (const auto& [name, value] : fields) {
      if (!by_name_.emplace(name, value).second) bad_field(name, "", "repeated in one entry");
    }
  }
  std::string take(const std::string& name) {
    auto found = by_name_.find(name);
    if (found == by_name_.end()) bad_field(name, "", "missing from the rollout group");
    std::string value = std::move(found->second);
    by_name_.erase(found);
    return value;
  }
  std::map<std::string, std::string>& rest() { return by_name_; }

 private:
  std::map<std::string, std::string> by_name_;
};

// "s<i>.reward.<component>" → (i, component); false for any other name.
bool parse_reward_field(const std::string& name, size_t& index, std::string& component) {
  if (name.size() < 2 || name[0] != 's') return false;
  const char* digits = name.data() + 1;
  auto [end, ec] = std::from_chars(digits, name.data() + name.size(), index);
  if (ec != std::errc()) return false;
  const std::string prefix = fmt::format("s{}{}", index, kRewardInfix);
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return false;  // "s01.…", "s1.reward."
  component = name.substr(prefix.size());
  return true;
}

void check_logprobs(const std::vector<float>& values, size_t tokens, const std::string& field) {
  if (values.size() != tokens)
    bad_field(field, "", fmt::format("{} log-probs for {} tokens", values.size(), tokens));
  for (float value : values) {
    if (!(value <= 0)) bad_field(field, fmt::format("{}", value), "a log-probability must be <= 0");
  }
}

void check_sampling(const SamplingRecord& sampling) {
  if (!(sampling.temperature >= 0) || !std::isfinite(sampling.temperature)) {
    bad_field("sampling.temperature", number_text(sampling.temperature), "must be finite and >= 0");
  }
  if (!(sampling.top_p >= 0 && sampling.top_p <= 1)) {
    bad_field("sampling.top_p", number_text(sampling.top_p), "must lie in [0, 1]");
  }
  if (!(sampling.min_p >= 0 && sampling.min_p <= 1)) {
    bad_field("sampling.min_p", number_text(sampling.min_p), "must lie in [0, 1]");
  }
  if (sampling.top_k < 0) bad_field("sampling.top_k", fmt::format("{}", sampling.top_k), "must be >= 0");
  if (sampling.max_new_tokens < 1) {
    bad_field("sampling.max_new_tokens", fmt::format("{}", sampling.max_new_tokens), "must be >= 1");
  }
}

void check_sample(const RolloutSample& sample, size_t index, int64_t max_new_tokens) {
  const std::string response = sample_field(index, "response");
  if (sample.response_ids.size() > static_cast<size_t>(max_new_tokens)) {
    bad_field(response, "",
              fmt::format("{} tokens, beyond max_new_tokens {}", sample.response_ids.size(), max_new_tokens));
  }
  for (int32_t id : sample.response_ids) {
    if (id < 0) bad_field(response, fmt::format("{}", id), "a token id must be >= 0");
  }
  check_logprobs(sample.logprobs, sample.response_ids.size(), sample_field(index, "logprobs"));
  check_logprobs(sample.sampled_logprobs, sample.response_ids.size(),
                 sample_field(index, "sampled_logprobs"));
  if (sample.finish_reason != "stop" && sample.finish_reason != "length") {
    bad_field(sample_field(index, "finish"), sample.finish_reason, "must be 'stop' or 'length'");
  }
}
}  // namespace

bool RolloutSample::operator==(const RolloutSample& other) const {
  return response_ids == other.response_ids && logprobs == other.logprobs &&
         sampled_logprobs == other.sampled_logprobs && finish_reason == other.finish_reason &&
         rewards == other.rewards && reward == other.reward && seed == other.seed;
}

bool SamplingRecord::operator==(const SamplingRecord& other) const {
  return temperature == other.temperature && top_p == other.top_p && min_p == other.min_p &&
         top_k == other.top_k && max_new_tokens == other.max_new_tokens;
}

bool RolloutGroup::operator==(const RolloutGroup& other) const {
  return group_id == other.group_id && prompt_id == other.prompt_id &&
         policy_version == other.policy_version && prompt_ids == other.prompt_ids &&
         video_pad_id == other.video_pad_id && spatial_merge_size == other.spatial_merge_size &&
         video_grids == other.video_grids && second_per_grid_ts == other.second_per_grid_ts &&
         embedding_key == other.embedding_key && sampling == other.sampling && samples == other.samples &&
         extra == other.extra;
}

std::vector<int32_t> RolloutGroup::expand_prompt() const {
  return expand_video_pads(prompt_ids, video_pad_id, video_pad_run_lengths(video_grids, spatial_merge_size));
}

CollapsedPrompt collapse_video_pads(const std::vector<int32_t>& ids, int32_t video_pad_id) {
  CollapsedPrompt out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0) bad_field("prompt_ids", fmt::format("{}", ids[i]), "a token id must be >= 0");
    if (ids[i] != video_pad_id) {
      out.ids.push_back(ids[i]);
    } else if (i > 0 && ids[i - 1] == video_pad_id) {
      ++out.run_lengths.back();
    } else {
      out.ids.push_back(kVideoMarker);
      out.run_lengths.push_back(1);
    }
  }
  return out;
}

std::vector<int32_t> expand_video_pads(const std::vector<int32_t>& collapsed, int32_t video_pad_id,
                                       const std::vector<int64_t>& run_lengths) {
  const auto markers = static_cast<size_t>(std::count(collapsed.begin(), collapsed.end(), kVideoMarker));
  if (markers != run_lengths.size()) {
    bad_field("prompt_ids", "",
              fmt::format("{} video markers for {} video-pad runs", markers, run_lengths.size()));
  }
  size_t expanded = collapsed.size() - markers;
  for (int64_t length : run_lengths) {
    if (length < 1)
      bad_field("prompt_ids", fmt::format("{}", length), "a video-pad run needs at least one token");
    expanded += static_cast<size_t>(length);
  }
  std::vector<int32_t> out;  // [S]
  out.reserve(expanded);
  size_t run = 0;
  for (int32_t id : collapsed) {
    if (id == kVideoMarker) {
      out.insert(out.end(), static_cast<size_t>(run_lengths[run++]), video_pad_id);
    } else {
      out.push_back(id);
    }
  }
  return out;
}

std::vector<int64_t> video_pad_run_lengths(const std::vector<std::array<int64_t, 3>>& grids,
                                           int64_t spatial_merge_size) {
  if (spatial_merge_size < 1) bad_field("merge", fmt::format("{}", spatial_merge_size), "must be >= 1");
  std::vector<int64_t> out;
  for (const auto& [t, h, w] : grids) {
    const std::string grid = fmt::format("{}x{}x{}", t, h, w);
    if (t < 1 || h < 1 || w < 1 || t > kMaxGridSide || h > kMaxGridSide || w > kMaxGridSide) {
      bad_field("grids", grid, fmt::format("each side must lie in [1, {}]", kMaxGridSide));
    }
    if (h % spatial_merge_size != 0 || w % spatial_merge_size != 0) {
      bad_field("grids", grid,
                fmt::format("h and w must be multiples of the merge size {}", spatial_merge_size));
    }
    const int64_t tokens = t * h * w / (spatial_merge_size * spatial_merge_size);
    if (tokens > std::numeric_limits<int32_t>::max()) {
      bad_field("grids", grid, fmt::format("{} video tokens: more than a prompt can hold", tokens));
    }
    out.push_back(tokens);
  }
  return out;
}

void store_prompt(RolloutGroup& group, const std::vector<int32_t>& ids, int32_t video_pad_id,
                  std::vector<std::array<int64_t, 3>> video_grids, int64_t spatial_merge_size) {
  CollapsedPrompt collapsed = collapse_video_pads(ids, video_pad_id);
  const std::vector<int64_t> expected = video_pad_run_lengths(video_grids, spatial_merge_size);
  if (collapsed.run_lengths != expected) {
    bad_field("prompt_ids", "",
              fmt::format("video-pad runs of [{}] tokens, but the grids {} give [{}]",
                          fmt::join(collapsed.run_lengths, ", "), grids_text(video_grids),
                          fmt::join(expected, ", ")));
  }
  group.prompt_ids = std::move(collapsed.ids);
  group.video_pad_id = video_pad_id;
  group.video_grids = std::move(video_grids);
  group.spatial_merge_size = spatial_merge_size;
}

void check_rollout_group(const RolloutGroup& group) {
  if (group.group_id.empty())
    bad_field("group", "", "a rollout group needs its id: the trainer de-duplicates by it");
  if (group.prompt_ids.empty()) bad_field("prompt_ids", "", "no prompt");
  if (group.video_pad_id < 0) bad_field("video_pad", fmt::format("{}", group.video_pad_id), "must be >= 0");
  size_t markers = 0;
  for (int32_t id : group.prompt_ids) {
    if (id == kVideoMarker) {
      ++markers;
    } else if (id < 0) {
      bad_field("prompt_ids", fmt::format("{}", id), "a token id must be >= 0 (or the video marker -1)");
    } else if (id == group.video_pad_id) {
      bad_field("prompt_ids", fmt::format("{}", id),
                "a <|video_pad|> run that was not collapsed to a marker");
    }
  }
  video_pad_run_lengths(group.video_grids, group.spatial_merge_size);  // checks the grids
  if (markers != group.video_grids.size()) {
    bad_field("grids", grids_text(group.video_grids),
              fmt::format("{} grids for {} video markers in prompt_ids", group.video_grids.size(), markers));
  }
  if (group.second_per_grid_ts.size() != group.video_grids.size()) {
    bad_field(
        "second_per_grid_ts", numbers_text(group.second_per_grid_ts),
        fmt::format("{} values for {} videos", group.second_per_grid_ts.size(), group.video_grids.size()));
  }
  for (double seconds : group.second_per_grid_ts) {
    if (!(seconds > 0) || !std::isfinite(seconds)) {
      bad_field("second_per_grid_ts", numbers_text(group.second_per_grid_ts), "each must be finite and > 0");
    }
  }
  if (group.embedding_key.empty() != group.video_grids.empty()) {
    bad_field(
        "embedding", group.embedding_key,
        group.video_grids.empty() ? "an embedding key without a video" : "videos need their embedding key");
  }
  check_sampling(group.sampling);
  if (group.samples.empty()) bad_field("samples", "0", "a group needs at least one sample");
  for (size_t i = 0; i < group.samples.size(); ++i)
    check_sample(group.samples[i], i, group.sampling.max_new_tokens);
}

StreamFields encode_rollout(const RolloutGroup& group) {
  check_rollout_group(group);
  const SamplingRecord& sampling = group.sampling;
  StreamFields out = {
      {"format", fmt::format("{}", kRolloutFormat)},
      {"group", group.group_id},
      {"prompt", group.prompt_id},
      {"version", fmt::format("{}", group.policy_version)},
      {"prompt_ids", to_bytes(group.prompt_ids)},
      {"video_pad", fmt::format("{}", group.video_pad_id)},
      {"merge", fmt::format("{}", group.spatial_merge_size)},
      {"grids", grids_text(group.video_grids)},
      {"second_per_grid_ts", numbers_text(group.second_per_grid_ts)},
      {"embedding", group.embedding_key},
      {"sampling.temperature", number_text(sampling.temperature)},
      {"sampling.top_p", number_text(sampling.top_p)},
      {"sampling.min_p", number_text(sampling.min_p)},
      {"sampling.top_k", fmt::format("{}", sampling.top_k)},
      {"sampling.max_new_tokens", fmt::format("{}", sampling.max_new_tokens)},
      {"samples", fmt::format("{}", group.samples.size())},
  };
  for (size_t i = 0; i < group.samples.size(); ++i) {
    const RolloutSample& sample = group.samples[i];
    out.emplace_back(sample_field(i, "response"), to_bytes(sample.response_ids));
    out.emplace_back(sample_field(i, "logprobs"), to_bytes(sample.logprobs));
    out.emplace_back(sample_field(i, "sampled_logprobs"), to_bytes(sample.sampled_logprobs));
    out.emplace_back(sample_field(i, "finish"), sample.finish_reason);
    out.emplace_back(sample_field(i, "reward"), number_text(sample.reward));
    out.emplace_back(sample_field(i, "seed"), fmt::format("{}", sample.seed));
    for (const auto& [name, value] : sample.rewards) {
      out.emplace_back(fmt::format("s{}{}{}", i, kRewardInfix, name), number_text(value));
    }
  }
  for (const auto& [name, value] : group.extra) out.emplace_back(kExtraPrefix + name, value);
  return out;
}

RolloutGroup decode_rollout(const StreamFields& fields) {
  FieldTable table(fields);
  auto format = table.rest().find("format");
  if (format == table.rest().end()) {
    bad_field(
        "format", "",
        fmt::format("missing: a format-1 rollout entry (one answer per entry); this build reads format {} "
                    "(one group per entry)",
                    kRolloutFormat));
  }
  if (format->second != fmt::format("{}", kRolloutFormat)) {
    bad_field("format", format->second, fmt::format("this build reads rollout format {}", kRolloutFormat));
  }
  table.take("format");

  RolloutGroup out;
  out.group_id = table.take("group");
  out.prompt_id = table.take("prompt");
  out.policy_version = parse_integer<int64_t>(table.take("version"), "version");
  out.prompt_ids = from_bytes<int32_t>(table.take("prompt_ids"), "prompt_ids");
  out.video_pad_id = parse_integer<int32_t>(table.take("video_pad"), "video_pad");
  out.spatial_merge_size = parse_integer<int64_t>(table.take("merge"), "merge");
  out.video_grids = parse_grids(table.take("grids"));
  out.second_per_grid_ts = parse_numbers(table.take("second_per_grid_ts"), "second_per_grid_ts");
  out.embedding_key = table.take("embedding");
  SamplingRecord& sampling = out.sampling;
  sampling.temperature = parse_number(table.take("sampling.temperature"), "sampling.temperature");
  sampling.top_p = parse_number(table.take("sampling.top_p"), "sampling.top_p");
  sampling.min_p = parse_number(table.take("sampling.min_p"), "sampling.min_p");
  sampling.top_k = parse_integer<int64_t>(table.take("sampling.top_k"), "sampling.top_k");
  sampling.max_new_tokens =
      parse_integer<int64_t>(table.take("sampling.max_new_tokens"), "sampling.max_new_tokens");

  const std::string count_text = table.take("samples");
  const int64_t count = parse_integer<int64_t>(count_text, "samples");
  if (count < 1 || count > kMaxSamples)
    bad_field("samples", count_text, fmt::format("must lie in [1, {}]", kMaxSamples));
  out.samples.resize(static_cast<size_t>(count));
  for (size_t i = 0; i < out.samples.size(); ++i) {
    RolloutSample& sample = out.samples[i];
    auto take = [&](const char* name) { return table.take(sample_field(i, name)); };
    sample.response_ids = from_bytes<int32_t>(take("response"), sample_field(i, "response"));
    sample.logprobs = from_bytes<float>(take("logprobs"), sample_field(i, "logprobs"));
    sample.sampled_logprobs =
        from_bytes<float>(take("sampled_logprobs"), sample_field(i, "sampled_logprobs"));
    sample.finish_reason = take("finish");
    sample.reward = parse_number(take("reward"), sample_field(i, "reward"));
    sample.seed = parse_integer<uint64_t>(take("seed"), sample_field(i, "seed"));
  }

  for (auto& [name, value] : table.rest()) {
    size_t index = 0;
    std::string component;
    if (name.rfind(kExtraPrefix, 0) == 0) {
      out.extra[name.substr(std::strlen(kExtraPrefix))] = std::move(value);
    } else if (parse_reward_field(name, index, component)) {
      if (index >= out.samples.size()) {
        bad_field(name, value,
                  fmt::format("a reward of sample {} in a group of {}", index, out.samples.size()));
      }
      out.samples[index].rewards[component] = parse_number(value, name);
    } else {
      bad_field(name, "", "not a field of a rollout group");
    }
  }
  check_rollout_group(out);
  return out;
}

}  // namespace lvrl::cache
