// gMock matchers for absl::Status and absl::StatusOr<T>:
//
//   EXPECT_THAT(store.Get("nope"), StatusIs(absl::StatusCode::kNotFound,
//                                           HasSubstr("nope")));
//   EXPECT_OK(store.Delete(key));
//   ASSERT_OK_AND_ASSIGN(auto record, store.Get(key));
#ifndef MM_TESTS_TESTING_STATUS_MATCHERS_H_
#define MM_TESTS_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mm::testing {

inline const absl::Status& GetStatus(const absl::Status& status) {
  return status;
}
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

// A StatusOr that is OK and whose value matches `matcher`; prints the status
// when it is not OK.
MATCHER_P(IsOkAndHolds, matcher, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "whose status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(matcher, *arg, result_listener);
}

MATCHER_P2(StatusIs, code, message_matcher,
           std::string("has status code ") +
               absl::StatusCodeToString(static_cast<absl::StatusCode>(code))) {
  const absl::Status& status = ::mm::testing::GetStatus(arg);
  if (status.code() != code) {
    *result_listener << "whose status is " << status;
    return false;
  }
  return ::testing::ExplainMatchResult(
      ::testing::MatcherCast<const std::string&>(message_matcher),
      std::string(status.message()), result_listener);
}

MATCHER_P(StatusIs, code,
          std::string("has status code ") +
              absl::StatusCodeToString(static_cast<absl::StatusCode>(code))) {
  const absl::Status& status = ::mm::testing::GetStatus(arg);
  if (status.code() != code) {
    *result_listener << "whose status is " << status;
    return false;
  }
  return true;
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = ::mm::testing::GetStatus(arg);
  if (!status.ok()) *result_listener << "whose status is " << status;
  return status.ok();
}

}  // namespace mm::testing

#define EXPECT_OK(expr) EXPECT_THAT((expr), ::mm::testing::IsOk())
#define ASSERT_OK(expr) ASSERT_THAT((expr), ::mm::testing::IsOk())

#define MM_TESTING_CONCAT_INNER_(a, b) a##b
#define MM_TESTING_CONCAT_(a, b) MM_TESTING_CONCAT_INNER_(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr)                     \
  auto MM_TESTING_CONCAT_(mm_statusor_, __LINE__) = (expr); \
  ASSERT_THAT(MM_TESTING_CONCAT_(mm_statusor_, __LINE__),   \
              ::mm::testing::IsOk());                       \
  lhs = std::move(MM_TESTING_CONCAT_(mm_statusor_, __LINE__)).value()

#endif  // MM_TESTS_TESTING_STATUS_MATCHERS_H_
