// Stop detection: EOS ids by value, stop strings by searching only the tail of the decoded text that a
// new piece can have completed (the piece plus one string's length before it).
#include "rollout/stop_checker.h"

#include <algorithm>

#include "core/error.h"

namespace lvrl::rollout {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::Stop:
      return "stop";
    case FinishReason::Length:
      return "length";
    case FinishReason::None:
      break;
  }
  return "none";
}

StopChecker::StopChecker(const model::Tokenizer& tokenizer, const SamplingParams& params)
    : decoder_(tokenizer, /*skip_special_tokens=*/true),
      stop_(params.stop),
      max_new_tokens_(params.max_new_tokens) {
  auto add_eos = [&](model::TokenId id) {
    if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
  };
  if (auto eos = tokenizer.eos_id()) add_eos(*eos);
  for (const model::AddedToken& token : tokenizer.added_tokens()) {
    if (token.content == "<|im_end|>" || token.content == "<|endoftext|>") add_eos(token.id);
  }
}

FinishReason StopChecker::push(model::TokenId id) {
  LVRL_ASSERT(finish_reason_ == FinishReason::None, "StopChecker::push after the answer finished");
  ++generated_;
  if (std::find(eos_ids_.begin(), eos_ids_.end(), id) != eos_ids_.end()) {
    finish_reason_ = FinishReason::Stop;
    return finish_reason_;
  }
  const size_t before = text_.size();
  text_ += decoder_.push(id);
  if (text_.size() > before) {
    for (const std::string& stop : stop_) {
      // A match not wholly inside the old text: it starts after before − |stop|.
      const size_t from = before >= stop.size() ? before - stop.size() + 1 : 0;
      if (text_.find(stop, from) != std::string::npos) {
        matched_stop_ = stop;
        finish_reason_ = FinishReason::Stop;
        return finish_reason_;
      }
    }
  }
  if (generated_ >= max_new_tokens_) finish_reason_ = FinishReason::Length;
  return finish_reason_;
}

}  // namespace lvrl::rollout
