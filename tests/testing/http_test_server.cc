#include "tests/testing/http_test_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/strings.h"

namespace mm::testing {
namespace {

// A request head larger than this is refused (400): no client we test sends
// one, so it can only be a broken request.
constexpr size_t kMaxRequestHeadBytes = 64 * 1024;
// The most body bytes handed to one send() loop before checking for Stop()
// and publishing progress, so a fast client of a huge body still sees Stop()
// promptly.
constexpr int64_t kMaxBodySliceBytes = 8 * 1024 * 1024;
// Throttled bodies are sent in slices of 1/50 s worth of bytes.
constexpr int64_t kThrottleSlicesPerSecond = 50;

absl::Status SocketError(std::string_view what, int error) {
  return absl::InternalError(
      absl::StrCat(AsAbsl(what), ": ", std::system_category().message(error)));
}

bool SetNonBlockingCloseOnExec(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return false;
  int fd_flags = ::fcntl(fd, F_GETFD);
  return fd_flags >= 0 && ::fcntl(fd, F_SETFD, fd_flags | FD_CLOEXEC) >= 0;
}

// Events meaning the peer has gone (or at least stopped sending, which an
// HTTP client does only when it is closing).
constexpr short kPeerGoneEvents =
#ifdef POLLRDHUP
    POLLRDHUP |
#endif
    POLLHUP | POLLERR;

// Milliseconds for poll(): rounded up so a wait never ends early and spins;
// -1 for an infinite duration.
int PollTimeoutMs(absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return -1;
  if (timeout <= absl::ZeroDuration()) return 0;
  int64_t ms =
      absl::ToInt64Milliseconds(absl::Ceil(timeout, absl::Milliseconds(1)));
  return static_cast<int>(std::min<int64_t>(ms, INT_MAX));
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 410:
      return "Gone";
    case 416:
      return "Range Not Satisfiable";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

std::string_view PathOf(std::string_view target) {
  return target.substr(0, target.find('?'));
}

std::string_view TrimHttpWhitespace(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

// A non-negative decimal without sign or spaces; false when it is anything
// else or too large to be a byte position.
bool ParseBytePosition(std::string_view text, int64_t* value) {
  if (text.empty() || text.size() > 18) return false;
  int64_t result = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    result = result * 10 + (c - '0');
  }
  *value = result;
  return true;
}

// What a Range header asks of a body of `size` bytes.
struct RangeRequest {
  enum Kind { kIgnore, kUnsatisfiable, kSatisfiable } kind = kIgnore;
  int64_t first = 0;  // inclusive
  int64_t last = 0;   // inclusive
};

// Only the first range of a multi-range request is honoured. A header that
// does not parse is ignored, as RFC 9110 section 14.2 lets a server do.
RangeRequest ParseRange(std::string_view header, int64_t size) {
  RangeRequest range;
  header = TrimHttpWhitespace(header);
  constexpr std::string_view kUnit = "bytes=";
  if (header.size() < kUnit.size() ||
      !absl::EqualsIgnoreCase(AsAbsl(header.substr(0, kUnit.size())),
                              AsAbsl(kUnit))) {
    return range;
  }
  std::string_view spec = header.substr(kUnit.size());
  spec = TrimHttpWhitespace(spec.substr(0, spec.find(',')));
  size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return range;
  std::string_view first_text = TrimHttpWhitespace(spec.substr(0, dash));
  std::string_view last_text = TrimHttpWhitespace(spec.substr(dash + 1));

  if (first_text.empty()) {  // suffix: the last N bytes
    int64_t suffix = 0;
    if (!ParseBytePosition(last_text, &suffix)) return range;
    if (suffix == 0 || size == 0) {
      range.kind = RangeRequest::kUnsatisfiable;
      return range;
    }
    range.kind = RangeRequest::kSatisfiable;
    range.first = size - std::min(suffix, size);
    range.last = size - 1;
    return range;
  }
  int64_t first = 0;
  if (!ParseBytePosition(first_text, &first)) return range;
  int64_t last = size - 1;
  if (!last_text.empty()) {
    if (!ParseBytePosition(last_text, &last) || last < first) return range;
  }
  if (first >= size) {
    range.kind = RangeRequest::kUnsatisfiable;
    return range;
  }
  range.kind = RangeRequest::kSatisfiable;
  range.first = first;
  range.last = std::min(last, size - 1);
  return range;
}

const std::string* FindHeader(const std::map<std::string, std::string>& headers,
                              const char* name) {
  auto it = headers.find(name);
  return it == headers.end() ? nullptr : &it->second;
}

// The filler for the extra bytes of a length_delta > 0 answer.
std::string_view Padding() {
  static const std::string* const kPadding = new std::string(64 * 1024, 'X');
  return *kPadding;
}

// Discards whatever the peer has already sent, without waiting: closing a
// socket with unread data makes the kernel send RST, which can destroy the
// response the client has not read yet.
void DiscardPendingInput(int fd) {
  char scratch[4096];
  while (::recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT) > 0) {
  }
}

}  // namespace

struct HttpTestServer::Request {
  std::string method;
  std::string target;
  std::string version;
  std::map<std::string, std::string> headers;  // names lowercased
  bool keep_alive = true;
};

struct HttpTestServer::ResponsePlan {
  int status = 200;
  // Headers other than Content-Length and Connection.
  std::vector<std::pair<std::string, std::string>> headers;
  // The body is (*body)[offset, offset + length); shared with the stored
  // file (or owning a small error text) so nothing large is copied.
  std::shared_ptr<const std::string> body;
  int64_t offset = 0;
  int64_t length = 0;
  bool omit_content_length = false;
  // Close the connection after this answer.
  bool close_after = false;
  // Body faults (GET 200/206 only).
  int64_t drop_after_bytes = -1;
  int64_t stall_after_bytes = -1;
  absl::Duration stall_for;
  int64_t length_delta = 0;
  int64_t bytes_per_second = 0;
};

HttpTestServer::HttpTestServer(Options options, int listen_fd, int port,
                               int wake_read_fd, int wake_write_fd)
    : options_(std::move(options)),
      listen_fd_(listen_fd),
      port_(port),
      wake_read_fd_(wake_read_fd),
      wake_write_fd_(wake_write_fd) {}

absl::StatusOr<std::unique_ptr<HttpTestServer>> HttpTestServer::Start(
    Options options) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  if (::inet_pton(AF_INET, options.bind_address.c_str(), &address.sin_addr) !=
      1) {
    return absl::InvalidArgumentError(
        absl::StrCat("bind address ", QuotedForMessage(options.bind_address),
                     " is not a dotted IPv4 address such as 127.0.0.1"));
  }
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return SocketError("socket", errno);
  auto fail = [fd](std::string_view what) {
    int error = errno;
    ::close(fd);
    return SocketError(what, error);
  };
  int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
    return fail("setsockopt SO_REUSEADDR");
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) <
      0) {
    return fail(absl::StrCat("bind ", options.bind_address, ":0"));
  }
  if (::listen(fd, SOMAXCONN) < 0) return fail("listen");
  socklen_t length = sizeof(address);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) < 0) {
    return fail("getsockname");
  }
  if (!SetNonBlockingCloseOnExec(fd)) return fail("fcntl");
  int wake[2];
  if (::pipe(wake) < 0) return fail("pipe");
  if (!SetNonBlockingCloseOnExec(wake[0]) ||
      !SetNonBlockingCloseOnExec(wake[1])) {
    absl::Status status = fail("fcntl");
    ::close(wake[0]);
    ::close(wake[1]);
    return status;
  }
  std::unique_ptr<HttpTestServer> server(new HttpTestServer(
      std::move(options), fd, ntohs(address.sin_port), wake[0], wake[1]));
  server->accept_thread_ =
      std::thread(&HttpTestServer::AcceptLoop, server.get());
  return server;
}

