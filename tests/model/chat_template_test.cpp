// The video-QA prompt: K from grid_thw, the exact layout, ids identical to encoding the text.
#include "model/chat_template.h"

#include <gtest/gtest.h>

#include "core/config.h"
#include "core/error.h"
#include "tests/model/qwen_reference.h"

namespace lvrl::model {
namespace {
using testing_model::qwen_tokenizer;

TEST(ChatTemplate, VideoTokenCountFromGrid) {
  EXPECT_EQ(video_token_count({10, 40, 72}), 7200);  // docs/model.md#video-path: 1280×720, 10 s at 30 fps
  EXPECT_EQ(video_token_count({1, 2, 2}), 1);
  EXPECT_EQ(video_token_count({384, 16, 28}), 384 * 16 * 28 / 4);
  EXPECT_THROW(video_token_count({1, 3, 4}), InputError);
  EXPECT_THROW(video_token_count({0, 2, 2}), InputError);
}

// The whole text of one prompt under the default options, written out by hand from Qwen2.5-VL's chat
// template (system turn, user turn with the video first, assistant header) and the configured
// instruction: any change to what the policy sees changes this string.
TEST(ChatTemplate, PinsTheDefaultPrompt) {
  PromptRequest request{
      "Which colour appears first?", {"A. red", "B. green", "C. blue", "D. yellow"}, {1, 2, 4}};
  EXPECT_EQ(
      render_prompt_text(request, PromptOptions{}),
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
      "<|im_start|>user\n<|vision_start|><|video_pad|><|video_pad|><|vision_end|>"
      "Which colour appears first?\nOptions:\nA. red\nB. green\nC. blue\nD. yellow\n"
      "Think about the question step by step before answering. Write your reasoning between <think> and "
      "</think>, then give only the final answer between <answer> and </answer>. For a multiple-choice "
      "question, the answer is the option's letter.<|im_end|>\n"
      "<|im_start|>assistant\n");
}

TEST(ChatTemplate, RendersQwenVideoQaLayout) {
  PromptOptions options;
  options.format = AnswerFormat::Free;
  options.system = "Be brief.";
  EXPECT_EQ(render_prompt_text({"What happens in this video?", {}, {3, 2, 2}}, options),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n<|vision_start|>"
            "<|video_pad|><|video_pad|><|video_pad|><|vision_end|>What happens in this video?<|im_end|>\n"
            "<|im_start|>assistant\n");
}

// The user turn's text: the rendered prompt between <|vision_end|> and the turn's <|im_end|>.
std::string user_turn(const PromptRequest& request, const PromptOptions& options) {
  const std::string text = render_prompt_text(request, options);
  const size_t begin = text.find("<|vision_end|>") + std::string("<|vision_end|>").size();
  return text.substr(begin, text.find("<|im_end|>", begin) - begin);
}

TEST(ChatTemplate, UserTextCarriesOptionsAndInstruction) {
  const std::array<int64_t, 3> grid{1, 2, 2};
  PromptOptions free;
  free.format = AnswerFormat::Free;
  EXPECT_EQ(user_turn({"Q?", {}, grid}, free), "Q?");
  EXPECT_EQ(user_turn({"Q?", {"A. x", "B. y"}, grid}, free), "Q?\nOptions:\nA. x\nB. y");
  PromptOptions answer;
  answer.format = AnswerFormat::Answer;
  EXPECT_EQ(user_turn({"Q?", {}, grid}, answer),
            "Q?\nGive only the final answer, between <answer> and </answer>.");
  PromptOptions custom;
  custom.instruction = "Answer in one word.";
  EXPECT_EQ(user_turn({"Q?", {"A. x"}, grid}, custom), "Q?\nOptions:\nA. x\nAnswer in one word.");
}

TEST(ChatTemplate, PromptIdsEqualEncodingTheExpandedText) {
  const Tokenizer& t = qwen_tokenizer();
  PromptOptions options;
  for (std::array<int64_t, 3> grid : {std::array<int64_t, 3>{1, 2, 2}, {2, 4, 6}, {10, 40, 72}}) {
    PromptRequest request{
        "What does the man cook first? \xE4\xBD\xA0\xE5\xA5\xBD", {"A. eggs", "B. rice"}, grid};
    VideoPrompt prompt = render_prompt(t, request, options);
    int64_t k = video_token_count(grid);
    EXPECT_EQ(prompt.video_tokens, k);
    EXPECT_EQ(prompt.ids, t.encode(render_prompt_text(request, options)));
    ASSERT_GE(prompt.video_begin, 1);
    EXPECT_EQ(prompt.ids[prompt.video_begin - 1], t.id_of("<|vision_start|>"));
    for (int64_t i = 0; i < k; ++i) ASSERT_EQ(prompt.ids[prompt.video_begin + i], 151656);
    EXPECT_EQ(prompt.ids[prompt.video_begin + k], t.id_of("<|vision_end|>"));
    EXPECT_EQ(std::vector<TokenId>(prompt.ids.begin(), prompt.ids.begin() + 3),
              (std::vector<TokenId>{151644, 8948, 198}));
    EXPECT_EQ(std::vector<TokenId>(prompt.ids.end() - 3, prompt.ids.end()),
              (std::vector<TokenId>{151644, 77091, 198}));
  }
}

TEST(ChatTemplate, OptionsFromConfig) {
  Config config =
      Config::parse("prompt:\n  system: Be brief.\n", "test.yaml", {"prompt.answer_format=answer"});
  PromptOptions options = PromptOptions::from_config(config);
  EXPECT_EQ(options.system, "Be brief.");
  EXPECT_EQ(options.format, AnswerFormat::Answer);
  EXPECT_EQ(options.effective_instruction(false),
            "Give only the final answer, between <answer> and </answer>.");
  EXPECT_THROW(Config::parse("", "test.yaml", {"prompt.answer_format=json"}), InputError);
  PromptOptions defaults = PromptOptions::from_config(Config::parse("", "test.yaml"));
  EXPECT_EQ(defaults.system, "You are a helpful assistant.");
  EXPECT_EQ(defaults.format, AnswerFormat::ThinkAnswer);
}

TEST(ChatTemplate, AnswerFormatsAndAssistantTurn) {
  EXPECT_EQ(format_answer("r", "B", AnswerFormat::ThinkAnswer), "<think>r</think><answer>B</answer>");
  EXPECT_EQ(format_answer("r", "B", AnswerFormat::Answer), "<answer>B</answer>");
  EXPECT_EQ(format_answer("r", "B", AnswerFormat::Free), "B");
  const Tokenizer& t = qwen_tokenizer();
  std::vector<TokenId> turn =
      encode_assistant_turn(t, format_answer("Eggs first.", "A", AnswerFormat::ThinkAnswer));
  ASSERT_GE(turn.size(), 2u);
  EXPECT_EQ(turn[turn.size() - 2], 151645);  // <|im_end|>
  EXPECT_EQ(turn.back(), 198);               // \n
  EXPECT_EQ(t.decode(turn), "<think>Eggs first.</think><answer>A</answer><|im_end|>\n");
}

}  // namespace
}  // namespace lvrl::model
