// Status helpers in the style of Abseil's internal macros (Debian's Abseil
// 20220623 ships Status and StatusOr but not these).
//
//   absl::Status Save(const Record& r) {
//     RETURN_IF_ERROR(Validate(r));
//     ASSIGN_OR_RETURN(std::string json, Encode(r));
//     ...
//   }
#ifndef MM_COMMON_STATUS_H_
#define MM_COMMON_STATUS_H_

#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define MM_STATUS_CONCAT_INNER_(a, b) a##b
#define MM_STATUS_CONCAT_(a, b) MM_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing
// function when it is not OK.
#define RETURN_IF_ERROR(expr)                \
  do {                                       \
    ::absl::Status mm_status_ = (expr);      \
    if (!mm_status_.ok()) return mm_status_; \
  } while (false)

// `ASSIGN_OR_RETURN(lhs, expr)`: evaluates `expr` (an absl::StatusOr<T>),
// returns its status when not OK, else moves the value into `lhs`, which may
// be a declaration (`auto x`) or an existing variable.
#define ASSIGN_OR_RETURN(lhs, expr)                                         \
  MM_ASSIGN_OR_RETURN_IMPL_(MM_STATUS_CONCAT_(mm_statusor_, __LINE__), lhs, \
                            expr)

#define MM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)     \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

namespace mm {

// The inverse of absl::StatusCodeToString ("NOT_FOUND" -> kNotFound), for
// codes that travel or are stored by name (a job's error); UNKNOWN for a
// name it does not know (a row written by a newer build, an empty code).
inline absl::StatusCode StatusCodeFromName(std::string_view name) {
  for (int value = static_cast<int>(absl::StatusCode::kOk);
       value <= static_cast<int>(absl::StatusCode::kUnauthenticated); ++value) {
    const auto code = static_cast<absl::StatusCode>(value);
    if (absl::StatusCodeToString(code) == name) return code;
  }
  return absl::StatusCode::kUnknown;
}

// Returns `status` with `context: ` put before its message, keeping the code.
// OK stays OK.
inline absl::Status Annotate(const absl::Status& status,
                             std::string_view context) {
  if (status.ok()) return status;
  return absl::Status(
      status.code(),
      absl::StrCat(absl::string_view(context.data(), context.size()), ": ",
                   status.message()));
}

}  // namespace mm

#endif  // MM_COMMON_STATUS_H_
