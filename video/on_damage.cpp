#include "video/on_damage.h"

#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"

namespace lvrl::video {
namespace {
const RegisterConfigSection video_section(
    {"video",
     "How videos are read",
     {
         ConfigKey::string("on_damage", "previous",
                           "a target whose frame does not decode gets: previous (the last decodable frame "
                           "before it), nearest (the nearest decodable frame either side), drop (no frame: "
                           "fewer frames; not for preprocess) or error (the video fails, naming the span)")
             .choices({"previous", "nearest", "drop", "error"}),
     }});

constexpr OnDamage kPolicies[] = {OnDamage::Previous, OnDamage::Nearest, OnDamage::Drop, OnDamage::Error};
}  // namespace

const char* on_damage_name(OnDamage policy) {
  switch (policy) {
    case OnDamage::Previous:
      return "previous";
    case OnDamage::Nearest:
      return "nearest";
    case OnDamage::Drop:
      return "drop";
    default:
      return "error";
  }
}

OnDamage parse_on_damage(const std::string& text, const std::string& key) {
  for (OnDamage policy : kPolicies) {
    if (text == on_damage_name(policy)) return policy;
  }
  throw InputError({"", 0, key, text}, "expected one of: previous, nearest, drop, error");
}

OnDamage on_damage_from(const Config& config) {
  const std::string& origin = config.origin("video.on_damage");
  try {
    return parse_on_damage(config.get<std::string>("video.on_damage"), "video.on_damage");
  } catch (const InputError& e) {
    throw InputError({origin == "default" ? "" : origin, 0, e.key(), e.value()}, e.problem());
  }
}

std::string span_text(const DamagedSpan& span) {
  return std::isfinite(span.end_s) ? fmt::format("{:.3f} s to {:.3f} s", span.begin_s, span.end_s)
                                   : fmt::format("{:.3f} s to the end", span.begin_s);
}

nlohmann::json frame_records(const std::vector<double>& targets, const std::vector<double>& times,
                             const std::vector<bool>& damaged) {
  LVRL_ASSERT(targets.size() == times.size() && times.size() == damaged.size(),
              "frame_records: one target, time and damage mark per frame");
  nlohmann::json records = nlohmann::json::array();
  for (size_t i = 0; i < targets.size(); ++i) {
    records.push_back(
        {{"target", targets[i]}, {"time", times[i]}, {"damaged", static_cast<bool>(damaged[i])}});
  }
  return records;
}

nlohmann::json spans_json(const std::vector<DamagedSpan>& spans) {
  nlohmann::json out = nlohmann::json::array();
  for (const DamagedSpan& span : spans) {
    out.push_back(
        {{"begin", span.begin_s},
         {"end", std::isfinite(span.end_s) ? nlohmann::json(span.end_s) : nlohmann::json(nullptr)}});
  }
  return out;
}

}  // namespace lvrl::video
