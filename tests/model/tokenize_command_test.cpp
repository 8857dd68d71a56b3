// `lvrl tokenize`: documents separated by \x1e lines in, JSON id arrays out, and back with --decode.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "model/pretokenizer.h"
#include "tests/model/qwen_reference.h"
#include "tests/support/run_process.h"

namespace lvrl::model {
namespace {
using test::ProcessResult;

// `lvrl tokenize --tokenizer QWEN FLAGS...` with `input` on stdin. Only stdout comes back unless
// `with_stderr`.
ProcessResult lvrl_tokenize(const std::vector<std::string>& flags, const std::string& input,
                            bool with_stderr = false) {
  std::vector<std::string> args = {"tokenize", "--tokenizer", testing_model::qwen_model_dir()};
  args.insert(args.end(), flags.begin(), flags.end());
  test::ProcessOptions options;
  options.input = input;
  options.separate_stderr = !with_stderr;
  return test::run_lvrl(args, options);
}

std::vector<std::vector<TokenId>> parse_lines(const std::string& output) {
  std::vector<std::vector<TokenId>> out;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);)
    out.push_back(nlohmann::json::parse(line).get<std::vector<TokenId>>());
  return out;
}

TEST(TokenizeCommand, OneArrayPerDocument) {
  const Tokenizer& t = testing_model::qwen_tokenizer();
  // Four documents; the last separator closes "last" instead of opening an empty fifth one.
  const std::string input =
      "Hello World\n\x1e\n<|im_start|>user\n\xE4\xBD\xA0\xE5\xA5\xBD\n\n\x1e\n\x1e\nlast\n\x1e\n";
  ProcessResult run = lvrl_tokenize({}, input);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  auto arrays = parse_lines(run.output);
  ASSERT_EQ(arrays.size(), 4u) << run.output;
  EXPECT_EQ(arrays[0], t.encode("Hello World"));
  EXPECT_EQ(arrays[1], t.encode("<|im_start|>user\n\xE4\xBD\xA0\xE5\xA5\xBD\n"));
  EXPECT_EQ(arrays[2], std::vector<TokenId>{});
  EXPECT_EQ(arrays[3], t.encode("last"));
}

TEST(TokenizeCommand, DecodeRoundTrips) {
  // The last document keeps its final newline: after the last separator, input is taken as is.
  const std::string input =
      "caf\x65\xCC\x81 <|im_end|>\n\x1e\nline one\nline two\n\n\x1e\n\xF0\x9F\x98\x80 done\n";
  ProcessResult encoded = lvrl_tokenize({}, input);
  ASSERT_EQ(encoded.exit_code, 0) << encoded.output;
  ProcessResult decoded = lvrl_tokenize({"--decode"}, encoded.output);
  ASSERT_EQ(decoded.exit_code, 0) << decoded.output;
  EXPECT_EQ(decoded.output, nfc(input));
  ProcessResult skipped = lvrl_tokenize({"--decode", "--skip-special"}, encoded.output);
  EXPECT_EQ(skipped.output.find("<|im_end|>"), std::string::npos) << skipped.output;
}

TEST(TokenizeCommand, BadInputNamesTheLine) {
  const std::string bad = "[9707, 4337]\n[1, \"x\"]\n";
  ProcessResult run = lvrl_tokenize({"--decode"}, bad, /*with_stderr=*/true);
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("<stdin>:2"), std::string::npos) << run.output;
  const std::string unknown = "[9707, 999999]\n";
  ProcessResult id = lvrl_tokenize({"--decode"}, unknown, /*with_stderr=*/true);
  EXPECT_EQ(id.exit_code, 2) << id.output;
  EXPECT_NE(id.output.find("999999"), std::string::npos) << id.output;
  ProcessResult missing = test::run_lvrl({"tokenize", "--tokenizer", "/nonexistent/dir"});
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find("/nonexistent/dir"), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace lvrl::model
