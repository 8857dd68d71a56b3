// Which embedding rows a sampled answer may use: real text tokens only (docs/rollout.md). The model's
// embedding has more rows than the tokenizer has ids (Qwen pads to a multiple of 128), and the vision
// placeholders are ids the model only ever reads in prompts; sampling either would write an answer the
// tokenizer cannot decode or the trainer would misread as video.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>

#include "model/tokenizer.h"

namespace lvrl::rollout {

// The added tokens an answer never contains (those the tokenizer has are masked).
inline constexpr const char* kVisionPlaceholderTokens[] = {
    "<|video_pad|>", "<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>"};

// [vocab_rows] bool, CPU: false for every id ≥ tokenizer.vocab_size(), every id the tokenizer lacks and
// the vision placeholders; true elsewhere (EOS and <|im_end|> included). vocab_rows below the
// tokenizer's vocabulary is an InputError (tokenizer and model do not belong together).
at::Tensor sampling_token_mask(const model::Tokenizer& tokenizer, int64_t vocab_rows);

}  // namespace lvrl::rollout
