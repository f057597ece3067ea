#include "common/strings.h"

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/message_checks.h"

namespace mm {
namespace {

using ::mm::testing::IsPrintableUtf8;
using ::mm::testing::IsWellFormedUtf8;
using ::testing::EndsWith;

constexpr size_t kNoLimit = 1 << 20;

std::string Escaped(std::string_view text) {
  return SafeForMessage(text, kNoLimit);
}

// Characters the helper escapes although they are well-formed.
bool IsEscapedCodePoint(uint32_t c) {
  return c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0x9F) || c == 0x2028 ||
         c == 0x2029 || (c >= 0x202A && c <= 0x202E) ||
         (c >= 0x2066 && c <= 0x2069);
}

// Whether well-formed `text` (per the independent validator) has only
// characters the helper keeps.
bool IsPrintableText(std::string_view text) {
  if (!IsWellFormedUtf8(text)) return false;
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const size_t length = lead < 0x80   ? 1
                          : lead < 0xE0 ? 2
                          : lead < 0xF0 ? 3
                                        : 4;
    uint32_t c = length == 1 ? lead : lead & (0x7F >> length);
    for (size_t k = 1; k < length; ++k) c = (c << 6) | (text[i + k] & 0x3F);
    if (IsEscapedCodePoint(c)) return false;
    i += length;
  }
  return true;
}

std::string Utf8(uint32_t c) {
  std::string out;
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
  return out;
}

TEST(SafeForMessageTest, PrintableUtf8PassesThroughUnchanged) {
  for (std::string_view text :
       {std::string_view(""), std::string_view("model.safetensors"),
        std::string_view(R"(C:\models\x 'quoted' "double" {json: [1]})"),
        std::string_view(
            "caf\xC3\xA9 \xE6\xA8\xA1\xE5\x9E\x8B \xF0\x9F\xA4\x97"),
        std::string_view("\\xff is text here, not a byte")}) {
    EXPECT_EQ(Escaped(text), text);
  }
  // Every printable code point at the edges of the encoding's ranges.
  for (uint32_t c :
       {0x20u, 0x7Eu, 0xA0u, 0x7FFu, 0x800u, 0xD7FFu, 0xE000u, 0xFFFDu, 0xFFFFu,
        0x10000u, 0x10FFFFu, 0x2027u, 0x202Fu, 0x2065u, 0x206Au}) {
    EXPECT_EQ(Escaped(Utf8(c)), Utf8(c)) << std::hex << c;
  }
}

TEST(SafeForMessageTest, EveryCodePointOutsideTheEscapedSetIsKept) {
  for (uint32_t c = 0; c <= 0x10FFFF; ++c) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    const std::string text = Utf8(c);
    const std::string shown = Escaped(text);
    if (IsEscapedCodePoint(c)) {
      ASSERT_NE(shown, text) << std::hex << c;
      ASSERT_TRUE(IsPrintableUtf8(shown)) << std::hex << c;
    } else {
      ASSERT_EQ(shown, text) << std::hex << c;
    }
  }
}

TEST(SafeForMessageTest, ControlCharactersAreEscaped) {
  EXPECT_EQ(Escaped("a\nb\rc\td"), R"(a\nb\rc\td)");
  EXPECT_EQ(Escaped(std::string_view("\0\x01\x1b[31m\x7f", 8)),
            R"(\x00\x01\x1b[31m\x7f)");
  EXPECT_EQ(Escaped("\xC2\x85\xC2\x9B"), R"(\u0085\u009b)");  // C1: NEL, CSI
  EXPECT_EQ(Escaped("abc\xE2\x80\xAE"
                    "cba"),
            R"(abc\u202ecba)");  // RLO
  EXPECT_EQ(Escaped("\xE2\x80\xA8\xE2\x81\xA6"), R"(\u2028\u2066)");
}

