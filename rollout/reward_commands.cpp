// `lvrl reward extract` and `lvrl reward score`: the extractor and the reward model from the shell, on
// JSON lines (docs/rollout.md, "Rewards").
//
// Output lines pair with input lines by position, so a malformed input line never yields a partial
// or shifted output: every line is read and checked first, and if any is bad nothing is written to
// stdout, the error names the first bad line (and counts the others), and the exit status is 2.
// Unknown fields are ignored (dataset rows carry more than these).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "core/command.h"
#include "core/config.h"
#include "core/error.h"
#include "rollout/answer_extraction.h"
#include "rollout/reward.h"
#include "rollout/reward_accuracy.h"

namespace lvrl::rollout {
namespace {
using nlohmann::json;

struct BadLine {
  int line = 0;
  std::string key, value, problem;
};

struct InputLine {
  int line = 0;
  json object;
};

// Every line of stdin as a JSON object (a trailing '\r' is dropped; a last line without '\n' counts).
// Lines that are no JSON object go to `bad`.
std::vector<InputLine> read_json_lines(std::vector<BadLine>& bad) {
  std::ios::sync_with_stdio(false);
  const std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  std::vector<InputLine> lines;
  std::istringstream in(input);
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    json object = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!object.is_object()) {
      bad.push_back({number, "", line.substr(0, 80), "expected one JSON object per line"});
      continue;
    }
    lines.push_back({number, std::move(object)});
  }
  return lines;
}

[[noreturn]] void fail_bad_lines(const std::vector<BadLine>& bad) {
  const BadLine& first = bad.front();
  std::string problem = first.problem;
  if (bad.size() > 1) {
    std::string others;
    for (size_t i = 1; i < bad.size() && i <= 10; ++i)
      others += fmt::format("{}{}", i > 1 ? ", " : "", bad[i].line);
    problem += fmt::format(" (and {} more malformed line{}: {}{})", bad.size() - 1, bad.size() > 2 ? "s" : "",
                           others, bad.size() > 11 ? ", …" : "");
  }
  throw InputError({"<stdin>", first.line, first.key, first.value}, problem + "; nothing was written");
}

// A string field: `null_ok` lets null (and absence) read as "".
std::optional<std::string> string_field(const json& object, const char* key, bool required, bool numbers_ok,
                                        int line, std::vector<BadLine>& bad) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    if (!required) return std::string();
    bad.push_back({line, key, "", it == object.end() ? "missing" : "null; expected a string"});
    return std::nullopt;
  }
  if (it->is_string()) return it->get<std::string>();
  if (numbers_ok && it->is_number()) return it->dump();
  bad.push_back({line, key, it->dump().substr(0, 80),
                 numbers_ok ? "expected a string or a number" : "expected a string"});
  return std::nullopt;
}

std::optional<std::vector<std::string>> string_list_field(const json& object, const char* key, int line,
                                                          std::vector<BadLine>& bad) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::vector<std::string>{};
  bool strings = it->is_array();
  for (const json& item : strings ? *it : json::array()) strings = strings && item.is_string();
  if (!strings) {
    bad.push_back({line, key, it->dump().substr(0, 80), "expected a list of strings or null"});
    return std::nullopt;
  }
  return it->get<std::vector<std::string>>();
}