absl::StatusOr<std::unique_ptr<HttpTestServer>> HttpTestServer::Start() {
  return Start(Options());
}

HttpTestServer::~HttpTestServer() { Stop(); }

void HttpTestServer::Stop() {
  {
    MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  // Never read, so the pipe stays readable and wakes every current and
  // future poll().
  char byte = 1;
  while (::write(wake_write_fd_, &byte, 1) < 0 && errno == EINTR) {
  }
  accept_thread_.join();
  ::close(listen_fd_);
  std::map<int, std::thread> threads;
  {
    MutexLock lock(&mu_);
    threads.swap(connection_threads_);
    finished_connections_.clear();
  }
  for (auto& [id, thread] : threads) thread.join();
  ::close(wake_read_fd_);
  ::close(wake_write_fd_);
}

std::string HttpTestServer::host_port() const {
  return absl::StrCat(options_.bind_address, ":", port_);
}

std::string HttpTestServer::Url(std::string_view path) const {
  return absl::StrCat("http://", host_port(), AsAbsl(path));
}

void HttpTestServer::SetFile(std::string path, HttpTestFile file) {
  auto shared = std::make_shared<const HttpTestFile>(std::move(file));
  MutexLock lock(&mu_);
  files_[std::move(path)] = std::move(shared);
}

void HttpTestServer::SetBehavior(std::string path, HttpBehavior behavior) {
  MutexLock lock(&mu_);
  faults_[std::move(path)] = PathFaults{.behavior = std::move(behavior)};
}

void HttpTestServer::SetHandler(HttpTestHandler handler) {
  std::shared_ptr<const HttpTestHandler> shared;
  if (handler) {
    shared = std::make_shared<const HttpTestHandler>(std::move(handler));
  }
  MutexLock lock(&mu_);
  handler_ = std::move(shared);
}

std::vector<HttpRequestRecord> HttpTestServer::Requests() const {
  MutexLock lock(&mu_);
  return requests_;
}

std::vector<HttpRequestRecord> HttpTestServer::RequestsFor(
    std::string_view path) const {
  MutexLock lock(&mu_);
  std::vector<HttpRequestRecord> matching;
  for (const HttpRequestRecord& record : requests_) {
    if (PathOf(record.target) == path) matching.push_back(record);
  }
  return matching;
}

int HttpTestServer::ConnectionCount() const {
  MutexLock lock(&mu_);
  return connection_count_;
}

int HttpTestServer::ActiveConnections() const {
  MutexLock lock(&mu_);
  return active_connections_;
}

template <typename Predicate>
bool HttpTestServer::WaitForRecords(std::string_view path, int n,
                                    Predicate wanted, absl::Duration timeout) {
  MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(
      [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        int count = 0;
        for (const HttpRequestRecord& record : requests_) {
          if (PathOf(record.target) == path && wanted(record)) ++count;
        }
        return count >= n;
      },
      timeout);
}

bool HttpTestServer::WaitForRequests(std::string_view path, int n,
                                     absl::Duration timeout) {
  return WaitForRecords(
      path, n, [](const HttpRequestRecord&) { return true; }, timeout);
}

bool HttpTestServer::WaitForDoneRequests(std::string_view path, int n,
                                         absl::Duration timeout) {
  return WaitForRecords(
      path, n, [](const HttpRequestRecord& record) { return record.done; },
      timeout);
}

bool HttpTestServer::WaitForActiveConnectionsAtMost(int n,
                                                    absl::Duration timeout) {
  MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                                  mu_) { return active_connections_ <= n; },
                              timeout);
}

