#include "common/strings.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace mm {
namespace {

// The code point of a well-formed sequence of `length` bytes.
uint32_t DecodeUtf8(std::string_view sequence, size_t length) {
  const auto byte = [&](size_t i) {
    return static_cast<uint32_t>(static_cast<unsigned char>(sequence[i]));
  };
  switch (length) {
    case 1:
      return byte(0);
    case 2:
      return ((byte(0) & 0x1F) << 6) | (byte(1) & 0x3F);
    case 3:
      return ((byte(0) & 0x0F) << 12) | ((byte(1) & 0x3F) << 6) |
             (byte(2) & 0x3F);
    default:
      return ((byte(0) & 0x07) << 18) | ((byte(1) & 0x3F) << 12) |
             ((byte(2) & 0x3F) << 6) | (byte(3) & 0x3F);
  }
}

// Well-formed but invisible characters that a terminal may act on, or that
// break or reorder the text around them.
bool IsInvisibleLayoutCharacter(uint32_t code_point) {
  return (code_point >= 0x80 && code_point <= 0x9F) ||      // C1 controls
         code_point == 0x2028 || code_point == 0x2029 ||    // separators
         (code_point >= 0x202A && code_point <= 0x202E) ||  // bidi
         (code_point >= 0x2066 && code_point <= 0x2069);    // bidi isolates
}

// \x or \u followed by `digits` lower-case hex digits of `value`.
std::string HexEscape(char kind, uint32_t value, int digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = {'\\', kind};
  for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4) {
    out.push_back(kHex[(value >> shift) & 0xF]);
  }
  return out;
}

std::string ByteEscape(unsigned char byte) {
  switch (byte) {
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    default:
      return HexEscape('x', byte, 2);
  }
}

}  // namespace

size_t Utf8SequenceLength(std::string_view text) {
  if (text.empty()) return 0;
  const auto byte = [&](size_t i) {
    return static_cast<unsigned char>(text[i]);
  };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return 1;
  size_t length;
  // The second byte's range carries the rules against overlong forms,
  // surrogates and code points past U+10FFFF.
  unsigned char low = 0x80;
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // overlong
    if (lead == 0xED) high = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // overlong
    if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  if (byte(1) < low || byte(1) > high) return 0;
  for (size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return length;
}

bool IsValidUtf8(std::string_view text) {
  while (!text.empty()) {
    const size_t length = Utf8SequenceLength(text);
    if (length == 0) return false;
    text.remove_prefix(length);
  }
  return true;
}

std::string SafeForMessage(std::string_view text, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes) + 3);
  // Where `out` would be cut if the text turns out too long: the end of the
  // last piece that still leaves room for "...".
  size_t cut = 0;
  std::string escaped;
  while (!text.empty()) {
    const size_t length = Utf8SequenceLength(text);
    std::string_view piece;
    if (length == 0) {
      escaped = ByteEscape(static_cast<unsigned char>(text[0]));
      piece = escaped;
      text.remove_prefix(1);
    } else {
      const uint32_t code_point = DecodeUtf8(text, length);
      if (code_point < 0x20 || code_point == 0x7F) {
        escaped = ByteEscape(static_cast<unsigned char>(code_point));
        piece = escaped;
      } else if (IsInvisibleLayoutCharacter(code_point)) {
        escaped = HexEscape('u', code_point, 4);
        piece = escaped;
      } else {
        piece = text.substr(0, length);
      }
      text.remove_prefix(length);
    }
    if (out.size() + piece.size() > max_bytes) {
      out.resize(cut);
      out += "...";
      return out;
    }
    out.append(piece.data(), piece.size());
    if (out.size() + 3 <= max_bytes) cut = out.size();
  }
  return out;
}

std::optional<std::string> NormalizeSha256Hex(std::string_view text) {
  if (text.size() != kSha256HexDigits) return std::nullopt;
  std::string digest(text);
  for (char& c : digest) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return std::nullopt;
    }
    c = absl::ascii_tolower(static_cast<unsigned char>(c));
  }
  return digest;
}

std::string QuotedForMessage(std::string_view text, size_t max_bytes) {
  return absl::StrCat("'", SafeForMessage(text, max_bytes), "'");
}

}  // namespace mm
