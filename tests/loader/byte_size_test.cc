#include "services/loader/byte_size.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace mm::loader {
namespace {

using ::mm::testing::StatusIs;

TEST(ParseByteSizeTest, UnitsAreBinaryUnlessWrittenDecimal) {
  EXPECT_EQ(*ParseByteSize("1048576"), 1048576u);
  EXPECT_EQ(*ParseByteSize("512K"), 512u << 10);
  EXPECT_EQ(*ParseByteSize("64MiB"), 64u << 20);
  EXPECT_EQ(*ParseByteSize("8gib"), 8ull << 30);
  EXPECT_EQ(*ParseByteSize("2GB"), 2'000'000'000u);
  EXPECT_EQ(*ParseByteSize("1T"), 1ull << 40);
}

TEST(ParseByteSizeTest, RefusesOtherText) {
  for (const char* text :
       {"", "G", "1.5G", "-1", "10 apples", "99999999999T"}) {
    EXPECT_THAT(ParseByteSize(text),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         absl::StrCat("'", text,
                                      "' is not a byte size: write a number "
                                      "of bytes with an optional unit, e.g. "
                                      "8GiB, 512M, 1000000")));
  }
}

TEST(DefaultRamBudgetTest, HalfMinusTwoGibBetweenFourAndThirtyTwo) {
  constexpr uint64_t kGiB = 1ull << 30;
  EXPECT_EQ(DefaultRamBudget(4 * kGiB), 4 * kGiB);
  EXPECT_EQ(DefaultRamBudget(16 * kGiB), 6 * kGiB);
  EXPECT_EQ(DefaultRamBudget(128 * kGiB), 32 * kGiB);
}

}  // namespace
}  // namespace mm::loader
