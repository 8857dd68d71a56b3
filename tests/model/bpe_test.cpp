// Byte-level BPE on small hand-made vocabularies, where the right merges are easy to see, and the
// loader's refusals.
#include "model/bpe.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"

namespace lvrl::model {
namespace {
using nlohmann::json;

// Every byte as a token (ids 0..255 in byte order), then `extra` tokens from 256 on.
json tiny_model(const std::vector<std::string>& extra, const json& merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level_encode(std::string(1, static_cast<char>(b)))] = b;
  for (size_t i = 0; i < extra.size(); ++i) vocab[extra[i]] = 256 + static_cast<int>(i);
  return {
      {"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"vocab", vocab}, {"merges", merges}};
}

std::vector<TokenId> encode(const BpeModel& model, const std::string& piece, BpeCache* cache = nullptr) {
  std::vector<TokenId> out;
  model.encode(piece, out, cache);
  return out;
}

TEST(ByteLevel, Gpt2Table) {
  std::set<char32_t> seen;
  for (int b = 0; b < 256; ++b) {
    char32_t c = byte_to_unicode(static_cast<uint8_t>(b));
    EXPECT_TRUE(seen.insert(c).second);
    EXPECT_EQ(unicode_to_byte(c), b);
  }
  EXPECT_EQ(byte_to_unicode(' '), 0x120u);   // Ġ
  EXPECT_EQ(byte_to_unicode('\n'), 0x10Au);  // Ċ
  EXPECT_EQ(byte_to_unicode('A'), static_cast<char32_t>('A'));
  EXPECT_EQ(byte_to_unicode(0xAD), 0x143u);  // the last of the 68 remapped bytes
  EXPECT_EQ(byte_level_encode(" the"), "\xC4\xA0the");
  EXPECT_EQ(byte_level_decode("\xC4\xA0the").value(), " the");
  EXPECT_FALSE(byte_level_decode(" the").has_value());  // a raw space is not in the alphabet
}

TEST(BpeModel, LowestRankMergesFirstNotLeftmost) {
  // merges: (b,c) rank 0, (a,b) rank 1, (a,bc) rank 2. "abc" must become bc first, then abc.
  BpeModel model = BpeModel::from_json(
      tiny_model({"ab", "bc", "abc"},
                 json::array({json::array({"b", "c"}), json::array({"a", "b"}), json::array({"a", "bc"})})),
      "t");
  EXPECT_EQ(encode(model, "abc"), (std::vector<TokenId>{258}));
  EXPECT_EQ(encode(model, "abab"), (std::vector<TokenId>{256, 256}));
  EXPECT_EQ(encode(model, "cab"), (std::vector<TokenId>{'c', 256}));
  EXPECT_EQ(encode(model, "x"), (std::vector<TokenId>{'x'}));
}

TEST(BpeModel, EqualRanksMergeLeftmostFirst) {
  BpeModel model =
      BpeModel::from_json(tiny_model({"aa", "aaaa"}, json::array({"a a", "aa aa"})), "t");  // string merges
  EXPECT_EQ(encode(model, "aaa"), (std::vector<TokenId>{256, 'a'}));
  EXPECT_EQ(encode(model, "aaaaa"), (std::vector<TokenId>{257, 'a'}));
  EXPECT_EQ(encode(model, "aaaaaa"), (std::vector<TokenId>{257, 256}));
}

TEST(BpeModel, CacheGivesTheSameIdsAndStaysBounded) {
  BpeModel model = BpeModel::from_json(
      tiny_model({"ab", "bc", "abc"},
                 json::array({json::array({"b", "c"}), json::array({"a", "b"}), json::array({"a", "bc"})})),
      "t");
  BpeCache cache(4);
  for (int round = 0; round < 3; ++round) {
    for (const std::string piece : {"abc", "abab", "cab", "zz", "abcabc", "bcbc"}) {
      EXPECT_EQ(encode(model, piece, &cache), encode(model, piece)) << piece;
      EXPECT_LE(cache.size(), 4u);
    }
  }
}

TEST(BpeModel, RefusesWhatItDoesNotImplement) {
  auto refused_key = [](json model) {
    try {
      BpeModel::from_json(model, "tok.json");
    } catch (const InputError& e) {
      EXPECT_EQ(e.file(), "tok.json");
      return e.key();
    }
    return std::string("(accepted)");
  };
  json base = tiny_model({"ab"}, json::array({json::array({"a", "b"})}));
  json wordpiece = base;
  wordpiece["type"] = "WordPiece";
  EXPECT_EQ(refused_key(wordpiece), "model.type");
  json dropout = base;
  dropout["dropout"] = 0.1;
  EXPECT_EQ(refused_key(dropout), "model.dropout");
  json unk = base;
  unk["unk_token"] = "<unk>";
  EXPECT_EQ(refused_key(unk), "model.unk_token");
  json fallback = base;
  fallback["byte_fallback"] = true;
  EXPECT_EQ(refused_key(fallback), "model.byte_fallback");
  json bad_merge = base;
  bad_merge["merges"] = json::array({json::array({"a", "zz"})});
  EXPECT_EQ(refused_key(bad_merge), "model.merges[0]");
  json missing_byte = base;
  missing_byte["vocab"].erase(byte_level_encode("\x01"));
  EXPECT_EQ(refused_key(missing_byte), "model.vocab");
  json not_byte_level = base;
  not_byte_level["vocab"]["hello world"] = 300;  // a raw space: not GPT-2's alphabet
  EXPECT_EQ(refused_key(not_byte_level), "model.vocab");
}

}  // namespace
}  // namespace lvrl::model
