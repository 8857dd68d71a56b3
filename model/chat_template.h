// Qwen2.5-VL's prompt for one video and one question (docs/model.md#placeholder-expansion, #chat-template):
//
//   <|im_start|>system\n{system}<|im_end|>\n
//   <|im_start|>user\n<|vision_start|><|video_pad|>×K<|vision_end|>{question}<|im_end|>\n
//   <|im_start|>assistant\n
//
// K = t·h·w / merge_size² for the video's grid_thw (14-px patches; the merger folds 2×2 of them into
// one token). This is what the processor's chat template followed by placeholder expansion
// produces; we write it directly instead of running Jinja. The user turn is the question, the
// options one per line, then an instruction asking for the configured answer format
// (`<think>…</think><answer>…</answer>` by default). Those choices live in the "prompt" config
// section.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer.h"

namespace lvrl {
class Config;
}

namespace lvrl::model {

enum class AnswerFormat {
  ThinkAnswer,  // <think>reasoning</think><answer>final</answer>
  Answer,       // <answer>final</answer>
  Free,         // no tags asked for
};

struct PromptOptions {
  std::string system = "You are a helpful assistant.";
  AnswerFormat format = AnswerFormat::ThinkAnswer;
  std::string instruction;  // "" = the built-in instruction for `format`

  // prompt.system, prompt.answer_format, prompt.instruction.
  static PromptOptions from_config(const Config& config);
  // The sentence appended to the question: `instruction`, or the built-in one for `format`.
  std::string effective_instruction(bool multiple_choice) const;
};

// The number of <|video_pad|> tokens for one video. grid_thw = {T/2, H/14, W/14}; h and w must be
// multiples of merge_size (InputError naming grid_thw otherwise).
int64_t video_token_count(const std::array<int64_t, 3>& grid_thw, int64_t merge_size = 2);

// One video question, as a dataset row gives it.
struct PromptRequest {
  std::string question;
  std::vector<std::string> options;   // one line each, as written ("A. eggs"); empty for open questions
  std::array<int64_t, 3> grid_thw{};  // the video's patch grid {T/2, H/14, W/14}
};

struct VideoPrompt {
  std::vector<TokenId> ids;  // [L] the prompt, ending with "<|im_start|>assistant\n"
  int64_t video_begin = 0;   // index in ids of the first <|video_pad|>
  int64_t video_tokens = 0;  // K: ids[video_begin, video_begin + K) are <|video_pad|>
};

// The one prompt renderer: SFT, rollout, eval and generation all turn a question into ids here, so
// the policy is trained on exactly the prompts it is sampled and judged on. The ids equal encoding
// render_prompt_text(request, options) — built without tokenizing K placeholders one by one.
VideoPrompt render_prompt(const Tokenizer& tokenizer, const PromptRequest& request,
                          const PromptOptions& options, int64_t merge_size = 2);
// The same prompt as text, the video placeholder expanded to its K pads (for logs, tests, records).
std::string render_prompt_text(const PromptRequest& request, const PromptOptions& options,
                               int64_t merge_size = 2);

// An assistant answer in `format`, e.g. for SFT targets: "<think>{reasoning}</think><answer>{answer}
// </answer>" (no spaces or newlines added); Answer drops the reasoning, Free returns the answer as is.
std::string format_answer(const std::string& reasoning, const std::string& answer, AnswerFormat format);

// The assistant turn that follows the prompt: the answer text, then <|im_end|> and "\n".
std::vector<TokenId> encode_assistant_turn(const Tokenizer& tokenizer, const std::string& answer_text);

}  // namespace lvrl::model
