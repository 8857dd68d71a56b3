// Rewards: numeric and string matching, the format checks, the scorer choice, the weighted sum, the
// registry, the external command and the two `lvrl reward` commands. Expected values are written by
// hand from docs/rollout.md ("Rewards"); sums are compared in float64 to 1e-12.
#include "rollout/reward.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.h"
#include "rollout/reward_accuracy.h"
#include "rollout/reward_external.h"
#include "rollout/reward_format.h"
#include "rollout/reward_numeric.h"
#include "tests/support/expect_error.h"
#include "tests/support/files.h"
#include "tests/support/run_process.h"

namespace lvrl::rollout {
namespace {
constexpr double kSumTolerance = 1e-12;

Config config_with(const std::vector<std::string>& overrides) {
  return Config::parse("", "test", overrides);
}

// A component only this test registers: 1 per 100 bytes of reply.
class ReplyLengthReward : public RewardFunction {
 public:
  std::string name() const override { return "test_reply_length"; }
  double score(const RewardInput& input) override {
    return static_cast<double>(input.response.size()) / 100.0;
  }
};
const RegisterReward reply_length_reward("test_reply_length",
                                         [](const Config&) { return std::make_unique<ReplyLengthReward>(); });

// ---- numbers ---------------------------------------------------------------------------------------

TEST(RewardNumeric, ReadsNumbersAsWritten) {
  struct Case {
    std::string text;
    std::vector<double> values;
  };
  const std::vector<Case> table{
      {"1,234.5", {1234.5}},
      {"1,234,567 people", {1234567}},
      {"1,23", {1, 23}},
      {"3/4", {0.75}},
      {"\\frac{3}{4}", {0.75}},
      {"-3/4", {-0.75}},
      {"5 km", {5}},
      {"5km/h", {5}},
      {"50%", {50}},
      {"-2.5e3", {-2500}},
      {".5", {0.5}},
      {"H2O and x2 and video.mp4", {}},
      {"on 3/4/2020", {}},
      {"1/0", {1, 0}},
      {"between 3 and 4.25", {3, 4.25}},
  };
  for (const auto& c : table) {
    const std::vector<NumberInText> numbers = find_numbers(c.text);
    ASSERT_EQ(numbers.size(), c.values.size()) << c.text;
    for (size_t i = 0; i < numbers.size(); ++i) EXPECT_DOUBLE_EQ(numbers[i].value, c.values[i]) << c.text;
  }
}

TEST(RewardNumeric, ToleranceIsRelativeOneInTenThousandOrAbsoluteOneInAMillion) {
  EXPECT_TRUE(numbers_match(1000.0999, 1000));  // |diff| 0.0999 < 1e-4 × 1000
  EXPECT_FALSE(numbers_match(1000.1001, 1000));
  EXPECT_TRUE(numbers_match(999.9001, 1000));
  EXPECT_FALSE(numbers_match(999.8999, 1000));
  EXPECT_TRUE(numbers_match(-999.9001, -1000));
  EXPECT_FALSE(numbers_match(-1000.1001, -1000));
  EXPECT_TRUE(numbers_match(9e-7, 0));  // absolute near zero
  EXPECT_FALSE(numbers_match(1.1e-6, 0));
  EXPECT_TRUE(numbers_match(0.0010009, 0.001));  // 9e-7: inside the absolute floor, past relative (1e-7)
  EXPECT_FALSE(numbers_match(0.0010011, 0.001));
}

TEST(RewardNumeric, ReadsTheReplysAnswer) {
  struct Case {
    std::string response, key;
    double accuracy;
  };
  const std::vector<Case> table{
      {"<answer>1,234.5</answer>", "1234.5", 1},
      {"<answer>3/4</answer>", "0.75", 1},
      {"<answer>0.75</answer>", "3/4", 1},
      {"<answer>\\boxed{\\frac{3}{4}}</answer>", "0.75", 1},
      {"The distance is 5 km", "5", 1},
      {"<answer>5 km</answer>", "<answer>5</answer>", 1},
      {"The answer is 5 km, that is 5000 m", "5", 1},       // the first number after the declaration
      {"<think>maybe 7, maybe 9</think> it is 8", "8", 1},  // else the last number
      {"<answer>1000.2</answer>", "1000", 0},
      {"<answer>about twelve</answer>", "12", 0},
      {"<answer>5", "5", 0},  // unclosed: no answer
  };
  for (const auto& c : table) {
    const RewardInput input{c.response, c.key, {}, "numerical"};
    EXPECT_EQ(check_answer(input, StringMatch::Normalized).score, c.accuracy)
        << c.response << " vs " << c.key;
  }
  EXPECT_EQ(extract_number("<answer>1,234.5 m</answer>")->text, "1,234.5");
  test::expect_input_error([] { check_answer_key({"5", "five", {}, "numerical"}); }, "answer");
}

// ---- strings ---------------------------------------------------------------------------------------

TEST(RewardString, NormalisedAndExactMatch) {
  EXPECT_EQ(normalize_for_match("The Eiffel  Tower."), "eiffel tower");
  EXPECT_EQ(normalize_for_match("an apple, a pear"), "apple pear");
  struct Case {
    std::string response, key;
    double normalized, exact;
  };
  const std::vector<Case> table{
      {"<answer>The Eiffel tower</answer>", "Eiffel Tower", 1, 0},
      {"<answer> Eiffel Tower </answer>", "Eiffel Tower", 1, 1},
      {"The answer is: Paris.", "paris", 1, 0},
      {"<think>Rome?</think>Paris", "Paris", 1, 1},
      {"<answer>Paris, France</answer>", "Paris", 0, 0},
      {"<answer></answer>", "", 0, 1},  // an empty key matches nothing once normalised
  };
  for (const auto& c : table) {
    const RewardInput input{c.response, c.key, {}, ""};
    EXPECT_EQ(check_answer(input, StringMatch::Normalized).score, c.normalized) << c.response;
    EXPECT_EQ(check_answer(input, StringMatch::Exact).score, c.exact) << c.response;
  }
}

// ---- which scorer ----------------------------------------------------------------------------------

TEST(RewardAccuracy, TheRowChoosesTheScorer) {
  EXPECT_EQ(answer_kind({"", "B", {"A. x", "B. y"}, "numerical"}), AnswerKind::MultipleChoice);
  EXPECT_EQ(answer_kind({"", "B", {}, "multiple choice"}), AnswerKind::MultipleChoice);
  EXPECT_EQ(answer_kind({"", "B", {}, "Multiple_Choice"}), AnswerKind::MultipleChoice);
  EXPECT_EQ(answer_kind({"", "3", {}, "numerical"}), AnswerKind::Numeric);
  EXPECT_EQ(answer_kind({"", "3", {}, ""}), AnswerKind::String);
  EXPECT_EQ(answer_kind({"", "3", {}, "free-form"}), AnswerKind::String);
}

TEST(RewardAccuracy, MultipleChoiceKeysAndOptions) {
  EXPECT_EQ(option_letters({"A. red", "B. blue", "C. green"}), (std::vector<char>{'A', 'B', 'C'}));
  EXPECT_EQ(option_letters({"(a) red", "(c) blue"}), (std::vector<char>{'A', 'C'}));
  EXPECT_EQ(option_letters({"red", "blue"}), (std::vector<char>{'A', 'B'}));
  EXPECT_EQ(option_letters({"A. red", "blue"}), (std::vector<char>{'A', 'B'}));
  EXPECT_EQ(option_letters({}).size(), 8u);
  struct Case {
    RewardInput input;
    double accuracy;
    std::string extracted;
  };
  const std::vector<Case> table{
      {{"<think>The cat moves.</think><answer>B</answer>", "B", {"A. red", "B. blue", "C. green"}, ""},
       1,
       "B"},
      {{"<answer>C</answer>", "B", {"A. red", "B. blue", "C. green"}, ""}, 0, "C"},
      {{"<answer>D</answer>", "B", {"A. red", "B. blue", "C. green"}, ""}, 0, ""},  // D is not offered
      {{"Based on the video, B", "blue", {"red", "blue"}, ""}, 1, "B"},  // the key is an option's text
      {{"<answer>C</answer>", "<answer>C</answer>", {}, "multiple choice"}, 1, "C"},  // LongVideo-Reason rows
      {{"<answer>B.</answer>", "<answer>C</answer>", {}, "multiple choice"}, 0, "B"},
  };
  for (const auto& c : table) {
    const AnswerCheck check = check_answer(c.input, StringMatch::Normalized);
    EXPECT_EQ(check.score, c.accuracy) << c.input.response;
    EXPECT_EQ(check.extracted, c.extracted) << c.input.response;
  }
  test::expect_input_error([] { check_answer_key({"", "D", {"A. red", "B. blue"}, ""}); }, "answer");
  test::expect_input_error([] { check_answer_key({"", "purple", {"red", "blue"}, ""}); }, "answer");
}

// ---- format ----------------------------------------------------------------------------------------

TEST(RewardFormat, StrictAsLongRlDefinesIt) {
  struct Case {
    std::string response;
    bool strict, lenient;
  };
  const std::vector<Case> table{
      {"<think>a</think><answer>B</answer>", true, true},
      {"<think>a\nb</think>\n\n <answer>B</answer>", true, true},
      {"<think></think><answer></answer>", true, true},
      {" <think>a</think><answer>B</answer>", false, true},   // text before
      {"<think>a</think><answer>B</answer>\n", false, true},  // text after
      {"<think>a</think> so <answer>B</answer>", false, true},
      {"Sure! <think>a</think> so <answer>B</answer> done", false, true},
      {"<THINK>a</THINK><ANSWER>B</ANSWER>", false, true},
      // The regex's lazy groups still stretch: a second answer block inside the first's span passes.
      {"<think>a</think><answer>B</answer><answer>C</answer>", true, true},
      {"<answer>B</answer><think>a</think>", false, false},
      {"<answer>B</answer>", false, false},
      {"<think>a</think>", false, false},
      {"<think>a</think><answer>B", false, false},
      {"<think>a<answer>B</answer>", false, false},
      {"<think>a</think><answer></answer", false, false},
  };
  for (const auto& c : table) {
    EXPECT_EQ(strict_format(c.response), c.strict) << c.response;
    EXPECT_EQ(lenient_format(c.response), c.lenient) << c.response;
  }
}

// ---- the weighted sum and the registry -------------------------------------------------------------

TEST(RewardModel, DefaultIsNineTenthsAccuracyAndOneTenthFormat) {
  RewardModel model = RewardModel::from_config(config_with({}));
  const std::vector<std::string> options{"A. red", "B. blue", "C. green"};
  struct Case {
    std::string response;
    double accuracy, format;
  };
  const std::vector<Case> table{
      {"<think>It is blue.</think><answer>B</answer>", 1, 1},
      {"<think>It is red.</think><answer>A</answer>", 0, 1},
      {"The answer is B.", 1, 0},
      {"A cat sits on the mat", 0, 0},
  };
  std::vector<RewardInput> inputs;
  for (const auto& c : table) inputs.push_back({c.response, "B", options, ""});
  const std::vector<RewardResult> results = model.score_batch(inputs);
  ASSERT_EQ(results.size(), table.size());
  for (size_t i = 0; i < table.size(); ++i) {
    EXPECT_EQ(results[i].rewards.at("accuracy"), table[i].accuracy) << table[i].response;
    EXPECT_EQ(results[i].rewards.at("format"), table[i].format) << table[i].response;
    EXPECT_NEAR(results[i].reward, 0.9 * table[i].accuracy + 0.1 * table[i].format, kSumTolerance);
    EXPECT_EQ(results[i].rewards.size(), 2u);
  }
  EXPECT_EQ(results[0].extracted, "B");
  EXPECT_EQ(model.score(inputs[2]).extracted, "B");
}

TEST(RewardModel, WeightsFlavourAndARegisteredComponent) {
  RewardModel model = RewardModel::from_config(config_with(
      {"reward.weights=accuracy=2, format=0.5, test_reply_length=-0.25", "reward.format=lenient"}));
  const std::string response = "Hello <think>x</think> <answer>3/4</answer>";  // 43 bytes
  const RewardResult result = model.score({response, "0.75", {}, "numerical"});
  EXPECT_EQ(result.rewards.at("accuracy"), 1);
  EXPECT_EQ(result.rewards.at("format"), 1);  // lenient: text before the blocks is fine
  EXPECT_NEAR(result.rewards.at("test_reply_length"), 0.43, kSumTolerance);
  EXPECT_NEAR(result.reward, 2 * 1 + 0.5 * 1 - 0.25 * 0.43, kSumTolerance);
  EXPECT_EQ(result.extracted, "3/4");

  RewardModel strict =
      RewardModel::from_config(config_with({"reward.weights=format_strict=1,format_lenient=1"}));
  EXPECT_NEAR(strict.score({response, "x", {}, ""}).reward, 0 + 1, kSumTolerance);
}

TEST(RewardModel, BadWeightsNameTheEntry) {
  const auto fails = [](const std::string& weights, const std::vector<std::string>& fragments) {
    const InputError e = test::expect_input_error_mentioning(
        [&] { RewardModel::from_config(config_with({"reward.weights=" + weights})); }, fragments);
    EXPECT_EQ(e.key(), "reward.weights") << e.what();
  };
  fails("acuracy=0.9", {"acuracy=0.9", "no reward named 'acuracy'", "accuracy", "format_lenient"});
  fails("accuracy", {"'accuracy'", "name=weight"});
  fails("accuracy=high", {"accuracy=high"});
  fails("accuracy=nan", {"accuracy=nan"});
  fails("accuracy=1,accuracy=2", {"weighted twice"});
  fails("external=1", {"reward.external_weight"});
}

// ---- the external command --------------------------------------------------------------------------

// A private directory holding `name`, a /bin/sh script with `body`.
std::string write_script(const TempDir& dir, const std::string& name, const std::string& body) {
  const std::string path = dir.file(name);
  test::write_file(path, body);
  return path;
}

TEST(RewardExternal, StartedOnceAndFedJsonLines) {
  TempDir dir;
  // Answers its own line count (so a restart would show), plus 0.5 when the line holds "good".
  const std::string script = write_script(
      dir, "count.sh",
      "n=0\nwhile IFS= read -r line; do n=$((n+1)); case \"$line\" in *good*) echo \"$n.5\";; *) echo "
      "\"$n\";; esac; done\n");
  RewardModel model = RewardModel::from_config(config_with(
      {"reward.weights=accuracy=1", "reward.external=sh " + script, "reward.external_weight=0.01"}));
  std::vector<RewardInput> first{{"<answer>B</answer> good", "B", {}, "multiple choice"},
                                 {"<answer>C</answer>", "B", {}, "multiple choice"},
                                 {"good\nwith a newline and \"quotes\"", "B", {}, "multiple choice"}};
  const std::vector<RewardResult> results = model.score_batch(first);
  const std::vector<double> external{1.5, 2, 3.5};
  const std::vector<double> accuracy{1, 0, 0};
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i].rewards.at("external"), external[i]);
    EXPECT_NEAR(results[i].reward, accuracy[i] + 0.01 * external[i], kSumTolerance);
  }
  EXPECT_EQ(model.score({"x", "B", {}, ""}).rewards.at("external"), 4);  // the same process, line 4
}

