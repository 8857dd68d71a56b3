// The Tokenizer on the real Qwen files: known ids, special tokens, bad UTF-8, streaming decode,
// lookups, threads; and the loader's refusals on small synthetic tokenizer.json files.
#include "model/tokenizer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "model/bpe.h"
#include "model/pretokenizer.h"
#include "tests/model/qwen_reference.h"

namespace lvrl::model {
namespace {
using testing_model::qwen_tokenizer;
using Ids = std::vector<TokenId>;

TEST(QwenTokenizer, KnownIdsFromTheSpec) {
  const Tokenizer& t = qwen_tokenizer();
  EXPECT_EQ(t.encode("Hello World"), (Ids{9707, 4337}));
  EXPECT_EQ(t.encode("<|im_start|>system\n"), (Ids{151644, 8948, 198}));
  EXPECT_EQ(t.encode("user"), (Ids{872}));
  EXPECT_EQ(t.encode("assistant"), (Ids{77091}));
  EXPECT_EQ(t.encode("123"), (Ids{16, 17, 18}));  // one digit per token
  EXPECT_EQ(t.encode(""), Ids{});
  EXPECT_EQ(t.vocab_size(), 151669u);  // Qwen3's files: 151643 BPE ids + 26 added (Qwen2.5: 22)
  EXPECT_EQ(t.eos_id(), 151645);
  EXPECT_EQ(t.pad_id(), 151643);
  EXPECT_EQ(t.id_of("<|video_pad|>"), 151656);
  EXPECT_EQ(t.id_of("<|vision_start|>"), 151652);
  EXPECT_EQ(t.id_of("<|vision_end|>"), 151653);
  EXPECT_EQ(t.id_of("<|image_pad|>"), 151655);
  EXPECT_EQ(t.id_of("\xC4\xA0the"), 279);  // vocabulary spelling "Ġthe"
  EXPECT_EQ(t.token_string(279), "\xC4\xA0the");
  EXPECT_EQ(t.token_bytes(279), " the");
  EXPECT_EQ(t.token_string(151644), "<|im_start|>");
  EXPECT_FALSE(t.find("<|no_such_token|>").has_value());
  EXPECT_THROW(t.id_of("<|no_such_token|>"), InputError);
}

TEST(QwenTokenizer, AddedTokensAreAtomicAndSpecialOnesSkippable) {
  const Tokenizer& t = qwen_tokenizer();
  Ids ids = t.encode("a<|im_end|><|im_start|>b<think>c</think>");
  EXPECT_EQ(ids, (Ids{64, 151645, 151644, 65, 151667, 66, 151668}));
  EXPECT_TRUE(t.is_special(151645));
  EXPECT_FALSE(t.is_special(151667));  // <think> is added but not special
  EXPECT_EQ(t.decode(ids), "a<|im_end|><|im_start|>b<think>c</think>");
  EXPECT_EQ(t.decode(ids, /*skip_special_tokens=*/true), "ab<think>c</think>");
  // Near misses are ordinary text.
  EXPECT_EQ(t.decode(t.encode("<|im_start")), "<|im_start");
  for (TokenId id : t.encode("<|IM_START|> <|im_start |>")) EXPECT_LT(id, 151643);
}

TEST(QwenTokenizer, InvalidUtf8IsKeptByteForByte) {
  const Tokenizer& t = qwen_tokenizer();
  const std::string text = "ab\xFF\xFE \xC0\x80 \xE4\xBD \xF0\x9F\x98 ok \xED\xA0\x80";
  Ids ids = t.encode(text);
  std::string bytes;
  for (TokenId id : ids) bytes += t.token_bytes(id);
  EXPECT_EQ(bytes, text);
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(t.decode(ids), "ab" + r + r + " " + r + r + " " + r + " " + r + " ok " + r + r + r);
}

TEST(QwenTokenizer, StreamingDecodeHoldsPartialCharacters) {
  const Tokenizer& t = qwen_tokenizer();
  const std::string text = "A rare one: \xF0\xAB\x9C\xB4 and \xE9\xBE\x98\xE9\xBE\x98 done";  // U+2B734, 龘龘
  Ids ids = t.encode(text);
  StreamDecoder stream(t);
  std::string streamed;
  bool held_some = false;
  for (TokenId id : ids) {
    std::string piece = stream.push(id);
    held_some |= stream.pending_bytes() > 0;
    // Every chunk handed out is complete UTF-8: nothing to repair.
    std::string repaired;
    append_utf8_lossy(piece, true, repaired);
    EXPECT_EQ(repaired, piece);
    streamed += piece;
  }
  streamed += stream.finish();
  EXPECT_TRUE(held_some) << "expected a character split over several byte tokens";
  EXPECT_EQ(streamed, text);

  StreamDecoder cut(t);
  std::string partial;
  for (size_t i = 0; i < ids.size(); ++i) {
    partial += cut.push(ids[i]);
    if (cut.pending_bytes() > 0) break;  // stop in the middle of a character
  }
  EXPECT_EQ(cut.finish(), "\xEF\xBF\xBD");  // the unfinished character, replaced once
}

TEST(QwenTokenizer, UnknownIdsAreInputErrors) {
  const Tokenizer& t = qwen_tokenizer();
  EXPECT_THROW(t.decode(Ids{9707, 151669}), InputError);
  EXPECT_THROW(t.decode(Ids{-1}), InputError);
  StreamDecoder stream(t);
  EXPECT_THROW(stream.push(200000), InputError);
}

TEST(QwenTokenizer, ConcurrentEncodesAgree) {
  const Tokenizer& t = qwen_tokenizer();
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) {
    texts.push_back("Document " + std::to_string(i) + ": the quick brown fox \xE4\xBD\xA0\xE5\xA5\xBD " +
                    std::string(static_cast<size_t>(i % 7), ' ') + "don't stop <|im_end|>");
  }
  std::vector<Ids> expected;
  for (const auto& text : texts) expected.push_back(t.encode(text));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      Tokenizer copy = t;  // copies share the vocabulary and the cache
      for (int round = 0; round < 5; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) mismatches[k] += copy.encode(texts[i]) != expected[i];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

// ---- the loader's refusals, on a minimal tokenizer.json --------------------------------------------

nlohmann::json minimal_tokenizer_json() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level_encode(std::string(1, static_cast<char>(b)))] = b;
  nlohmann::json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", {{{"id", 256}, {"content", "<|end|>"}, {"special", true}, {"normalized", false}}}},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", kQwenSplitPattern}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          byte_level}}}},
      {"post_processor", byte_level},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"vocab", vocab},
        {"merges", nlohmann::json::array()}}},
  };
}

