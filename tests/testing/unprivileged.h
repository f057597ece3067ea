// Runs an operation with file permissions enforced, even when the test runs
// as root (as CI does). Root, or any process with CAP_DAC_OVERRIDE,
// CAP_DAC_READ_SEARCH or CAP_FOWNER, reads and writes files whatever their
// mode, so a test of "this file cannot be read" would pass vacuously or have
// to skip. Here the operation runs in a forked child that first drops every
// capability: it keeps its uid (0) and so still owns the test's files, but
// the kernel now checks their mode bits as it would for an ordinary owner:
// a file chmod'ed to 0 cannot be opened, a folder without 'x' cannot be
// entered. That is what the same test sees when a normal user runs it (its
// own files, their mode bits), without having to make the test's temporary
// folder reachable by some other user. Without such capabilities the
// operation simply runs in this process.
//
// The child reports the operation's absl::Status (code and message), and an
// optional text value, through a pipe; gtest assertions inside the operation
// are lost with the child, so report through the return value. The child is
// given `deadline` to finish, then killed (DEADLINE_EXCEEDED).
//
// Thread-safety: call from the test's main thread. fork copies only the
// calling thread, so the operation should build what it uses (a store, a
// reader) instead of using objects whose threads run in the parent; it may
// start threads of its own.
//
//   chmod(file.c_str(), 0);
//   EXPECT_THAT(RunUnprivileged([&] { return HashFile(file).status(); }),
//               StatusIs(absl::StatusCode::kPermissionDenied));
#ifndef MM_TESTS_TESTING_UNPRIVILEGED_H_
#define MM_TESTS_TESTING_UNPRIVILEGED_H_

#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mm::testing {

// Whether this process bypasses file permission checks (root, or a
// capability that overrides them), so RunUnprivileged forks.
bool IsPrivileged();

// Runs `operation` with file permissions enforced (see above) and returns
// its status.
absl::Status RunUnprivileged(absl::FunctionRef<absl::Status()> operation,
                             absl::Duration deadline = absl::Seconds(60));

// The same for an operation that produces a text (a listing, a digest).
absl::StatusOr<std::string> RunUnprivilegedForText(
    absl::FunctionRef<absl::StatusOr<std::string>()> operation,
    absl::Duration deadline = absl::Seconds(60));

}  // namespace mm::testing

#endif  // MM_TESTS_TESTING_UNPRIVILEGED_H_
