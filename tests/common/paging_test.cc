// The one paging policy (common/paging.h) and the one id source
// (common/ids.h) that every service uses.
#include "common/paging.h"

#include <set>
#include <string>

#include "common/ids.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace mm {
namespace {

using ::mm::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

TEST(PagingTest, PageSizeDefaultsCapsAndRejectsNegative) {
  ASSERT_OK_AND_ASSIGN(int size, EffectivePageSize(0));
  EXPECT_EQ(size, 100);
  ASSERT_OK_AND_ASSIGN(size, EffectivePageSize(1));
  EXPECT_EQ(size, 1);
  ASSERT_OK_AND_ASSIGN(size, EffectivePageSize(kMaxPageSize));
  EXPECT_EQ(size, 1000);
  // Above the maximum: lowered, not refused (AIP-158).
  ASSERT_OK_AND_ASSIGN(size, EffectivePageSize(kMaxPageSize + 1));
  EXPECT_EQ(size, kMaxPageSize);
  ASSERT_OK_AND_ASSIGN(size, EffectivePageSize(2'000'000'000));
  EXPECT_EQ(size, kMaxPageSize);
  EXPECT_THAT(EffectivePageSize(-1),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("page_size must not be negative")));
}

TEST(PagingTest, TokenRoundTripsItsPosition) {
  std::string token = EncodePageToken("states=queued", 42);
  EXPECT_THAT(token, MatchesRegex("[A-Za-z0-9_=-]+"));
  ASSERT_OK_AND_ASSIGN(nlohmann::json after,
                       DecodePageToken(token, "states=queued"));
  EXPECT_EQ(after, 42);
  nlohmann::json values = {"main", "sd-1", "key"};
  ASSERT_OK_AND_ASSIGN(after,
                       DecodePageToken(EncodePageToken("q", values), "q"));
  EXPECT_EQ(after, values);
}

TEST(PagingTest, EmptyTokenIsTheFirstPage) {
  ASSERT_OK_AND_ASSIGN(nlohmann::json after, DecodePageToken("", "anything"));
  EXPECT_TRUE(after.is_null());
}

TEST(PagingTest, TokenIsBoundToItsQuery) {
  std::string token = EncodePageToken("states=queued", 42);
  EXPECT_THAT(DecodePageToken(token, "states="),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("issued for other filters")));
}

TEST(PagingTest, MalformedTokensAreInvalidArgument) {
  for (std::string token :
       {"not a token!", "42", "e30" /* {} */, "bnVsbA" /* null */,
        "eyJxIjoxLCJhZnRlciI6MX0" /* {"q":1,"after":1} */}) {
    EXPECT_THAT(DecodePageToken(token, "q"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("page_token is malformed")))
        << token;
  }
}

TEST(ResourceIdTest, ThirtyTwoHexDigitsNeverRepeated) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewResourceId();
    EXPECT_THAT(id, MatchesRegex("[0-9a-f]{32}"));
    EXPECT_TRUE(seen.insert(id).second) << "repeated id " << id;
  }
}

}  // namespace
}  // namespace mm
