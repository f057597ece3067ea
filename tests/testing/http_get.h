// A minimal HTTP/1.1 GET over a plain socket, for tests of the metrics
// endpoint (common/metrics/http_server.h) in-process and of the service
// executables: what a scraper or a probe does, with a deadline.
#ifndef MM_TESTS_TESTING_HTTP_GET_H_
#define MM_TESTS_TESTING_HTTP_GET_H_

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mm::testing {

struct HttpGetResponse {
  int status = 0;    // 200, 404, ...
  std::string body;  // everything after the header block
};

// GET http://`address``path` ("127.0.0.1:PORT", "/metrics"), reading until
// the server closes. UNAVAILABLE when the connection fails; DEADLINE_
// EXCEEDED when the answer takes longer than `timeout`; INTERNAL when it
// is not HTTP.
absl::StatusOr<HttpGetResponse> HttpGet(const std::string& address,
                                        const std::string& path,
                                        absl::Duration timeout);

// The address a service executable logged for its metrics endpoint
// ("metrics on http://127.0.0.1:PORT/metrics" in the file `log`), or ""
// when it logged none. Logged before the gRPC server starts, so present
// once the service is SERVING.
std::string LoggedMetricsAddress(const std::filesystem::path& log);

}  // namespace mm::testing

#endif  // MM_TESTS_TESTING_HTTP_GET_H_