TEST(RewardExternal, BatchesLargerThanTheSocketBuffers) {
  TempDir dir;
  // Answers each line's length. 64 lines of 8 KB (512 KB) outgrow a Unix socket's buffers, so the
  // writes go out in parts while answers come back.
  const std::string script =
      write_script(dir, "length.sh", "while IFS= read -r line; do echo ${#line}; done\n");
  ExternalReward reward("sh " + script, 20);
  std::vector<RewardInput> inputs(64, RewardInput{std::string(8000, 'x'), "k", {}, ""});
  const std::vector<double> scores = reward.score_batch(inputs);
  ASSERT_EQ(scores.size(), inputs.size());
  // {"answer":"k","options":[],"problem_type":"","response":"xx…x"}: 8000 + 59 bytes.
  for (double score : scores) EXPECT_EQ(score, 8000 + 59);
}

TEST(RewardExternal, DeathGarbageAndSilenceNameTheCommand) {
  TempDir dir;
  const std::string dies = "sh " + write_script(dir, "dies.sh", "read line\necho 1\nread line\nexit 3\n");
  {
    ExternalReward reward(dies, 60);
    EXPECT_EQ(reward.score({"a", "k", {}, ""}), 1);
    const InputError e = test::expect_input_error_mentioning(
        [&] {
          reward.score({"b", "k", {}, ""});
        },
        {dies, "exited with status 3", "line 2"});
    EXPECT_EQ(e.key(), "reward.external");
    test::expect_input_error_mentioning([&] { reward.score({"c", "k", {}, ""}); }, {"exited with status 3"});
  }
  const std::string garbage =
      "sh " + write_script(dir, "garbage.sh", "while read line; do echo nope; done\n");
  {
    ExternalReward reward(garbage, 60);
    test::expect_input_error_mentioning(
        [&] {
          reward.score({"a", "k", {}, ""});
        },
        {garbage, "'nope'", "line 1"});
  }
  {
    ExternalReward reward("printf '1\\n2\\n'; cat >/dev/null", 60);  // two answers in one write
    test::expect_input_error_mentioning(
        [&] {
          reward.score({"a", "k", {}, ""});
        },
        {"more lines than it was sent"});
  }
  {
    ExternalReward reward("exec sleep 30", 0.3);
    test::expect_input_error_mentioning(
        [&] {
          reward.score({"a", "k", {}, ""});
        },
        {"exec sleep 30", "no answer within"});
  }
  {
    ExternalReward reward("no-such-program-here", 60);
    test::expect_input_error_mentioning(
        [&] {
          reward.score({"a", "k", {}, ""});
        },
        {"exited with status 127"});
  }
}