std::string dump_line(const nlohmann::ordered_json& object) {
  return object.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

int extract_lines() {
  std::vector<BadLine> bad;
  std::vector<InputLine> lines = read_json_lines(bad);
  std::vector<std::pair<std::string, std::vector<char>>> requests;
  for (const InputLine& line : lines) {
    if (line.object.find("response") == line.object.end()) {
      bad.push_back({line.line, "response", "", "missing (null for no reply)"});
      continue;
    }
    const std::optional<std::string> response =
        string_field(line.object, "response", false, false, line.line, bad);
    const std::optional<std::vector<std::string>> choices =
        string_list_field(line.object, "choices", line.line, bad);
    if (!response || !choices) continue;
    std::vector<char> letters;
    for (const std::string& choice : *choices) {
      if (choice.size() != 1 || !std::isalpha(static_cast<unsigned char>(choice[0]))) {
        bad.push_back({line.line, "choices", choice, "each choice is one letter, A-Z"});
        break;
      }
      letters.push_back(choice[0]);
    }
    requests.emplace_back(*response, std::move(letters));
  }
  if (!bad.empty()) {
    std::sort(bad.begin(), bad.end(), [](const BadLine& a, const BadLine& b) { return a.line < b.line; });
    fail_bad_lines(bad);
  }
  std::string out;
  for (const auto& [response, letters] : requests) {
    out += dump_line({{"answer", extract_choice(response, letters)}});
  }
  std::cout << out << std::flush;
  return 0;
}

struct ScoreArgs {
  std::string config_path;
  std::vector<std::string> overrides;
};

int score_lines(const ScoreArgs& args) {
  const Config config = Config::load(args.config_path, args.overrides);
  std::vector<BadLine> bad;
  std::vector<InputLine> lines = read_json_lines(bad);
  std::vector<RewardInput> inputs;
  for (const InputLine& line : lines) {
    const auto response = string_field(line.object, "response", false, false, line.line, bad);
    const auto answer = string_field(line.object, "answer", true, true, line.line, bad);
    const auto options = string_list_field(line.object, "options", line.line, bad);
    const auto problem_type = string_field(line.object, "problem_type", false, false, line.line, bad);
    if (!response || !answer || !options || !problem_type) continue;
    RewardInput input{*response, *answer, *options, *problem_type};
    try {
      check_answer_key(input);
    } catch (const InputError& e) {
      bad.push_back({line.line, e.key(), e.value().substr(0, 80), e.problem()});
      continue;
    }
    inputs.push_back(std::move(input));
  }
  if (!bad.empty()) {
    std::sort(bad.begin(), bad.end(), [](const BadLine& a, const BadLine& b) { return a.line < b.line; });
    fail_bad_lines(bad);
  }
  RewardModel model = RewardModel::from_config(config);
  std::string out;
  for (const RewardResult& result : model.score_batch(inputs)) {
    nlohmann::ordered_json rewards = nlohmann::ordered_json::object();
    for (const RewardModel::Component& component : model.components()) {
      rewards[component.name] = result.rewards.at(component.name);
    }
    out += dump_line({{"reward", result.reward}, {"rewards", rewards}, {"extracted", result.extracted}});
  }
  std::cout << out << std::flush;
  return 0;
}

const RegisterCommand extract_command(
    "reward extract",
    "Read the chosen option letter out of replies: JSON lines in, one {\"answer\"} per line out",
    [](CLI::App& app) {
      app.footer(
          "stdin: one JSON object per line, {\"response\": string or null, \"choices\": [letters] or null} "
          "(null choices = A-H). stdout: {\"answer\": \"B\"} per line, in order; \"\" when the reply gives "
          "no "
          "single offered letter. A malformed line stops the run before any output (exit 2, naming the "
          "line).");
      return [] { return extract_lines(); };
    });

const RegisterCommand score_command(
    "reward score", "Score replies with the configured rewards: JSON lines in, one result per line out",
    [](CLI::App& app) {
      auto args = std::make_shared<ScoreArgs>();
      app.add_option("--config", args->config_path, "YAML config file (its reward section)")
          ->check(CLI::ExistingFile);
      app.add_option("overrides", args->overrides, "a.b.c=value overrides, e.g. reward.format=lenient");
      app.footer(
          "stdin: one JSON object per line, {\"response\", \"answer\", \"options\"?, \"problem_type\"?}. "
          "stdout: "
          "{\"reward\", \"rewards\": {component: score}, \"extracted\"} per line, in order. A malformed line "
          "(or an unreadable key) stops the run before any output (exit 2, naming the line).");
      return [args] { return score_lines(*args); };
    });

}  // namespace
}  // namespace lvrl::rollout
