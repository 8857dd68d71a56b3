// The hand-compiled split regex, NFC and the UTF-8 helpers, against expectations worked out from the
// regex by hand (the corpus parity test checks the same code against the reference at scale).
#include "model/pretokenizer.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace lvrl::model {
namespace {

std::vector<std::string> pieces(const std::string& text) {
  std::vector<std::string> out;
  PieceScanner scanner(text);
  for (std::string_view piece; scanner.next(piece);) out.emplace_back(piece);
  return out;
}

using Pieces = std::vector<std::string>;

TEST(PieceScanner, WordsTakeOneLeadingSpaceOrSymbol) {
  EXPECT_EQ(pieces("Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(pieces("(hello) \"x\""), (Pieces{"(hello", ")", " \"", "x", "\""}));  // one character only
  EXPECT_EQ(pieces("a\tb"), (Pieces{"a", "\tb"}));
  EXPECT_EQ(pieces("a\xC2\xA0"
                   "b"),
            (Pieces{"a",
                    "\xC2\xA0"
                    "b"}));                             // NBSP is \s, not \r\n
  EXPECT_EQ(pieces("a\nb"), (Pieces{"a", "\n", "b"}));  // but a newline never leads a word
  EXPECT_EQ(pieces("\xE4\xBD\xA0\xE5\xA5\xBD, world"), (Pieces{"\xE4\xBD\xA0\xE5\xA5\xBD", ",", " world"}));
}

TEST(PieceScanner, DigitsArePiecesOfOne) {
  EXPECT_EQ(pieces("2024"), (Pieces{"2", "0", "2", "4"}));
  EXPECT_EQ(pieces("x1.5"), (Pieces{"x", "1", ".", "5"}));
  EXPECT_EQ(pieces(" 42"), (Pieces{" ", "4", "2"}));
  EXPECT_EQ(pieces("\xC2\xBD\xE2\x85\xA0"), (Pieces{"\xC2\xBD", "\xE2\x85\xA0"}));  // ½ (No), Ⅰ (Nl)
}

TEST(PieceScanner, ContractionsInAnyAsciiCase) {
  EXPECT_EQ(pieces("don't"), (Pieces{"don", "'t"}));
  EXPECT_EQ(pieces("I'M YOU'LL we'Re"), (Pieces{"I", "'M", " YOU", "'LL", " we", "'Re"}));
  EXPECT_EQ(pieces("'sa"), (Pieces{"'s", "a"}));  // leftmost-first: the contraction wins
  EXPECT_EQ(pieces("'x"), (Pieces{"'x"}));
  EXPECT_EQ(pieces("'l"), (Pieces{"'l"}));
  EXPECT_EQ(pieces("''s"), (Pieces{"''", "s"}));  // the symbol run at 0 swallows the second quote
  EXPECT_EQ(pieces("it\xE2\x80\x99s"), (Pieces{"it", "\xE2\x80\x99s"}));  // ’ is not '
}

TEST(PieceScanner, SymbolsTakeOneSpaceAndTrailingNewlines) {
  EXPECT_EQ(pieces("x !!"), (Pieces{"x", " !!"}));
  EXPECT_EQ(pieces("x  !!"), (Pieces{"x", " ", " !!"}));
  EXPECT_EQ(pieces("};\n\nint"), (Pieces{"};\n\n", "int"}));
  EXPECT_EQ(pieces("a->b"), (Pieces{"a", "->", "b"}));
}

TEST(PieceScanner, WhitespaceRunsFollowTheLookahead) {
  EXPECT_EQ(pieces("a  \n  b"), (Pieces{"a", "  \n", " ", " b"}));  // \s*[\r\n]+ ends at the last newline
  EXPECT_EQ(pieces("a   b"), (Pieces{"a", "  ", " b"}));            // \s+(?!\S) leaves one for the word
  EXPECT_EQ(pieces("end   "), (Pieces{"end", "   "}));              // at the end of text it takes all
  EXPECT_EQ(pieces("a \n"), (Pieces{"a", " \n"}));
  EXPECT_EQ(pieces("\r\n\r\nx"), (Pieces{"\r\n\r\n", "x"}));
  EXPECT_EQ(pieces(" \t\nx"), (Pieces{" \t\n", "x"}));
  EXPECT_EQ(pieces("a \t1"), (Pieces{"a", " ", "\t", "1"}));  // a lone \s before a digit: \s+
  EXPECT_EQ(pieces(" "), (Pieces{" "}));
  EXPECT_EQ(pieces(""), (Pieces{}));
}

TEST(PieceScanner, InvalidBytesAreSymbolsAndEveryByteIsKept) {
  EXPECT_EQ(pieces("ab\xFF\xFE"
                   "cd"),
            (Pieces{"ab", "\xFF\xFE", "cd"}));
  EXPECT_EQ(pieces("ab \xC0\x80!"), (Pieces{"ab", " \xC0\x80!"}));
  std::mt19937 rng(20240314);
  for (int round = 0; round < 2000; ++round) {
    std::string text(rng() % 40, '\0');
    for (char& c : text) c = static_cast<char>(rng() % 4 == 0 ? "a '\n\t1\xE4\xBD\xA0"[rng() % 9] : rng());
    std::string joined;
    for (const std::string& piece : pieces(text)) {
      ASSERT_FALSE(piece.empty());
      joined += piece;
    }
    ASSERT_EQ(joined, text) << "seed 20240314, round " << round;
  }
}

TEST(Nfc, ComposesAndReordersKeepingInvalidBytes) {
  EXPECT_EQ(nfc("e\xCC\x81"), "\xC3\xA9");                                 // e + U+0301 → é
  EXPECT_EQ(nfc("\xE2\x84\xAB"), "\xC3\x85");                              // Å (Angstrom sign) → Å
  EXPECT_EQ(nfc("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB"), "\xED\x95\x9C");  // jamo → 한
  EXPECT_EQ(nfc("a\xCC\x82\xCC\xA3"), "\xE1\xBA\xAD");                     // marks reordered, then ậ
  EXPECT_EQ(nfc("plain ascii"), "plain ascii");
  EXPECT_EQ(nfc(std::string("a\0b", 3)), std::string("a\0b", 3));
  EXPECT_EQ(nfc("e\xFF\xCC\x81"), "e\xFF\xCC\x81");  // the bad byte separates e from its accent
  EXPECT_EQ(nfc("\xFF"
                "e\xCC\x81\xFE"),
            "\xFF\xC3\xA9\xFE");
}

TEST(Utf8, DecodeRejectsOverlongsSurrogatesAndTruncation) {
  char32_t c;
  EXPECT_EQ(decode_utf8("\xF0\x9F\x98\x80", 0, c), 4u);
  EXPECT_EQ(c, 0x1F600u);
  for (const char* bad :
       {"\xC0\x80", "\xE0\x80\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE4\xBD", "\x80", "\xFF"}) {
    EXPECT_EQ(decode_utf8(bad, 0, c), 1u) << bad;
    EXPECT_EQ(c, kInvalidCodePoint);
  }
}

TEST(Utf8, LossyOutputReplacesMaximalSubpartsAndHoldsBackIncompleteTails) {
  auto lossy = [](const std::string& bytes, bool final, size_t* held = nullptr) {
    std::string out;
    size_t n = append_utf8_lossy(bytes, final, out);
    if (held) *held = n;
    return out;
  };
  const std::string r = "\xEF\xBF\xBD";
  size_t held = 0;
  EXPECT_EQ(lossy("ok\xE4\xBD", false, &held), "ok");
  EXPECT_EQ(held, 2u);
  EXPECT_EQ(lossy("ok\xE4\xBD", true, &held), "ok" + r);
  EXPECT_EQ(held, 0u);
  EXPECT_EQ(lossy("\xE4"
                  "A",
                  false),
            r + "A");
  EXPECT_EQ(lossy("\xED\xA0\x80", true), r + r + r);  // as Python's errors="replace"
  EXPECT_EQ(lossy("\xF0\x9F\x98", true), r);
  EXPECT_EQ(lossy("\xFF\xFE", false), r + r);
  EXPECT_EQ(lossy("\xC3\xA9\xF0\x9F\x98\x80", false), "\xC3\xA9\xF0\x9F\x98\x80");
}

TEST(CharClass, FollowsUnicodeCategoriesAndWhiteSpace) {
  EXPECT_EQ(char_class('a'), CharClass::Letter);
  EXPECT_EQ(char_class(0x4E2D), CharClass::Letter);  // 中
  EXPECT_EQ(char_class(0x0301), CharClass::Other);   // combining marks are not \p{L}
  EXPECT_EQ(char_class(0x0663), CharClass::Number);  // Arabic-Indic 3
  EXPECT_EQ(char_class(0x2167), CharClass::Number);  // Roman numeral (Nl)
  EXPECT_EQ(char_class('\n'), CharClass::Newline);
  EXPECT_EQ(char_class(0x85), CharClass::Space);    // NEL is White_Space
  EXPECT_EQ(char_class(0xFEFF), CharClass::Other);  // BOM is not
  EXPECT_EQ(char_class(0x3000), CharClass::Space);
  EXPECT_EQ(char_class(0x1D400), CharClass::Letter);  // 𝐀 outside the BMP table
  EXPECT_EQ(char_class(0x1F600), CharClass::Other);
  EXPECT_EQ(char_class(kInvalidCodePoint), CharClass::Other);
}

}  // namespace
}  // namespace lvrl::model