bool HttpTestServer::Stopping() const {
  MutexLock lock(&mu_);
  return stopping_;
}

void HttpTestServer::JoinFinishedConnections() {
  std::vector<std::thread> finished;
  {
    MutexLock lock(&mu_);
    for (int id : finished_connections_) {
      auto it = connection_threads_.find(id);
      if (it == connection_threads_.end()) continue;
      finished.push_back(std::move(it->second));
      connection_threads_.erase(it);
    }
    finished_connections_.clear();
  }
  for (std::thread& thread : finished) thread.join();
}

void HttpTestServer::AcceptLoop() {
  while (true) {
    JoinFinishedConnections();
    pollfd fds[2] = {{.fd = listen_fd_, .events = POLLIN},
                     {.fd = wake_read_fd_, .events = POLLIN}};
    if (::poll(fds, 2, -1) < 0) continue;  // EINTR
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;  // the client gave up, or a transient error
    int one = 1;
    // Without TCP_NODELAY a body sent after its head waits for the client's
    // delayed ACK (tens of milliseconds per request).
    if (!SetNonBlockingCloseOnExec(fd) ||
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
      ::close(fd);
      continue;
    }
    MutexLock lock(&mu_);
    int id = ++connection_count_;
    ++active_connections_;
    connection_threads_[id] =
        std::thread(&HttpTestServer::ServeConnection, this, fd, id);
  }
}