std::string refused_key(const nlohmann::json& root, const std::string& config = "") {
  try {
    Tokenizer::from_json(root.dump(), config, "dir");
  } catch (const InputError& e) {
    return e.key();
  }
  return "(accepted)";
}

TEST(TokenizerLoader, AcceptsTheMinimalFileAndEncodesBytes) {
  Tokenizer t = Tokenizer::from_json(minimal_tokenizer_json().dump(), "", "dir");
  EXPECT_EQ(t.encode("hi<|end|>"), (Ids{'h', 'i', 256}));
  EXPECT_EQ(t.vocab_size(), 257u);
  EXPECT_FALSE(t.eos_id().has_value());
}

TEST(TokenizerLoader, RefusesOtherPipelinesNamingTheKey) {
  auto root = minimal_tokenizer_json();
  auto with = [&](const std::string& pointer, const nlohmann::json& value) {
    auto changed = root;
    changed[nlohmann::json::json_pointer(pointer)] = value;
    return changed;
  };
  EXPECT_EQ(refused_key(root), "(accepted)");
  EXPECT_EQ(refused_key(with("/normalizer", {{"type", "NFKC"}})), "normalizer");
  EXPECT_EQ(refused_key(with("/pre_tokenizer/pretokenizers/0/pattern/Regex", "\\s+")),
            "pre_tokenizer.pretokenizers[0]");
  EXPECT_EQ(refused_key(with("/pre_tokenizer/pretokenizers/1/use_regex", true)),
            "pre_tokenizer.pretokenizers[1]");
  EXPECT_EQ(refused_key(with("/pre_tokenizer", {{"type", "Whitespace"}})), "pre_tokenizer");
  EXPECT_EQ(refused_key(with("/decoder", {{"type", "WordPiece"}})), "decoder");
  EXPECT_EQ(refused_key(with("/post_processor", {{"type", "TemplateProcessing"}})), "post_processor");
  EXPECT_EQ(refused_key(with("/truncation", {{"max_length", 8}})), "truncation");
  EXPECT_EQ(refused_key(with("/model/type", "Unigram")), "model.type");
  EXPECT_EQ(refused_key(with("/added_tokens/0/lstrip", true)), "added_tokens[0]");
  EXPECT_EQ(refused_key(root, R"({"clean_up_tokenization_spaces": true})"), "clean_up_tokenization_spaces");
  EXPECT_EQ(refused_key(root, R"({"eos_token": "<|nope|>"})"), "eos_token");
  EXPECT_EQ(refused_key(root, R"({"added_tokens_decoder": {"256": {"content": "<|other|>"}}})"),
            "added_tokens_decoder.256");
  EXPECT_EQ(refused_key(with("/model/vocab/a", "x")), "model.vocab");
  EXPECT_EQ(refused_key(with("/normalizer", "NFC")), "");  // wrong JSON type: InputError all the same
  EXPECT_EQ(
      refused_key(with("/model/merges", nlohmann::json::array({nlohmann::json::array({"a", "b", "c"})}))),
      "model.merges[0]");
  EXPECT_EQ(refused_key(with("/model/merges", nlohmann::json::array({"ab"}))), "model.merges[0]");
  try {
    Tokenizer::from_json("{not json", "", "dir");
    ADD_FAILURE() << "accepted broken JSON";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), "dir/tokenizer.json");
  }
  EXPECT_THROW(Tokenizer::load("/nonexistent/model/dir"), InputError);
}

}  // namespace
}  // namespace lvrl::model
