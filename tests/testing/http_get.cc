#include "tests/testing/http_get.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mm::testing {

absl::StatusOr<HttpGetResponse> HttpGet(const std::string& address,
                                        const std::string& path,
                                        absl::Duration timeout) {
  size_t colon = address.rfind(':');
  int port = 0;
  sockaddr_in peer{};
  peer.sin_family = AF_INET;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &peer.sin_addr) !=
          1) {
    return absl::InvalidArgumentError(
        absl::StrCat("HttpGet: want IPV4:PORT, got '", address, "'"));
  }
  peer.sin_port = htons(port);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("HttpGet: socket failed");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  absl::Time deadline = absl::Now() + timeout;
  timeval tv = absl::ToTimeval(timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&peer), sizeof(peer)) != 0) {
    return absl::UnavailableError(absl::StrCat("HttpGet: connect to ", address,
                                               ": ", std::strerror(errno)));
  }
  std::string request =
      absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", address, "\r\n\r\n");
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return absl::UnavailableError(
        absl::StrCat("HttpGet: send to ", address, " failed"));
  }
  std::string data;
  char buffer[4096];
  while (true) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("HttpGet: ", address, path, " took longer than ",
                       absl::FormatDuration(timeout)));
    }
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) continue;  // deadline
      return absl::UnavailableError(absl::StrCat("HttpGet: read from ", address,
                                                 ": ", std::strerror(errno)));
    }
    data.append(buffer, n);
  }
  size_t header_end = data.find("\r\n\r\n");
  HttpGetResponse response;
  if (!data.starts_with("HTTP/1.") || data.size() < 12 ||
      header_end == std::string::npos ||
      !absl::SimpleAtoi(data.substr(9, 3), &response.status)) {
    return absl::InternalError(
        absl::StrCat("HttpGet: not an HTTP response: '", data, "'"));
  }
  response.body = data.substr(header_end + 4);
  return response;
}

std::string LoggedMetricsAddress(const std::filesystem::path& log) {
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  constexpr std::string_view kPrefix = "metrics on http://";
  size_t start = text.find(kPrefix);
  if (start == std::string::npos) return "";
  start += kPrefix.size();
  size_t end = text.find("/metrics", start);
  return end == std::string::npos ? "" : text.substr(start, end - start);
}

}  // namespace mm::testing
