// `lvrl tokenize`: the tokenizer from the shell, for checking prompts and for other tools.
//
// Documents on stdin are separated by a line holding only the ASCII record separator \x1e: the
// document before it ends where that line starts, minus the newline closing its own last line (so
// "a\n\x1e\nb" is the two documents "a" and "b"; write "a\n\n\x1e\n" for "a\n"). A separator at the
// very end of the input closes the last document instead of opening an empty one; everything else is
// taken byte for byte. --decode prints texts in the same layout, so encode | decode round-trips
// (up to NFC).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "core/command.h"
#include "core/error.h"
#include "model/tokenizer.h"

namespace lvrl::model {
namespace {

std::vector<std::string_view> split_documents(std::string_view input) {
  std::vector<std::string_view> documents;
  if (input.empty()) return documents;
  size_t start = 0;
  for (size_t line = 0; line <= input.size();) {
    size_t eol = input.find('\n', line);
    size_t line_end = eol == std::string_view::npos ? input.size() : eol;
    if (line_end - line == 1 && input[line] == '\x1e') {
      size_t doc_end = line > start ? line - 1 : start;  // drop the newline ending the document
      documents.push_back(input.substr(start, doc_end - start));
      start = eol == std::string_view::npos ? input.size() : eol + 1;
      if (start == input.size()) return documents;  // a closing separator
    }
    if (eol == std::string_view::npos) break;
    line = eol + 1;
  }
  documents.push_back(input.substr(start));
  return documents;
}

std::string read_stdin() {
  std::ios::sync_with_stdio(false);
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

int encode_documents(const Tokenizer& tokenizer) {
  std::string input = read_stdin();
  std::string out;
  for (std::string_view document : split_documents(input)) {
    out += '[';
    bool first = true;
    for (TokenId id : tokenizer.encode(document)) {
      if (!first) out += ',';
      out += std::to_string(id);
      first = false;
    }
    out += "]\n";
  }
  std::cout << out << std::flush;
  return 0;
}

// One array of ids per non-blank line, with its line number; checked before the tokenizer loads.
std::vector<std::pair<int, std::vector<TokenId>>> read_id_arrays() {
  std::string input = read_stdin();
  std::istringstream lines(input);
  std::vector<std::pair<int, std::vector<TokenId>>> arrays;
  int line_number = 0;
  for (std::string line; std::getline(lines, line);) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::vector<TokenId> ids;
    const nlohmann::json array = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool integers =
        array.is_array() && std::all_of(array.begin(), array.end(),
                                        [](const nlohmann::json& id) { return id.is_number_integer(); });
    if (!integers) {
      throw InputError({"<stdin>", line_number, "", line.substr(0, 80)},
                       "expected a JSON array of token ids, e.g. [9707,11,1879]");
    }
    for (const auto& id : array) ids.push_back(id.get<TokenId>());
    arrays.emplace_back(line_number, std::move(ids));
  }
  return arrays;
}

int decode_documents(const std::vector<std::pair<int, std::vector<TokenId>>>& arrays,
                     const Tokenizer& tokenizer, bool skip_special_tokens) {
  std::string out;
  for (size_t i = 0; i < arrays.size(); ++i) {
    if (i > 0) out += "\n\x1e\n";
    try {
      out += tokenizer.decode(arrays[i].second, skip_special_tokens);
    } catch (const InputError& e) {
      throw InputError({"<stdin>", arrays[i].first, e.key(), e.value()}, e.problem());
    }
  }
  std::cout << out << std::flush;
  return 0;
}

struct TokenizeArgs {
  std::string dir;
  bool decode = false;
  bool skip_special = false;
};

const RegisterCommand tokenize_command(
    "tokenize", "Encode stdin documents to token ids (JSON arrays), or --decode ids back to text",
    [](CLI::App& app) {
      auto args = std::make_shared<TokenizeArgs>();
      app.add_option("--tokenizer", args->dir,
                     "model directory holding tokenizer.json (+ tokenizer_config.json)")
          ->required();
      app.add_flag(
          "--decode", args->decode,
          "read one JSON array of ids per line; print the texts, separated by lines holding only \\x1e");
      app.add_flag("--skip-special", args->skip_special, "with --decode: leave special tokens out")
          ->needs(app.get_option("--decode"));
      app.footer(
          "Encoding reads UTF-8 documents separated by a line holding only \\x1e (ASCII 30) and prints one "
          "JSON array of ids per document and line.");
      return [args] {
        if (!args->decode) return encode_documents(Tokenizer::load(args->dir));
        auto arrays = read_id_arrays();
        return decode_documents(arrays, Tokenizer::load(args->dir), args->skip_special);
      };
    });

}  // namespace
}  // namespace lvrl::model