namespace {

enum class ReadResult { kRequest, kClosed, kBadRequest };

// Parses a request head (without the blank line that ends it).
bool ParseRequestHead(std::string_view head, std::string* method,
                      std::string* target, std::string* version,
                      std::map<std::string, std::string>* headers) {
  size_t line_end = head.find("\r\n");
  std::string_view request_line = head.substr(0, line_end);
  size_t first_space = request_line.find(' ');
  size_t last_space = request_line.rfind(' ');
  if (first_space == std::string_view::npos || first_space == last_space) {
    return false;
  }
  *method = std::string(request_line.substr(0, first_space));
  *target = std::string(
      request_line.substr(first_space + 1, last_space - first_space - 1));
  *version = std::string(request_line.substr(last_space + 1));
  if (method->empty() || target->empty() ||
      !absl::StartsWith(*version, "HTTP/1.")) {
    return false;
  }
  std::string_view rest =
      line_end == std::string_view::npos ? "" : head.substr(line_end + 2);
  while (!rest.empty()) {
    size_t end = rest.find("\r\n");
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? "" : rest.substr(end + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    std::string name = absl::AsciiStrToLower(AsAbsl(line.substr(0, colon)));
    std::string value(TrimHttpWhitespace(line.substr(colon + 1)));
    auto [it, inserted] = headers->emplace(name, value);
    if (!inserted) absl::StrAppend(&it->second, ", ", value);
  }
  return true;
}

}  // namespace

void HttpTestServer::ServeConnection(int fd, int connection_id) {
  // Bytes received but not yet parsed (the start of a pipelined request).
  std::string buffer;
  // Reads from the socket into `buffer`; false when the peer closed, the
  // socket failed, or the server is stopping.
  auto receive_more = [&]() {
    while (true) {
      pollfd fds[2] = {{.fd = fd, .events = POLLIN},
                       {.fd = wake_read_fd_, .events = POLLIN}};
      if (::poll(fds, 2, -1) < 0) continue;  // EINTR
      if (fds[1].revents != 0) return false;
      char chunk[16 * 1024];
      ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
      if (n > 0) {
        buffer.append(chunk, static_cast<size_t>(n));
        return true;
      }
      if (n < 0 &&
          (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        continue;
      }
      return false;
    }
  };
  auto read_request = [&](Request* request) {
    size_t head_end;
    while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos) {
      if (buffer.size() > kMaxRequestHeadBytes) return ReadResult::kBadRequest;
      if (!receive_more()) return ReadResult::kClosed;
    }
    bool parsed = ParseRequestHead(std::string_view(buffer).substr(0, head_end),
                                   &request->method, &request->target,
                                   &request->version, &request->headers);
    buffer.erase(0, head_end + 4);
    if (!parsed) return ReadResult::kBadRequest;
    // A GET or HEAD has no body, but one announced must still be skipped
    // to find the next request.
    if (const std::string* length =
            FindHeader(request->headers, "content-length")) {
      int64_t body_bytes = 0;
      if (!ParseBytePosition(*length, &body_bytes)) {
        return ReadResult::kBadRequest;
      }
      while (static_cast<int64_t>(buffer.size()) < body_bytes) {
        if (!receive_more()) return ReadResult::kClosed;
      }
      buffer.erase(0, static_cast<size_t>(body_bytes));
    } else if (FindHeader(request->headers, "transfer-encoding") != nullptr) {
      return ReadResult::kBadRequest;  // chunked uploads are not supported
    }
    std::string connection;
    if (const std::string* value = FindHeader(request->headers, "connection")) {
      connection = absl::AsciiStrToLower(*value);
    }
    if (request->version == "HTTP/1.0") {
      request->keep_alive = absl::StrContains(connection, "keep-alive");
    } else {
      request->keep_alive = !absl::StrContains(connection, "close");
    }
    return ReadResult::kRequest;
  };

  while (true) {
    Request request;
    ReadResult result = read_request(&request);
    if (result == ReadResult::kClosed) break;
    if (result == ReadResult::kBadRequest) {
      std::string text = "400 Bad Request\n";
      SendAll(fd,
              absl::StrCat("HTTP/1.1 400 Bad Request\r\n"
                           "Content-Type: text/plain\r\n"
                           "Content-Length: ",
                           text.size(), "\r\nConnection: close\r\n\r\n", text));
      break;
    }
    size_t record_index = 0;
    ResponsePlan plan = Plan(request, connection_id, &record_index);
    bool keep_open = Respond(fd, request, plan, record_index);
    {
      MutexLock lock(&mu_);
      requests_[record_index].done = true;
    }
    if (!keep_open) break;
  }
  DiscardPendingInput(fd);
  ::close(fd);
  MutexLock lock(&mu_);
  --active_connections_;
  finished_connections_.push_back(connection_id);
}

HttpTestServer::ResponsePlan HttpTestServer::Plan(const Request& request,
                                                  int connection_id,
                                                  size_t* record_index) {
  ResponsePlan plan;
  plan.close_after = !request.keep_alive;
  auto answer_text = [&plan](int status) {
    plan.status = status;
    plan.headers.emplace_back("Content-Type", "text/plain");
    auto text = std::make_shared<const std::string>(
        absl::StrCat(status, " ", AsAbsl(ReasonPhrase(status)), "\n"));
    plan.length = static_cast<int64_t>(text->size());
    plan.body = std::move(text);
  };

  const std::string path(PathOf(request.target));
  HttpRequestRecord record{.method = request.method,
                           .target = request.target,
                           .headers = request.headers,
                           .connection_id = connection_id};
  // The handler runs outside mu_: it may be slow or take its own locks.
  std::shared_ptr<const HttpTestFile> handled;
  if (request.method == "GET" || request.method == "HEAD") {
    std::shared_ptr<const HttpTestHandler> handler;
    {
      MutexLock lock(&mu_);
      handler = handler_;
    }
    if (handler) handled = (*handler)(record);
  }
  MutexLock lock(&mu_);
  *record_index = requests_.size();
  requests_.push_back(std::move(record));
  auto faults_it = faults_.find(path);
  PathFaults* faults =
      faults_it == faults_.end() ? nullptr : &faults_it->second;
  const HttpBehavior* behavior = faults ? &faults->behavior : nullptr;
  std::shared_ptr<const HttpTestFile> file = handled;
  if (file == nullptr) {
    auto files_it = files_.find(path);
    if (files_it != files_.end()) file = files_it->second;
  }
  const bool is_get = request.method == "GET";
  bool bearer_missing = false;
  if (behavior && !behavior->require_bearer.empty()) {
    const std::string* authorization =
        FindHeader(request.headers, "authorization");
    bearer_missing =
        authorization == nullptr ||
        *authorization != absl::StrCat("Bearer ", behavior->require_bearer);
  }

  if (!is_get && request.method != "HEAD") {
    answer_text(405);
    plan.headers.emplace_back("Allow", "GET, HEAD");
  } else if (behavior && behavior->status_override != 0) {
    answer_text(behavior->status_override);
  } else if (behavior && !behavior->redirect_to.empty()) {
    answer_text(behavior->redirect_status);
    plan.headers.emplace_back("Location", behavior->redirect_to);
  } else if (behavior &&
             faults->fail_statuses_used < behavior->fail_statuses.size()) {
    answer_text(behavior->fail_statuses[faults->fail_statuses_used++]);
  } else if (bearer_missing) {
    answer_text(401);
    plan.headers.emplace_back("WWW-Authenticate", "Bearer");
  } else if (file == nullptr) {
    answer_text(404);
  } else if (file->status != 200) {
    // Sent as it is: an API answer, not a file to take ranges of.
    plan.status = file->status;
    plan.body = std::shared_ptr<const std::string>(file, &file->body);
    plan.length = static_cast<int64_t>(file->body.size());
    plan.headers.emplace_back("Content-Type", file->content_type);
    if (!file->etag.empty()) plan.headers.emplace_back("ETag", file->etag);
    if (!file->last_modified.empty()) {
      plan.headers.emplace_back("Last-Modified", file->last_modified);
    }
    if (!file->content_disposition.empty()) {
      plan.headers.emplace_back("Content-Disposition",
                                file->content_disposition);
    }
    for (const auto& header : file->headers) plan.headers.push_back(header);
  } else {
    const bool accept_ranges = behavior == nullptr || behavior->accept_ranges;
    const int64_t size = static_cast<int64_t>(file->body.size());
    RangeRequest range;
    const std::string* range_header = FindHeader(request.headers, "range");
    if (accept_ranges && range_header != nullptr) {
      // If-Range names the representation the client holds; a range of
      // anything else would splice two different files.
      const std::string* if_range = FindHeader(request.headers, "if-range");
      const std::string& validator =
          file->etag.empty() ? file->last_modified : file->etag;
      if (if_range == nullptr ||
          (!validator.empty() && *if_range == validator)) {
        range = ParseRange(*range_header, size);
      }
    }
    if (range.kind == RangeRequest::kUnsatisfiable) {
      answer_text(416);
      plan.headers.emplace_back("Content-Range",
                                absl::StrCat("bytes */", size));
    } else {
      // Aliases the stored body: the file stays alive while it is sent.
      plan.body = std::shared_ptr<const std::string>(file, &file->body);
      if (range.kind == RangeRequest::kSatisfiable) {
        plan.status = 206;
        plan.offset = range.first;
        plan.length = range.last - range.first + 1;
        plan.headers.emplace_back(
            "Content-Range",
            absl::StrCat("bytes ", range.first, "-", range.last, "/", size));
      } else {
        plan.status = 200;
        plan.length = size;
      }
      plan.headers.emplace_back("Content-Type", file->content_type);
      if (accept_ranges) plan.headers.emplace_back("Accept-Ranges", "bytes");
      if (!file->etag.empty()) plan.headers.emplace_back("ETag", file->etag);
      if (!file->last_modified.empty()) {
        plan.headers.emplace_back("Last-Modified", file->last_modified);
      }
      if (!file->content_disposition.empty()) {
        plan.headers.emplace_back("Content-Disposition",
                                  file->content_disposition);
      }
      for (const auto& header : file->headers) plan.headers.push_back(header);
      if (behavior != nullptr) {
        if (behavior->omit_content_length) {
          plan.omit_content_length = true;
          plan.close_after = true;
        }
        if (is_get) {
          if (behavior->drop_after_bytes >= 0 &&
              faults->drops_used < behavior->drop_count) {
            ++faults->drops_used;
            plan.drop_after_bytes = behavior->drop_after_bytes;
            plan.close_after = true;
          }
          if (behavior->stall_after_bytes >= 0 &&
              faults->stalls_used < behavior->stall_count) {
            ++faults->stalls_used;
            plan.stall_after_bytes = behavior->stall_after_bytes;
            plan.stall_for = behavior->stall_for;
          }
          if (behavior->length_delta != 0) {
            plan.length_delta = behavior->length_delta;
            plan.close_after = true;
          }
          plan.bytes_per_second = behavior->bytes_per_second;
        }
      }
    }
  }
  if ((plan.status == 429 || plan.status == 503) && behavior &&
      !behavior->retry_after.empty()) {
    plan.headers.emplace_back("Retry-After", behavior->retry_after);
  }
  requests_[*record_index].status = plan.status;
  return plan;
}

bool HttpTestServer::Respond(int fd, const Request& request,
                             const ResponsePlan& plan, size_t record_index) {
  std::string head = absl::StrCat("HTTP/1.1 ", plan.status, " ",
                                  AsAbsl(ReasonPhrase(plan.status)), "\r\n");
  for (const auto& [name, value] : plan.headers) {
    absl::StrAppend(&head, name, ": ", value, "\r\n");
  }
  if (!plan.omit_content_length) {
    absl::StrAppend(&head, "Content-Length: ", plan.length, "\r\n");
  }
  // Announced only when the client may rely on it; a drop or a wrong length
  // is meant to surprise the client.
  if (plan.omit_content_length || !request.keep_alive) {
    absl::StrAppend(&head, "Connection: close\r\n");
  }
  absl::StrAppend(&head, "\r\n");
  if (!SendAll(fd, head)) return false;
  if (request.method == "HEAD") return !plan.close_after;
  if (!SendBody(fd, plan, record_index)) return false;
  return !plan.close_after;
}

bool HttpTestServer::SendBody(int fd, const ResponsePlan& plan,
                              size_t record_index) {
  const std::string_view body =
      plan.body ? std::string_view(*plan.body)
                      .substr(static_cast<size_t>(plan.offset),
                              static_cast<size_t>(plan.length))
                : std::string_view();
  const int64_t length = static_cast<int64_t>(body.size());
  int64_t total = std::max<int64_t>(0, length + plan.length_delta);
  if (plan.drop_after_bytes >= 0) {
    total = std::min(total, plan.drop_after_bytes);
  }
  bool stall_pending =
      plan.stall_after_bytes >= 0 && plan.stall_after_bytes < total;
  const int64_t throttle_slice =
      std::max<int64_t>(1, plan.bytes_per_second / kThrottleSlicesPerSecond);
  const absl::Time start = absl::Now();

  int64_t sent = 0;
  auto publish_progress = [&] {
    MutexLock lock(&mu_);
    requests_[record_index].body_bytes_sent = sent;
  };
  bool ok = true;
  while (sent < total) {
    if (stall_pending && sent == plan.stall_after_bytes) {
      stall_pending = false;
      publish_progress();
      if (WaitForAbandon(fd, plan.stall_for)) {
        ok = false;
        break;
      }
      continue;
    }
    int64_t limit = std::min(total, sent + kMaxBodySliceBytes);
    if (stall_pending) limit = std::min(limit, plan.stall_after_bytes);
    if (plan.bytes_per_second > 0) {
      const absl::Time due =
          start + absl::Seconds(static_cast<double>(sent) /
                                static_cast<double>(plan.bytes_per_second));
      const absl::Duration wait = due - absl::Now();
      if (wait > absl::ZeroDuration() && WaitForAbandon(fd, wait)) {
        ok = false;
        break;
      }
      limit = std::min(limit, sent + throttle_slice);
    }
    std::string_view chunk;
    if (sent < length) {
      chunk = body.substr(static_cast<size_t>(sent),
                          static_cast<size_t>(std::min(limit, length) - sent));
    } else {
      chunk = Padding().substr(0, static_cast<size_t>(std::min<int64_t>(
                                      limit - sent, Padding().size())));
    }
    if (Stopping() || !SendAll(fd, chunk)) {
      ok = false;
      break;
    }
    sent += static_cast<int64_t>(chunk.size());
    publish_progress();
  }
  publish_progress();
  return ok;
}

bool HttpTestServer::SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
    pollfd fds[2] = {{.fd = fd, .events = POLLOUT},
                     {.fd = wake_read_fd_, .events = POLLIN}};
    if (::poll(fds, 2, -1) < 0) continue;  // EINTR
    if (fds[1].revents != 0) return false;
    if ((fds[0].revents & (POLLHUP | POLLERR)) != 0) return false;
  }
  return true;
}

