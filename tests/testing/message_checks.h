// Checks that an error message is fit to show: well-formed UTF-8 with no
// control characters. Written apart from common/strings.cc (it decodes code
// points and checks their ranges, where the library checks byte ranges) so
// that tests of the library's escaping do not trust its own validator.
//
//   EXPECT_TRUE(IsPrintableUtf8(status.message()));
#ifndef MM_TESTS_TESTING_MESSAGE_CHECKS_H_
#define MM_TESTS_TESTING_MESSAGE_CHECKS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "gtest/gtest.h"

namespace mm::testing {

// Whether `text` is well-formed UTF-8 (RFC 3629). `bad_offset` gets the
// offset of the first byte that is not.
inline bool IsWellFormedUtf8(std::string_view text,
                             size_t* bad_offset = nullptr) {
  size_t i = 0;
  const auto fail = [&] {
    if (bad_offset != nullptr) *bad_offset = i;
    return false;
  };
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    int continuation;
    uint32_t code_point;
    uint32_t smallest;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      continuation = 1;
      code_point = lead & 0x1F;
      smallest = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      continuation = 2;
      code_point = lead & 0x0F;
      smallest = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      continuation = 3;
      code_point = lead & 0x07;
      smallest = 0x10000;
    } else {
      return fail();
    }
    if (text.size() - i <= static_cast<size_t>(continuation)) return fail();
    for (int k = 1; k <= continuation; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return fail();
      code_point = (code_point << 6) | (next & 0x3F);
    }
    if (code_point < smallest || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return fail();
    }
    i += continuation + 1;
  }
  return true;
}

// Well-formed UTF-8 without C0 control characters or DEL: what every
// message built from file or remote content must be.
inline ::testing::AssertionResult IsPrintableUtf8(std::string_view text) {
  size_t bad = 0;
  if (!IsWellFormedUtf8(text, &bad)) {
    return ::testing::AssertionFailure()
           << "not UTF-8 at byte " << bad << " of a " << text.size()
           << "-byte message";
  }
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7F) {
      return ::testing::AssertionFailure()
             << "control byte " << static_cast<int>(c) << " at byte " << i;
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace mm::testing

#endif  // MM_TESTS_TESTING_MESSAGE_CHECKS_H_