// ---- the commands, run as users run them -----------------------------------------------------------

test::ProcessResult run_lvrl_with_input(const std::vector<std::string>& args, const std::string& input) {
  test::ProcessOptions options;
  options.input = input;
  options.separate_stderr = true;
  return test::run_lvrl(args, options);
}

TEST(RewardCommands, ExtractAnswersLineByLine) {
  const std::string input =
      "{\"response\": \"Based on the video, the answer is C\", \"choices\": null}\n"
      "{\"response\": \"A cat sits on the mat\"}\n"
      "{\"response\": null, \"choices\": [\"A\", \"B\"]}\n"
      "{\"response\": \"答案是D\", \"choices\": [\"a\", \"b\", \"c\"]}\n"
      "{\"response\": \"<answer>b</answer>\", \"choices\": [\"A\", \"B\"], \"id\": 7}";  // no final newline
  const test::ProcessResult run = run_lvrl_with_input({"reward", "extract"}, input);
  ASSERT_EQ(run.exit_code, 0) << run.error_output;
  EXPECT_EQ(
      run.output,
      "{\"answer\":\"C\"}\n{\"answer\":\"\"}\n{\"answer\":\"\"}\n{\"answer\":\"\"}\n{\"answer\":\"B\"}\n");
}

TEST(RewardCommands, ExtractRefusesMalformedLinesBeforeAnyOutput) {
  const std::string input =
      "{\"response\": \"B\"}\n"
      "{not json\n"
      "{\"response\": \"B\", \"choices\": [\"AB\"]}\n"
      "{\"choices\": null}\n"
      "\n";
  const test::ProcessResult run = run_lvrl_with_input({"reward", "extract"}, input);
  EXPECT_EQ(run.exit_code, 2) << run.error_output;
  EXPECT_EQ(run.output, "");
  EXPECT_NE(run.error_output.find("<stdin>:2"), std::string::npos) << run.error_output;
  EXPECT_NE(run.error_output.find("3 more malformed lines: 3, 4, 5"), std::string::npos) << run.error_output;
}

