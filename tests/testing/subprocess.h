// A child process for end-to-end tests: starts a real executable with its
// output captured in a file, signals it, waits for it with a deadline, and
// kills it when the object dies.
//
//   ASSERT_OK_AND_ASSIGN(auto server, Subprocess::Start(
//       {MM_RECORDS_BIN, "--listen", "unix:/tmp/x.sock"}, dir / "log"));
//   server->Signal(SIGTERM);
//   ASSERT_OK_AND_ASSIGN(int code, server->Wait(absl::Seconds(30)));
#ifndef MM_TESTS_TESTING_SUBPROCESS_H_
#define MM_TESTS_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mm::testing {

class Subprocess {
 public:
  // Starts argv[0] with `argv`; stdout and stderr go to `log` (appended).
  // `env` entries are added to (or override) the current environment.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      const std::vector<std::string>& argv, const std::filesystem::path& log,
      const std::map<std::string, std::string>& env = {});

  // Adopts an already started child.
  explicit Subprocess(pid_t pid) : pid_(pid) {}
  ~Subprocess();

  pid_t pid() const { return pid_; }
  void Signal(int signal_number);
  // The exit code (or 128 + signal), or DEADLINE_EXCEEDED.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  // Whether it is still running.
  bool Running();

 private:
  pid_t pid_;
  bool reaped_ = false;
  int exit_code_ = 0;
};

// Runs a command to completion and returns {exit code, stdout}; stderr goes
// into `stderr_out` when given.
struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
absl::StatusOr<CommandResult> RunCommand(
    const std::vector<std::string>& argv, absl::Duration timeout,
    const std::map<std::string, std::string>& env = {},
    const std::string& stdin_text = "");

}  // namespace mm::testing

#endif  // MM_TESTS_TESTING_SUBPROCESS_H_
