// Waiting for a service that a test started as a child process.
#ifndef MM_TESTS_TESTING_CHILD_SERVICE_H_
#define MM_TESTS_TESTING_CHILD_SERVICE_H_

#include <filesystem>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "tests/testing/subprocess.h"

namespace mm::testing {

// Waits until `service` ("" = the whole server) of the child `process`
// reports SERVING on `channel`. It follows the health Watch stream
// (WaitForServing in common/client.h) in slices of at most a second with a
// look at the child between them, because a child's exit gives the test no
// event. INTERNAL with the log when the child exited first;
// DEADLINE_EXCEEDED with the last health status and the log when `timeout`
// passed.
absl::Status WaitForChildServing(Subprocess& process, grpc::Channel& channel,
                                 const std::string& service,
                                 const std::filesystem::path& log,
                                 absl::Duration timeout);

}  // namespace mm::testing

#endif  // MM_TESTS_TESTING_CHILD_SERVICE_H_