bool HttpTestServer::WaitForAbandon(int fd, absl::Duration timeout) {
  const absl::Time deadline = timeout == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : absl::Now() + timeout;
  while (true) {
    const int timeout_ms = deadline == absl::InfiniteFuture()
                               ? -1
                               : PollTimeoutMs(deadline - absl::Now());
    if (timeout_ms == 0) return false;
    pollfd fds[2] = {{.fd = wake_read_fd_, .events = POLLIN},
                     {.fd = fd, .events = kPeerGoneEvents}};
    int ready = ::poll(fds, 2, timeout_ms);
    if (ready < 0) continue;  // EINTR
    if (fds[0].revents != 0) return true;
    if ((fds[1].revents & kPeerGoneEvents) != 0) return true;
  }
}

std::string RandomBody(size_t size, uint32_t seed) {
  std::string body(size, '\0');
  // SplitMix64: fast, and every seed gives a different full-period stream.
  uint64_t state = 0x9E3779B97F4A7C15ULL * (uint64_t{seed} + 1);
  size_t i = 0;
  while (i < size) {
    state += 0x9E3779B97F4A7C15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    for (int byte = 0; byte < 8 && i < size; ++byte, ++i) {
      body[i] = static_cast<char>(z >> (8 * byte));
    }
  }
  return body;
}

}  // namespace mm::testing
