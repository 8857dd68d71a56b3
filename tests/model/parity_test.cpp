// Parity with an independent implementation: every document of tests/model/corpus (English, Chinese,
// Japanese, Korean, Arabic/Hebrew/Persian, emoji and ZWJ sequences, code, numbers, whitespace runs,
// \r\n, contractions in every case, inline special tokens, text needing NFC, edge cases) must get
// exactly the ids @huggingface/tokenizers gives with the real Qwen tokenizer files, and decode back to
// the reference's text, which is NFC(x).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <set>

#include "model/pretokenizer.h"
#include "model/tokenizer.h"
#include "tests/model/qwen_reference.h"

namespace lvrl::model {
namespace {
using testing_model::corpus_with_reference;
using testing_model::printable;
using testing_model::qwen_tokenizer;

std::string show_ids(const Tokenizer& tokenizer, const std::vector<TokenId>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size() && i < 60; ++i) {
    out += fmt::format("{}{}({})", i ? " " : "", ids[i], printable(tokenizer.token_string(ids[i]), 24));
  }
  return out + (ids.size() > 60 ? " ..." : "");
}

// NFC applied between the added tokens, as the pipeline does: a combining mark right after a special
// token cannot compose with the token's last character.
std::string nfc_between_added_tokens(const Tokenizer& tokenizer, const std::string& text) {
  std::string out;
  size_t start = 0;
  for (size_t pos = 0; pos < text.size();) {
    bool matched = false;
    for (const AddedToken& token : tokenizer.added_tokens()) {
      if (text.compare(pos, token.content.size(), token.content) == 0) {
        out += nfc(text.substr(start, pos - start)) + token.content;
        pos += token.content.size();
        start = pos;
        matched = true;
        break;
      }
    }
    if (!matched) ++pos;
  }
  return out + nfc(text.substr(start));
}

TEST(TokenizerParity, IdenticalIdsToHuggingFaceTokenizersOnTheCorpus) {
  const Tokenizer& tokenizer = qwen_tokenizer();
  const auto& corpus = corpus_with_reference();
  ASSERT_GE(corpus.size(), 200u) << "the corpus must hold at least 200 documents";
  std::set<std::string> files;
  size_t identical = 0, tokens = 0;
  for (const auto& doc : corpus) {
    files.insert(doc.file);
    std::vector<TokenId> ids = tokenizer.encode(doc.text);
    tokens += ids.size();
    if (ids == doc.reference_ids) {
      ++identical;
      continue;
    }
    size_t first = 0;
    while (first < ids.size() && first < doc.reference_ids.size() && ids[first] == doc.reference_ids[first])
      ++first;
    ADD_FAILURE() << doc.file << ":" << doc.line << " \"" << printable(doc.text)
                  << "\"\n  first difference at " << first << "\n  ours:      " << show_ids(tokenizer, ids)
                  << "\n  reference: " << show_ids(tokenizer, doc.reference_ids);
  }
  EXPECT_EQ(identical, corpus.size());
  std::printf("[ parity   ] %zu/%zu documents identical (%zu tokens) over %zu corpus files\n", identical,
              corpus.size(), tokens, files.size());
}

// Thousands of short random strings over the characters where the split regex, NFC and added-token
// matching make decisions: finds scanner corner cases no hand-written document thought of.
TEST(TokenizerParity, IdenticalIdsOnGeneratedStrings) {
  const Tokenizer& tokenizer = qwen_tokenizer();
  const auto& generated = testing_model::generated_with_reference();
  ASSERT_GE(generated.size(), 1000u);
  size_t identical = 0;
  for (size_t i = 0; i < generated.size(); ++i) {
    const auto& doc = generated[i];
    std::vector<TokenId> ids = tokenizer.encode(doc.text);
    if (ids == doc.reference_ids) {
      ++identical;
    } else {
      ADD_FAILURE() << "generated string " << i << " (seed " << doc.line << ") \"" << printable(doc.text)
                    << "\"\n  ours:      " << show_ids(tokenizer, ids)
                    << "\n  reference: " << show_ids(tokenizer, doc.reference_ids);
    }
  }
  EXPECT_EQ(identical, generated.size());
  std::printf("[ parity   ] %zu/%zu generated strings identical\n", identical, generated.size());
}

TEST(TokenizerParity, DecodeGivesBackTheNfcText) {
  const Tokenizer& tokenizer = qwen_tokenizer();
  size_t whole_text_nfc = 0;
  for (const auto& doc : corpus_with_reference()) {
    std::string decoded = tokenizer.decode(tokenizer.encode(doc.text));
    EXPECT_EQ(decoded, doc.reference_decoded)
        << doc.file << ":" << doc.line << " \"" << printable(doc.text) << "\"";
    EXPECT_EQ(decoded, nfc_between_added_tokens(tokenizer, doc.text)) << doc.file << ":" << doc.line;
    if (decoded == nfc(doc.text)) {
      ++whole_text_nfc;
    } else {
      // Only where NFC of the whole text composes across an added token: "<|im_end|>\u0338" is
      // "<|im_end|≯" in NFC, but the reference cuts the token out first, as we do.
      EXPECT_NE(nfc(doc.text).find("\xE2\x89\xAF"), std::string::npos)
          << doc.file << ":" << doc.line << " decode(encode(x)) != NFC(x) for \"" << printable(doc.text)
          << "\"";
    }
  }
  EXPECT_GE(whole_text_nfc + 1, corpus_with_reference().size());
}

TEST(TokenizerParity, StreamingDecodeMatchesDecodeOnTheCorpus) {
  const Tokenizer& tokenizer = qwen_tokenizer();
  for (const auto& doc : corpus_with_reference()) {
    for (bool skip : {false, true}) {
      StreamDecoder stream(tokenizer, skip);
      std::string text;
      for (TokenId id : doc.reference_ids) text += stream.push(id);
      text += stream.finish();
      EXPECT_EQ(text, tokenizer.decode(doc.reference_ids, skip)) << doc.file << ":" << doc.line;
    }
  }
}

}  // namespace
}  // namespace lvrl::model
