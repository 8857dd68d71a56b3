// When an answer ends, and why (docs/rollout.md: the record's finish reason).
//
// An answer stops at an end-of-sequence id — tokenizer.eos_id(), <|im_end|> and <|endoftext|> (those the
// tokenizer has) — or at the token that completes one of SamplingParams::stop. Stop strings are
// matched in the text decoded so far (incrementally, special tokens skipped), so one may span several
// tokens; the token that completes it stays in the answer, as do the EOS id and any text that token
// carries past the stop string. Otherwise the answer ends with `length` at max_new_tokens; a token
// that both stops and reaches the limit counts as a stop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "rollout/sampler.h"

namespace lvrl::rollout {

enum class FinishReason { None, Stop, Length };

const char* finish_reason_name(FinishReason reason);  // "none" / "stop" / "length"

// One per answer row: push() each sampled id in order; it says when the answer is complete.
class StopChecker {
 public:
  StopChecker(const model::Tokenizer& tokenizer, const SamplingParams& params);

  // None while the answer goes on; pushing after the answer finished is a bug (asserts).
  FinishReason push(model::TokenId id);

  FinishReason finish_reason() const { return finish_reason_; }
  int64_t generated() const { return generated_; }   // ids pushed so far
  const std::string& text() const { return text_; }  // decoded so far (special tokens skipped)
  const std::string& matched_stop() const { return matched_stop_; }  // the stop string that ended it, or ""
  const std::vector<model::TokenId>& eos_ids() const { return eos_ids_; }

 private:
  model::StreamDecoder decoder_;
  std::vector<model::TokenId> eos_ids_;
  std::vector<std::string> stop_;
  int64_t max_new_tokens_;
  int64_t generated_ = 0;
  std::string text_;
  std::string matched_stop_;
  FinishReason finish_reason_ = FinishReason::None;
};

}  // namespace lvrl::rollout
