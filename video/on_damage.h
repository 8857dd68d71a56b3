// What the sampler returns for a target whose own frame does not decode. A damaged span is a bad
// packet (or a frame the decoder flags) and every frame that depends on it, up to the next keyframe;
// the frame for a target inside one cannot be returned, so the caller says what stands in for it.
// Whatever the policy, nothing is silent: every result marks, per frame, its target time, the time
// of the frame returned and whether that frame stands in for a damaged one, and the policy is part
// of the text that names a sampling inside cache keys (a different policy is a different entry).
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace lvrl {
class Config;
}

namespace lvrl::video {

enum class OnDamage {
  Previous,  // the last decodable frame at or before the target (the default)
  Nearest,   // the decodable frame nearest the target on either side; a tie goes to the earlier
  Drop,      // leave the target out: fewer frames than targets
  Error,     // refuse the video: an InputError naming the file and the damaged span
};

const char* on_damage_name(OnDamage policy);  // "previous", "nearest", "drop", "error"
// One of those names; anything else is an InputError naming `key` ("--on-damage", "video.on_damage").
OnDamage parse_on_damage(const std::string& text, const std::string& key);
// The config's video.on_damage (the `video` section is registered beside this).
OnDamage on_damage_from(const Config& config);

// Presentation times (seconds from the first frame) of frames that did not decode, where a target
// fell among them: from the first undecodable frame to the next decodable one (end_s is infinite
// when none follows).
struct DamagedSpan {
  double begin_s = 0, end_s = 0;
  bool operator==(const DamagedSpan& other) const { return begin_s == other.begin_s && end_s == other.end_s; }
};
std::string span_text(const DamagedSpan& span);  // "1.367 s to 2.000 s", "4.000 s to the end"

// [{"target": 1.5, "time": 1.3, "damaged": true}, ...]: one per returned frame, same order.
nlohmann::json frame_records(const std::vector<double>& targets, const std::vector<double>& times,
                             const std::vector<bool>& damaged);
nlohmann::json spans_json(const std::vector<DamagedSpan>& spans);  // [{"begin": .., "end": .. or null}]

}  // namespace lvrl::video