TEST(SafeForMessageTest, EachByteOfAnInvalidSequenceIsEscaped) {
  struct Case {
    std::string_view input;
    std::string_view shown;
  };
  const Case cases[] = {
      {"\xFF", R"(\xff)"},
      {"\xFE\xFF", R"(\xfe\xff)"},
      {"last read: '\xFF'", R"(last read: '\xff')"},
      {"\x80", R"(\x80)"},  // lone continuation byte
      {"\xBF\xBF", R"(\xbf\xbf)"},
      {"a\xC3", R"(a\xc3)"},                // truncated at the end
      {"\xC3(", R"(\xc3()"},                // lead, then no continuation
      {"\xE2\x82x", R"(\xe2\x82x)"},        // three-byte form cut short
      {"\xC0\xAF", R"(\xc0\xaf)"},          // overlong '/'
      {"\xC1\xBF", R"(\xc1\xbf)"},          // overlong
      {"\xE0\x80\xAF", R"(\xe0\x80\xaf)"},  // overlong '/'
      {"\xE0\x9F\xBF", R"(\xe0\x9f\xbf)"},  // overlong U+07FF
      {"\xF0\x80\x80\xAF", R"(\xf0\x80\x80\xaf)"},  // overlong '/'
      {"\xF0\x8F\xBF\xBF", R"(\xf0\x8f\xbf\xbf)"},  // overlong U+FFFF
      {"\xED\xA0\x80", R"(\xed\xa0\x80)"},          // surrogate U+D800
      {"\xED\xBF\xBF", R"(\xed\xbf\xbf)"},          // surrogate U+DFFF
      {"\xF4\x90\x80\x80", R"(\xf4\x90\x80\x80)"},  // U+110000
      {"\xF5\x80\x80\x80", R"(\xf5\x80\x80\x80)"},
      {"\xF8\x88\x80\x80\x80", R"(\xf8\x88\x80\x80\x80)"},  // old 5-byte form
      {"ok\xC3\xA9\xFFok", "ok\xC3\xA9\\xffok"},            // good around bad
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Escaped(c.input), c.shown) << c.shown;
  }
}

// Every one- and two-byte input, and every three-byte input with a
// non-ASCII lead: printable UTF-8 out, and unchanged whenever the input was
// printable UTF-8 already (checked by the independent validator).
TEST(SafeForMessageTest, ShortInputsExhaustively) {
  const auto check = [](const std::string& input) {
    const std::string shown = Escaped(input);
    if (!IsPrintableUtf8(shown)) return false;
    return !IsPrintableText(input) || shown == input;
  };
  std::string input;
  for (int a = 0; a < 256; ++a) {
    input.assign(1, static_cast<char>(a));
    ASSERT_TRUE(check(input)) << a;
    for (int b = 0; b < 256; ++b) {
      input.assign({static_cast<char>(a), static_cast<char>(b)});
      ASSERT_TRUE(check(input)) << a << " " << b;
    }
  }
  for (int a = 0x80; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      for (int c = 0; c < 256; ++c) {
        input.assign(
            {static_cast<char>(a), static_cast<char>(b), static_cast<char>(c)});
        ASSERT_TRUE(check(input)) << a << " " << b << " " << c;
      }
    }
  }
}

TEST(SafeForMessageTest, RandomBytesComeOutPrintable) {
  std::mt19937 random(20250611);
  // Biased towards the bytes that matter: leads, continuations, controls.
  const unsigned char kInteresting[] = {0x00, 0x0A, 0x1B, 0x7F, 0x80, 0xBF,
                                        0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xEF,
                                        0xF0, 0xF4, 0xF5, 0xFF, 'a',  '\\'};
  for (int trial = 0; trial < 20000; ++trial) {
    std::string input(random() % 40, '\0');
    for (char& c : input) {
      c = static_cast<char>(random() % 2 == 0
                                ? kInteresting[random() % sizeof(kInteresting)]
                                : random() % 256);
    }
    const std::string shown = Escaped(input);
    ASSERT_TRUE(IsPrintableUtf8(shown)) << shown;
  }
}

TEST(SafeForMessageTest, LongTextIsCutAtACharacterBoundary) {
  EXPECT_EQ(SafeForMessage(std::string(500, 'a'), 10), "aaaaaaa...");
  EXPECT_EQ(SafeForMessage(std::string(10, 'a'), 10), std::string(10, 'a'));
  EXPECT_EQ(SafeForMessage(std::string(11, 'a'), 10), "aaaaaaa...");
  // "é" is two bytes: 7 bytes of room hold three of them.
  std::string accents;
  for (int i = 0; i < 100; ++i) accents += "\xC3\xA9";
  EXPECT_EQ(SafeForMessage(accents, 10), "\xC3\xA9\xC3\xA9\xC3\xA9...");
  // An escape is never split.
  EXPECT_EQ(SafeForMessage(std::string(100, '\xFF'), 10), R"(\xff...)");
  EXPECT_EQ(SafeForMessage("abcdef", 2), "...");
  EXPECT_EQ(SafeForMessage("ab", 2), "ab");
  // The default bound keeps messages to a few hundred bytes.
  EXPECT_LE(SafeForMessage(std::string(100000, '\x01')).size(),
            kMaxMessageTextBytes);
}