TEST(RewardCommands, ScoreWithDefaultsAndWithAConfigFile) {
  const std::string input =
      "{\"response\": \"<think>blue</think><answer>B</answer>\", \"answer\": \"B\", \"options\": [\"A. "
      "red\", "
      "\"B. blue\"]}\n"
      "{\"response\": \"It is 0.75\", \"answer\": 0.75, \"problem_type\": \"numerical\", \"options\": null}\n"
      "{\"response\": \"<answer>Paris</answer>\", \"answer\": \"paris\"}\n";
  const test::ProcessResult run = run_lvrl_with_input({"reward", "score"}, input);
  ASSERT_EQ(run.exit_code, 0) << run.error_output;
  const std::vector<std::vector<double>> expected{{1, 1}, {1, 0}, {1, 0}};  // accuracy, format
  const std::vector<std::string> extracted{"B", "0.75", "paris"};
  std::istringstream lines(run.output);
  std::string line;
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_TRUE(std::getline(lines, line)) << run.output;
    const nlohmann::json result = nlohmann::json::parse(line);
    EXPECT_NEAR(result["reward"].get<double>(), 0.9 * expected[i][0] + 0.1 * expected[i][1], kSumTolerance)
        << line;
    EXPECT_EQ(result["rewards"]["accuracy"].get<double>(), expected[i][0]) << line;
    EXPECT_EQ(result["rewards"]["format"].get<double>(), expected[i][1]) << line;
    EXPECT_EQ(result["extracted"], extracted[i]) << line;
  }
  EXPECT_FALSE(std::getline(lines, line));

  TempDir dir;
  const std::string config = dir.file("run.yaml");
  test::write_file(config, "reward:\n  weights: [accuracy=0.5, format=0.5]\n  format: lenient\n");
  const test::ProcessResult configured =
      run_lvrl_with_input({"reward", "score", "--config", config},
                          "{\"response\": \"ok <think>x</think> <answer>A</answer>\", \"answer\": \"B\"}\n");
  ASSERT_EQ(configured.exit_code, 0) << configured.error_output;
  const nlohmann::json result = nlohmann::json::parse(configured.output);
  EXPECT_NEAR(result["reward"].get<double>(), 0.5 * 0 + 0.5 * 1, kSumTolerance);
}

