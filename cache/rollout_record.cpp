#include "cache/rollout_record.h"

#include <fmt/format.h>

#include <charconv>
#include <cstring>
#include <stdexcept>

#include "core/error.h"

namespace lvrl::cache {
namespace {
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "token arrays are sent in host order: little-endian");

constexpr const char* kRewardPrefix = "reward.";
constexpr const char* kExtraPrefix = "x.";

template <typename T>
std::string to_bytes(const std::vector<T>& values) {
  std::string out(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

[[noreturn]] void bad_field(const std::string& field, const std::string& value, const std::string& problem) {
  throw InputError({"", 0, field, value.substr(0, 80)}, problem);
}

template <typename T>
std::vector<T> from_bytes(const std::string& bytes, const char* field) {
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
}  // namespace

bool RolloutRecord::operator==(const RolloutRecord& other) const {
  return rollout_id == other.rollout_id && prompt_id == other.prompt_id &&
         policy_version == other.policy_version && token_ids == other.token_ids &&
         behaviour_logprobs == other.behaviour_logprobs && rewards == other.rewards &&
         reward == other.reward && embedding_key == other.embedding_key && extra == other.extra;
}

StreamFields encode_rollout(const RolloutRecord& record) {
  StreamFields out = {
      {"id", record.rollout_id},
      {"prompt", record.prompt_id},
      {"version", fmt::format("{}", record.policy_version)},
      {"tokens", to_bytes(record.token_ids)},
      {"logprobs", to_bytes(record.behaviour_logprobs)},
      {"reward", number_text(record.reward)},
      {"embedding", record.embedding_key},
  };
  for (const auto& [name, value] : record.rewards) out.emplace_back(kRewardPrefix + name, number_text(value));
  for (const auto& [name, value] : record.extra) out.emplace_back(kExtraPrefix + name, value);
  return out;
}

RolloutRecord decode_rollout(const StreamFields& fields) {
  RolloutRecord out;
  bool seen_id = false, seen_version = false;
  for (const auto& [name, value] : fields) {
    if (name == "id") {
      out.rollout_id = value;
      seen_id = true;
    } else if (name == "prompt") {
      out.prompt_id = value;
    } else if (name == "version") {
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), out.policy_version);
      if (ec != std::errc() || end != value.data() + value.size()) {
        bad_field(name, value, "not an integer");
      }
      seen_version = true;
    } else if (name == "tokens") {
      out.token_ids = from_bytes<int32_t>(value, "tokens");
    } else if (name == "logprobs") {
      out.behaviour_logprobs = from_bytes<float>(value, "logprobs");
    } else if (name == "reward") {
      out.reward = parse_number(value, name);
    } else if (name == "embedding") {
      out.embedding_key = value;
    } else if (name.rfind(kRewardPrefix, 0) == 0) {
      out.rewards[name.substr(std::strlen(kRewardPrefix))] = parse_number(value, name);
    } else if (name.rfind(kExtraPrefix, 0) == 0) {
      out.extra[name.substr(std::strlen(kExtraPrefix))] = value;
    } else {
      bad_field(name, "", "not a field of a rollout");
    }
  }
  if (!seen_id || out.rollout_id.empty()) bad_field("id", "", "a rollout needs its id");
  if (!seen_version) bad_field("version", "", "a rollout needs its policy version");
  if (out.token_ids.size() != out.behaviour_logprobs.size()) {
    bad_field("logprobs", "",
              fmt::format("{} log-probs for {} tokens", out.behaviour_logprobs.size(), out.token_ids.size()));
  }
  return out;
}

}  // namespace lvrl::cache