// A cut result is "..." after the escaping of some prefix of the input, and
// never longer than the bound.
TEST(SafeForMessageTest, CutResultsAreEscapedPrefixes) {
  std::mt19937 random(7);
  const char kPieces[][5] = {
      "a",  "\xC3\xA9", "\xE6\xA8\xA1", "\xF0\x9F\xA4\x97",
      "\n", "\xFF",     "\xC2\x85",     "\\"};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string input;
    const int pieces = static_cast<int>(random() % 30);
    for (int i = 0; i < pieces; ++i) input += kPieces[random() % 8];
    const size_t max_bytes = random() % 40;
    const std::string shown = SafeForMessage(input, max_bytes);
    ASSERT_LE(shown.size(), std::max<size_t>(max_bytes, 3));
    ASSERT_TRUE(IsPrintableUtf8(shown));
    if (shown == Escaped(input)) continue;
    ASSERT_THAT(shown, EndsWith("..."));
    const std::string kept = shown.substr(0, shown.size() - 3);
    bool is_prefix = false;
    for (size_t k = 0; k <= input.size() && !is_prefix; ++k) {
      is_prefix = Escaped(std::string_view(input).substr(0, k)) == kept;
    }
    ASSERT_TRUE(is_prefix) << "input " << Escaped(input) << " shown " << shown;
  }
}

TEST(QuotedForMessageTest, QuotesTheSafeText) {
  EXPECT_EQ(QuotedForMessage("x.bin"), "'x.bin'");
  EXPECT_EQ(QuotedForMessage("a\xFF\n"), R"('a\xff\n')");
  EXPECT_EQ(QuotedForMessage(std::string(20, 'a'), 10), "'aaaaaaa...'");
}

TEST(Utf8Test, ValidatorAgreesWithAnIndependentOne) {
  std::string input;
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      for (int c : {0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0}) {
        for (int d : {0x41, 0x80, 0xBF, 0xC0}) {
          input.assign({static_cast<char>(a), static_cast<char>(b),
                        static_cast<char>(c), static_cast<char>(d)});
          ASSERT_EQ(IsValidUtf8(input), IsWellFormedUtf8(input))
              << a << " " << b << " " << c << " " << d;
        }
      }
    }
  }
  EXPECT_EQ(Utf8SequenceLength(""), 0u);
  EXPECT_EQ(Utf8SequenceLength("a"), 1u);
  EXPECT_EQ(Utf8SequenceLength("\xC3\xA9x"), 2u);
  EXPECT_EQ(Utf8SequenceLength("\xF0\x9F\xA4\x97"), 4u);
  EXPECT_EQ(Utf8SequenceLength("\xF0\x9F\xA4"), 0u);
  EXPECT_EQ(Utf8SequenceLength("\xED\xA0\x80"), 0u);
}

TEST(NormalizeSha256HexTest, LowercasesSixtyFourHexDigits) {
  const std::string lower(
      "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
  EXPECT_EQ(NormalizeSha256Hex(lower), lower);
  EXPECT_EQ(
      NormalizeSha256Hex(
          "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"),
      lower);
  EXPECT_EQ(NormalizeSha256Hex(std::string(64, 'F')), std::string(64, 'f'));
}

TEST(NormalizeSha256HexTest, RefusesAnythingElse) {
  const std::string digest(64, 'a');
  for (const std::string& bad :
       {std::string(), std::string(63, 'a'), std::string(65, 'a'),
        std::string(63, 'a') + "g", " " + std::string(63, 'a'),
        std::string(63, 'a') + "\n", "sha256:" + digest,
        "0x" + std::string(62, 'a'), std::string(63, 'a') + '\0',
        std::string(63, 'a') + "\xC3"}) {
    EXPECT_EQ(NormalizeSha256Hex(bad), std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace mm
