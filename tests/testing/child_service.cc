#include "tests/testing/child_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/client.h"
#include "tests/testing/temp_dir.h"

namespace mm::testing {

absl::Status WaitForChildServing(Subprocess& process, grpc::Channel& channel,
                                 const std::string& service,
                                 const std::filesystem::path& log,
                                 absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status status = absl::DeadlineExceededError("no answer yet");
  while (absl::Now() < deadline) {
    if (!process.Running()) {
      return absl::InternalError(
          absl::StrCat("the service exited before it was SERVING; log ",
                       log.string(), ":\n", ReadFile(log)));
    }
    status = WaitForServing(channel, service,
                            std::min(deadline - absl::Now(), absl::Seconds(1)));
    if (status.ok()) return status;
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "not SERVING within ", absl::FormatDuration(timeout), ": ",
      status.message(), "; log ", log.string(), ":\n", ReadFile(log)));
}

}  // namespace mm::testing