TEST(RewardCommands, ScoreRefusesMalformedLinesAndUnreadableKeys) {
  const std::string input =
      "{\"response\": \"B\", \"answer\": \"B\"}\n"
      "{\"response\": \"B\"}\n"
      "{\"response\": \"B\", \"answer\": \"D\", \"options\": [\"A. x\", \"B. y\"]}\n"
      "{\"response\": 5, \"answer\": \"B\"}\n";
  const test::ProcessResult run = run_lvrl_with_input({"reward", "score"}, input);
  EXPECT_EQ(run.exit_code, 2) << run.error_output;
  EXPECT_EQ(run.output, "");
  EXPECT_NE(run.error_output.find("<stdin>:2: 'answer'"), std::string::npos) << run.error_output;
  EXPECT_NE(run.error_output.find("2 more malformed lines: 3, 4"), std::string::npos) << run.error_output;

  const test::ProcessResult bad_weights = run_lvrl_with_input(
      {"reward", "score", "reward.weights=accuracy=x"}, "{\"response\": \"B\", \"answer\": \"B\"}\n");
  EXPECT_EQ(bad_weights.exit_code, 2);
  EXPECT_NE(bad_weights.error_output.find("reward.weights"), std::string::npos) << bad_weights.error_output;
}

}  // namespace
}  // namespace lvrl::rollout
