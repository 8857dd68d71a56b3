// Format rewards: did the reply lay out its reasoning and answer as the prompt asked
// (docs/rollout.md, "Rewards")? 1 or 0, reported beside accuracy and never mixed into it.
#pragma once

#include <string_view>

namespace lvrl::rollout {

// Long-RL's (and EasyR1's) check, re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", reply,
// re.DOTALL): the reply starts with <think>, ends with </answer>, and some </think> is followed, after
// whitespace only, by the <answer> that the final </answer> closes. Nothing before or after — not even
// a newline. Tags are case-sensitive; whitespace is ASCII.
bool strict_format(std::string_view response);

// Both blocks present, in order (<think>, </think>, <answer>, </answer>); any other text allowed
// around and between them; tags case-insensitive.
bool lenient_format(std::string_view response);

}  // namespace lvrl::rollout
