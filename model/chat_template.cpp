#include "model/chat_template.h"

#include <fmt/format.h>

#include "core/config.h"
#include "core/error.h"

namespace lvrl::model {

namespace {
// Asks for the reasoning inside <think> </think> and the answer inside <answer> </answer>, the layout
// Long-RL's video prompt asks for and its format reward checks.
constexpr const char* kThinkAnswerInstruction =
    "Think about the question step by step before answering. Write your reasoning between <think> and "
    "</think>, then give only the final answer between <answer> and </answer>.";
constexpr const char* kAnswerInstruction = "Give only the final answer, between <answer> and </answer>.";
constexpr const char* kMultipleChoiceHint =
    " For a multiple-choice question, the answer is the option's letter.";

const RegisterConfigSection prompt_section(
    {"prompt",
     "How a video question becomes the model's prompt",
     {
         ConfigKey::string("system", "You are a helpful assistant.", "system prompt (Qwen2.5-VL's default)"),
         ConfigKey::string(
             "answer_format", "think_answer",
             "what the prompt asks for: <think>…</think><answer>…</answer>, <answer>…</answer> only, "
             "or free text")
             .choices({"think_answer", "answer", "free"}),
         ConfigKey::string("instruction", "",
                           "sentence after the question; empty = the built-in one for answer_format"),
     }});

constexpr const char* kImStart = "<|im_start|>";
constexpr const char* kImEnd = "<|im_end|>";
constexpr const char* kVisionStart = "<|vision_start|>";
constexpr const char* kVisionEnd = "<|vision_end|>";
constexpr const char* kVideoPad = "<|video_pad|>";

std::string prompt_head(const PromptOptions& options) {
  return fmt::format("{0}system\n{1}{2}\n{0}user\n{3}", kImStart, options.system, kImEnd, kVisionStart);
}

std::string prompt_tail(const std::string& user_text) {
  return fmt::format("{0}{1}{2}\n{3}assistant\n", kVisionEnd, user_text, kImEnd, kImStart);
}
}  // namespace

PromptOptions PromptOptions::from_config(const Config& config) {
  PromptOptions options;
  options.system = config.get<std::string>("prompt.system");
  const std::string& format = config.get<std::string>("prompt.answer_format");
  options.format = format == "answer" ? AnswerFormat::Answer
                   : format == "free" ? AnswerFormat::Free
                                      : AnswerFormat::ThinkAnswer;
  options.instruction = config.get<std::string>("prompt.instruction");
  return options;
}

std::string PromptOptions::effective_instruction(bool multiple_choice) const {
  if (!instruction.empty()) return instruction;
  std::string text;
  if (format == AnswerFormat::ThinkAnswer) text = kThinkAnswerInstruction;
  if (format == AnswerFormat::Answer) text = kAnswerInstruction;
  if (!text.empty() && multiple_choice) text += kMultipleChoiceHint;
  return text;
}

int64_t video_token_count(const std::array<int64_t, 3>& grid_thw, int64_t merge_size) {
  auto [t, h, w] = grid_thw;
  if (t <= 0 || h <= 0 || w <= 0 || h % merge_size != 0 || w % merge_size != 0) {
    throw InputError(
        {"", 0, "grid_thw", fmt::format("[{}, {}, {}]", t, h, w)},
        fmt::format("expected positive sizes with h and w multiples of the merge size {}", merge_size));
  }
  return t * h * w / (merge_size * merge_size);
}

namespace {
// The user turn after the video: the question, then "Options:" and one option per line when there
// are options, then the instruction on its own line (when not empty).
std::string user_text(const PromptRequest& request, const PromptOptions& prompt) {
  std::string text = request.question;
  if (!request.options.empty()) {
    text += "\nOptions:";
    for (const std::string& option : request.options) text += "\n" + option;
  }
  std::string instruction = prompt.effective_instruction(!request.options.empty());
  if (!instruction.empty()) text += "\n" + instruction;
  return text;
}
}  // namespace

std::string render_prompt_text(const PromptRequest& request, const PromptOptions& options,
                               int64_t merge_size) {
  const int64_t video_tokens = video_token_count(request.grid_thw, merge_size);
  std::string pads;
  pads.reserve(static_cast<size_t>(video_tokens) * 13);
  for (int64_t i = 0; i < video_tokens; ++i) pads += kVideoPad;
  return prompt_head(options) + pads + prompt_tail(user_text(request, options));
}

VideoPrompt render_prompt(const Tokenizer& tokenizer, const PromptRequest& request,
                          const PromptOptions& options, int64_t merge_size) {
  VideoPrompt prompt;
  prompt.video_tokens = video_token_count(request.grid_thw, merge_size);
  // Added tokens split the text before anything else, so encoding the parts on either side of the
  // placeholders separately gives exactly the ids of the whole text (a test checks this).
  tokenizer.encode(prompt_head(options), prompt.ids);
  prompt.video_begin = static_cast<int64_t>(prompt.ids.size());
  prompt.ids.insert(prompt.ids.end(), static_cast<size_t>(prompt.video_tokens), tokenizer.id_of(kVideoPad));
  tokenizer.encode(prompt_tail(user_text(request, options)), prompt.ids);
  return prompt;
}

std::string format_answer(const std::string& reasoning, const std::string& answer, AnswerFormat format) {
  switch (format) {
    case AnswerFormat::ThinkAnswer:
      return fmt::format("<think>{}</think><answer>{}</answer>", reasoning, answer);
    case AnswerFormat::Answer:
      return fmt::format("<answer>{}</answer>", answer);
    case AnswerFormat::Free:
      break;
  }
  return answer;
}

std::vector<TokenId> encode_assistant_turn(const Tokenizer& tokenizer, const std::string& answer_text) {
  return tokenizer.encode(answer_text + kImEnd + "\n");
}

}  // namespace lvrl::model
