#include "tests/testing/http_test_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace mm::testing {
namespace {

using ::testing::Contains;
using ::testing::Key;
using ::testing::Not;
using ::testing::Pair;

// One parsed answer as a plain client sees it.
struct Response {
  int status = 0;
  std::string status_line;
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
  // The body ended early (the server closed before Content-Length bytes).
  bool truncated = false;
};

// A deliberately simple HTTP/1.1 client on one TCP connection, so the
// server is tested without libcurl's own retries and connection reuse.
// Every read gives up after 10 s so a server bug fails the test, not hangs.
class Client {
 public:
  Client(const std::string& host, int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, host.c_str(), &address.sin_addr);
    timeval timeout{.tv_sec = 10, .tv_usec = 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&address),
                           sizeof(address)) == 0;
  }
  explicit Client(const HttpTestServer& server)
      : Client("127.0.0.1", server.port()) {}
  ~Client() { Close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool Send(std::string_view text) {
    while (!text.empty()) {
      ssize_t n = ::send(fd_, text.data(), text.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      text.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Sends `method path` with `headers` (each "Name: value").
  bool SendRequest(std::string_view method, std::string_view path,
                   const std::vector<std::string>& headers = {}) {
    std::string text = absl::StrCat(std::string(method), " ", std::string(path),
                                    " HTTP/1.1\r\nHost: test\r\n");
    for (const std::string& header : headers) {
      absl::StrAppend(&text, header, "\r\n");
    }
    absl::StrAppend(&text, "\r\n");
    return Send(text);
  }

  // Reads the head of an answer (status line and headers).
  Response ReadHead() {
    Response response;
    size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!ReceiveMore()) return response;
    }
    std::string head = buffer_.substr(0, head_end);
    buffer_.erase(0, head_end + 4);
    size_t line_end = head.find("\r\n");
    response.status_line = head.substr(0, line_end);
    response.status = std::stoi(response.status_line.substr(9, 3));
    size_t start = line_end == std::string::npos ? head.size() : line_end + 2;
    while (start < head.size()) {
      size_t end = head.find("\r\n", start);
      if (end == std::string::npos) end = head.size();
      std::string line = head.substr(start, end - start);
      size_t colon = line.find(':');
      response.headers[absl::AsciiStrToLower(line.substr(0, colon))] =
          std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      start = end + 2;
    }
    return response;
  }

  // Reads one answer: the head, then Content-Length body bytes (none for
  // HEAD), or everything until the server closes when there is no
  // Content-Length.
  Response ReadResponse(bool head_only = false) {
    Response response = ReadHead();
    if (head_only || response.status == 0) return response;
    auto length = response.headers.find("content-length");
    if (length == response.headers.end()) {
      response.body = ReadUntilClosed();
      return response;
    }
    size_t wanted = std::stoull(length->second);
    while (buffer_.size() < wanted) {
      if (!ReceiveMore()) {
        response.truncated = true;
        break;
      }
    }
    size_t take = std::min(wanted, buffer_.size());
    response.body = buffer_.substr(0, take);
    buffer_.erase(0, take);
    return response;
  }

  // After ReadHead(): waits until at least `n` body bytes are here and
  // returns (consumes) all received so far; empty if the stream ended first.
  std::string ReadBodyBytes(size_t n) {
    while (buffer_.size() < n) {
      if (!ReceiveMore()) return "";
    }
    return std::exchange(buffer_, "");
  }

  // Everything left until the server closes the connection.
  std::string ReadUntilClosed() {
    while (ReceiveMore()) {
    }
    std::string rest = std::move(buffer_);
    buffer_.clear();
    return rest;
  }

  // Whether the server has closed the connection (reads to the end).
  bool ServerClosed() {
    ReadUntilClosed();
    return closed_;
  }

 private:
  // False at end of stream, error or the 10 s timeout.
  bool ReceiveMore() {
    char chunk[64 * 1024];
    while (true) {
      ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
      if (n > 0) {
        buffer_.append(chunk, static_cast<size_t>(n));
        return true;
      }
      if (n < 0 && errno == EINTR) continue;
      closed_ = n == 0;
      return false;
    }
  }

  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string buffer_;
};

// One request on a fresh connection.
Response Fetch(const HttpTestServer& server, std::string_view method,
               std::string_view path,
               const std::vector<std::string>& headers = {}) {
  Client client(server);
  EXPECT_TRUE(client.connected());
  EXPECT_TRUE(client.SendRequest(method, path, headers));
  return client.ReadResponse(method == "HEAD");
}

class HttpTestServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<HttpTestServer>> server =
        HttpTestServer::Start();
    ASSERT_OK(server.status());
    server_ = *std::move(server);
    body_ = RandomBody(1000, 1);
    server_->SetFile(
        "/file", {.body = body_,
                  .etag = "\"v1\"",
                  .last_modified = "Tue, 01 Oct 2024 10:00:00 GMT",
                  .content_disposition = "attachment; filename=\"model.bin\""});
  }

  std::unique_ptr<HttpTestServer> server_;
  std::string body_;
};

TEST_F(HttpTestServerTest, ServesFullBodyWithValidators) {
  Response response = Fetch(*server_, "GET", "/file");
  EXPECT_EQ(response.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(response.body, body_);
  EXPECT_FALSE(response.truncated);
  EXPECT_THAT(response.headers, Contains(Pair("content-length", "1000")));
  EXPECT_THAT(response.headers, Contains(Pair("accept-ranges", "bytes")));
  EXPECT_THAT(response.headers, Contains(Pair("etag", "\"v1\"")));
  EXPECT_THAT(response.headers,
              Contains(Pair("last-modified", "Tue, 01 Oct 2024 10:00:00 GMT")));
  EXPECT_THAT(response.headers,
              Contains(Pair("content-type", "application/octet-stream")));
  EXPECT_THAT(response.headers,
              Contains(Pair("content-disposition",
                            "attachment; filename=\"model.bin\"")));
}

TEST_F(HttpTestServerTest, HeadSendsHeadersOnly) {
  Client client(*server_);
  ASSERT_TRUE(client.SendRequest("HEAD", "/file"));
  Response head = client.ReadResponse(/*head_only=*/true);
  EXPECT_EQ(head.status, 200);
  EXPECT_THAT(head.headers, Contains(Pair("content-length", "1000")));
  // No body bytes came: the next answer on the connection parses cleanly.
  ASSERT_TRUE(client.SendRequest("GET", "/file"));
  Response get = client.ReadResponse();
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.body, body_);
}

TEST_F(HttpTestServerTest, ServesByteRanges) {
  Response closed = Fetch(*server_, "GET", "/file", {"Range: bytes=10-19"});
  EXPECT_EQ(closed.status_line, "HTTP/1.1 206 Partial Content");
  EXPECT_EQ(closed.body, body_.substr(10, 10));
  EXPECT_THAT(closed.headers,
              Contains(Pair("content-range", "bytes 10-19/1000")));
  EXPECT_THAT(closed.headers, Contains(Pair("content-length", "10")));

  Response open = Fetch(*server_, "GET", "/file", {"Range: bytes=990-"});
  EXPECT_EQ(open.status, 206);
  EXPECT_EQ(open.body, body_.substr(990));
  EXPECT_THAT(open.headers,
              Contains(Pair("content-range", "bytes 990-999/1000")));

  Response suffix = Fetch(*server_, "GET", "/file", {"Range: bytes=-5"});
  EXPECT_EQ(suffix.status, 206);
  EXPECT_EQ(suffix.body, body_.substr(995));
  EXPECT_THAT(suffix.headers,
              Contains(Pair("content-range", "bytes 995-999/1000")));

  // An end past the body is cut to it; only the first of several ranges
  // is served.
  Response clamped =
      Fetch(*server_, "GET", "/file", {"Range: bytes=998-5000, 0-1"});
  EXPECT_EQ(clamped.status, 206);
  EXPECT_EQ(clamped.body, body_.substr(998));
  EXPECT_THAT(clamped.headers,
              Contains(Pair("content-range", "bytes 998-999/1000")));
}

TEST_F(HttpTestServerTest, RangeStartingPastTheEndIs416) {
  Response response = Fetch(*server_, "GET", "/file", {"Range: bytes=1000-"});
  EXPECT_EQ(response.status_line, "HTTP/1.1 416 Range Not Satisfiable");
  EXPECT_THAT(response.headers,
              Contains(Pair("content-range", "bytes */1000")));
}

TEST_F(HttpTestServerTest, IfRangeMismatchSendsFullBody) {
  Response stale = Fetch(*server_, "GET", "/file",
                         {"Range: bytes=10-19", "If-Range: \"v0\""});
  EXPECT_EQ(stale.status, 200);
  EXPECT_EQ(stale.body, body_);

  Response current = Fetch(*server_, "GET", "/file",
                           {"Range: bytes=10-19", "If-Range: \"v1\""});
  EXPECT_EQ(current.status, 206);
  EXPECT_EQ(current.body, body_.substr(10, 10));
}

TEST_F(HttpTestServerTest, IfRangeUsesLastModifiedWithoutEtag) {
  server_->SetFile(
      "/dated",
      {.body = "0123456789", .last_modified = "Tue, 01 Oct 2024 10:00:00 GMT"});
  Response current =
      Fetch(*server_, "GET", "/dated",
            {"Range: bytes=2-3", "If-Range: Tue, 01 Oct 2024 10:00:00 GMT"});
  EXPECT_EQ(current.status, 206);
  EXPECT_EQ(current.body, "23");
  Response stale =
      Fetch(*server_, "GET", "/dated",
            {"Range: bytes=2-3", "If-Range: Mon, 30 Sep 2024 10:00:00 GMT"});
  EXPECT_EQ(stale.status, 200);
  EXPECT_EQ(stale.body, "0123456789");
}

TEST_F(HttpTestServerTest, AcceptRangesFalseIgnoresRange) {
  server_->SetBehavior("/file", {.accept_ranges = false});
  Response response = Fetch(*server_, "GET", "/file", {"Range: bytes=10-19"});
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, body_);
  EXPECT_THAT(response.headers, Not(Contains(Key("accept-ranges"))));
  EXPECT_THAT(response.headers, Not(Contains(Key("content-range"))));
}

TEST_F(HttpTestServerTest, UnknownPathIs404) {
  Response response = Fetch(*server_, "GET", "/missing");
  EXPECT_EQ(response.status_line, "HTTP/1.1 404 Not Found");
  EXPECT_EQ(response.body, "404 Not Found\n");
}

TEST_F(HttpTestServerTest, FailStatusesInOrderThenNormalService) {
  server_->SetBehavior("/file",
                       {.fail_statuses = {503, 429}, .retry_after = "2"});
  Response first = Fetch(*server_, "GET", "/file");
  EXPECT_EQ(first.status_line, "HTTP/1.1 503 Service Unavailable");
  EXPECT_THAT(first.headers, Contains(Pair("retry-after", "2")));
  Response second = Fetch(*server_, "GET", "/file");
  EXPECT_EQ(second.status_line, "HTTP/1.1 429 Too Many Requests");
  EXPECT_THAT(second.headers, Contains(Pair("retry-after", "2")));
  Response third = Fetch(*server_, "GET", "/file");
  EXPECT_EQ(third.status, 200);
  EXPECT_EQ(third.body, body_);
  EXPECT_THAT(third.headers, Not(Contains(Key("retry-after"))));
}

TEST_F(HttpTestServerTest, StatusOverrideAnswersEveryRequest) {
  server_->SetBehavior("/file", {.status_override = 500});
  EXPECT_EQ(Fetch(*server_, "GET", "/file").status_line,
            "HTTP/1.1 500 Internal Server Error");
  EXPECT_EQ(Fetch(*server_, "GET", "/file").status, 500);
}

TEST_F(HttpTestServerTest, RequireBearer) {
  server_->SetBehavior("/file", {.require_bearer = "s3cret"});
  Response none = Fetch(*server_, "GET", "/file");
  EXPECT_EQ(none.status_line, "HTTP/1.1 401 Unauthorized");
  Response wrong =
      Fetch(*server_, "GET", "/file", {"Authorization: Bearer nope"});
  EXPECT_EQ(wrong.status, 401);
  Response right =
      Fetch(*server_, "GET", "/file", {"Authorization: Bearer s3cret"});
  EXPECT_EQ(right.status, 200);
  EXPECT_EQ(right.body, body_);
}

TEST_F(HttpTestServerTest, RedirectSendsLocation) {
  server_->SetBehavior("/old", {.redirect_to = "/file"});
  Response found = Fetch(*server_, "GET", "/old");
  EXPECT_EQ(found.status_line, "HTTP/1.1 302 Found");
  EXPECT_THAT(found.headers, Contains(Pair("location", "/file")));

  server_->SetBehavior("/moved", {.redirect_to = "http://127.0.0.2:1/x",
                                  .redirect_status = 301});
  Response moved = Fetch(*server_, "GET", "/moved");
  EXPECT_EQ(moved.status_line, "HTTP/1.1 301 Moved Permanently");
  EXPECT_THAT(moved.headers,
              Contains(Pair("location", "http://127.0.0.2:1/x")));
}

TEST_F(HttpTestServerTest, DropAfterBytesClosesEarlyThenRecovers) {
  server_->SetBehavior("/file", {.drop_after_bytes = 100, .drop_count = 1});
  Client client(*server_);
  ASSERT_TRUE(client.SendRequest("GET", "/file"));
  Response dropped = client.ReadResponse();
  EXPECT_EQ(dropped.status, 200);
  EXPECT_THAT(dropped.headers, Contains(Pair("content-length", "1000")));
  EXPECT_TRUE(dropped.truncated);
  EXPECT_EQ(dropped.body, body_.substr(0, 100));
  EXPECT_TRUE(client.ServerClosed());

  Response next = Fetch(*server_, "GET", "/file");
  EXPECT_EQ(next.status, 200);
  EXPECT_EQ(next.body, body_);
  ASSERT_TRUE(server_->WaitForDoneRequests("/file", 2, absl::Seconds(10)));
  std::vector<HttpRequestRecord> records = server_->RequestsFor("/file");
  ASSERT_EQ(records.size(), 2);
  EXPECT_EQ(records[0].body_bytes_sent, 100);
  EXPECT_EQ(records[1].body_bytes_sent, 1000);
}

TEST_F(HttpTestServerTest, DropAppliesToRangeAnswers) {
  server_->SetBehavior("/file", {.drop_after_bytes = 3, .drop_count = 1});
  Response dropped = Fetch(*server_, "GET", "/file", {"Range: bytes=500-"});
  EXPECT_EQ(dropped.status, 206);
  EXPECT_TRUE(dropped.truncated);
  EXPECT_EQ(dropped.body, body_.substr(500, 3));
}

TEST_F(HttpTestServerTest, LengthDeltaSendsMoreBytesThenCloses) {
  server_->SetBehavior("/file", {.length_delta = 7});
  Client client(*server_);
  ASSERT_TRUE(client.SendRequest("GET", "/file"));
  Response response = client.ReadResponse();
  EXPECT_THAT(response.headers, Contains(Pair("content-length", "1000")));
  EXPECT_EQ(response.body, body_);
  EXPECT_EQ(client.ReadUntilClosed(), "XXXXXXX");
  EXPECT_TRUE(client.ServerClosed());
}

TEST_F(HttpTestServerTest, LengthDeltaSendsFewerBytesThenCloses) {
  server_->SetBehavior("/file", {.length_delta = -10});
  Client client(*server_);
  ASSERT_TRUE(client.SendRequest("GET", "/file", {"Range: bytes=0-99"}));
  Response response = client.ReadResponse();
  EXPECT_EQ(response.status, 206);
  EXPECT_THAT(response.headers, Contains(Pair("content-length", "100")));
  EXPECT_TRUE(response.truncated);
  EXPECT_EQ(response.body, body_.substr(0, 90));
  EXPECT_TRUE(client.ServerClosed());
}

TEST_F(HttpTestServerTest, OmitContentLengthDelimitsByClose) {
  server_->SetBehavior("/file", {.omit_content_length = true});
  Client client(*server_);
  ASSERT_TRUE(client.SendRequest("GET", "/file"));
  Response response = client.ReadResponse();
  EXPECT_EQ(response.status, 200);
  EXPECT_THAT(response.headers, Not(Contains(Key("content-length"))));
  EXPECT_THAT(response.headers, Contains(Pair("connection", "close")));
  EXPECT_EQ(response.body, body_);
  EXPECT_TRUE(client.ServerClosed());
}

TEST_F(HttpTestServerTest, StallThenStopReturnsPromptly) {
  server_->SetBehavior("/file", {.stall_after_bytes = 100,
                                 .stall_for = absl::InfiniteDuration(),
                                 .stall_count = 1});
  Client client(*server_);
  ASSERT_TRUE(client.SendRequest("GET", "/file"));
  // The head and the first 100 body bytes, then nothing.
  EXPECT_EQ(client.ReadHead().status, 200);
  EXPECT_EQ(client.ReadBodyBytes(100), body_.substr(0, 100));
  EXPECT_EQ(server_->ActiveConnections(), 1);

  absl::Time start = absl::Now();
  server_->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_TRUE(client.ServerClosed());
  EXPECT_EQ(server_->ActiveConnections(), 0);
  // Stop() is idempotent and the records outlive it.
  server_->Stop();
  std::vector<HttpRequestRecord> records = server_->RequestsFor("/file");
  ASSERT_EQ(records.size(), 1);
  EXPECT_TRUE(records[0].done);
  EXPECT_EQ(records[0].body_bytes_sent, 100);
}

TEST_F(HttpTestServerTest, TimedStallResumesTheBody) {
  server_->SetBehavior("/file", {.stall_after_bytes = 10,
                                 .stall_for = absl::Milliseconds(50),
                                 .stall_count = 1});
  Response response = Fetch(*server_, "GET", "/file");
  EXPECT_EQ(response.status, 200);
  EXPECT_FALSE(response.truncated);
  EXPECT_EQ(response.body, body_);
}

TEST_F(HttpTestServerTest, ClientLeavingDuringStallEndsTheConnection) {
  server_->SetBehavior("/file", {.stall_after_bytes = 0,
                                 .stall_for = absl::InfiniteDuration(),
                                 .stall_count = 1});
  {
    Client client(*server_);
    ASSERT_TRUE(client.SendRequest("GET", "/file"));
    ASSERT_TRUE(server_->WaitForRequests("/file", 1, absl::Seconds(10)));
  }
  EXPECT_TRUE(server_->WaitForActiveConnectionsAtMost(0, absl::Seconds(10)));
}

TEST_F(HttpTestServerTest, ThrottledBodyArrivesWhole) {
  server_->SetBehavior("/file", {.bytes_per_second = 10000});
  absl::Time start = absl::Now();
  Response response = Fetch(*server_, "GET", "/file");
  EXPECT_EQ(response.body, body_);
  // 1000 bytes at 10000 B/s in 200-byte slices: the last is due after
  // 0.08 s. Only the
  // lower bound is checked; a slow machine may take longer.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));
}

TEST_F(HttpTestServerTest, KeepAliveServesRequestsOnOneConnection) {
  Client client(*server_);
  ASSERT_TRUE(client.SendRequest("GET", "/file"));
  EXPECT_EQ(client.ReadResponse().body, body_);
  ASSERT_TRUE(client.SendRequest("GET", "/missing"));
  EXPECT_EQ(client.ReadResponse().status, 404);
  ASSERT_TRUE(client.SendRequest("GET", "/file", {"Range: bytes=0-0"}));
  EXPECT_EQ(client.ReadResponse().body, body_.substr(0, 1));

  std::vector<HttpRequestRecord> records = server_->Requests();
  ASSERT_EQ(records.size(), 3);
  EXPECT_EQ(records[0].connection_id, records[1].connection_id);
  EXPECT_EQ(records[0].connection_id, records[2].connection_id);
  EXPECT_EQ(server_->ConnectionCount(), 1);
  EXPECT_EQ(server_->ActiveConnections(), 1);

  Fetch(*server_, "GET", "/file");
  records = server_->Requests();
  ASSERT_EQ(records.size(), 4);
  EXPECT_NE(records[3].connection_id, records[0].connection_id);
  EXPECT_EQ(server_->ConnectionCount(), 2);
}

TEST_F(HttpTestServerTest, ConnectionCloseIsHonoured) {
  Client client(*server_);
  ASSERT_TRUE(client.SendRequest("GET", "/file", {"Connection: close"}));
  Response response = client.ReadResponse();
  EXPECT_EQ(response.body, body_);
  EXPECT_THAT(response.headers, Contains(Pair("connection", "close")));
  EXPECT_TRUE(client.ServerClosed());
}

TEST_F(HttpTestServerTest, RecordsRequests) {
  Fetch(*server_, "GET", "/file?token=abc",
        {"Range: bytes=0-9", "X-Custom: One", "x-custom: two"});
  Fetch(*server_, "HEAD", "/nothing");
  ASSERT_TRUE(server_->WaitForDoneRequests("/file", 1, absl::Seconds(10)));
  ASSERT_TRUE(server_->WaitForDoneRequests("/nothing", 1, absl::Seconds(10)));

  std::vector<HttpRequestRecord> records = server_->Requests();
  ASSERT_EQ(records.size(), 2);
  EXPECT_EQ(records[0].method, "GET");
  EXPECT_EQ(records[0].target, "/file?token=abc");
  EXPECT_EQ(records[0].status, 206);
  EXPECT_EQ(records[0].body_bytes_sent, 10);
  EXPECT_THAT(records[0].headers, Contains(Pair("range", "bytes=0-9")));
  EXPECT_THAT(records[0].headers, Contains(Pair("host", "test")));
  EXPECT_THAT(records[0].headers, Contains(Pair("x-custom", "One, two")));
  EXPECT_EQ(records[1].method, "HEAD");
  EXPECT_EQ(records[1].status, 404);
  EXPECT_EQ(records[1].body_bytes_sent, 0);
  EXPECT_TRUE(records[1].done);

  std::vector<HttpRequestRecord> for_file = server_->RequestsFor("/file");
  ASSERT_EQ(for_file.size(), 1);
  EXPECT_EQ(for_file[0].target, "/file?token=abc");
  EXPECT_TRUE(server_->WaitForRequests("/file", 1, absl::Seconds(1)));
  EXPECT_FALSE(server_->WaitForRequests("/file", 2, absl::Milliseconds(20)));
}

TEST_F(HttpTestServerTest, SetFileReplacesTheFile) {
  server_->SetFile("/file", {.body = "new", .etag = "\"v2\""});
  Response response = Fetch(*server_, "GET", "/file");
  EXPECT_EQ(response.body, "new");
  EXPECT_THAT(response.headers, Contains(Pair("etag", "\"v2\"")));
  EXPECT_THAT(response.headers, Not(Contains(Key("last-modified"))));
}

TEST_F(HttpTestServerTest, FileExtraHeadersAreSent) {
  server_->SetFile("/file", {.body = body_,
                             .headers = {{"X-Repo-Commit", "abc"},
                                         {"X-Linked-Size", "1000"}}});
  Response full = Fetch(*server_, "GET", "/file");
  EXPECT_EQ(full.status, 200);
  EXPECT_THAT(full.headers, Contains(Pair("x-repo-commit", "abc")));
  EXPECT_THAT(full.headers, Contains(Pair("x-linked-size", "1000")));
  // A range of a file with extra headers is still a range.
  Response part = Fetch(*server_, "GET", "/file", {"Range: bytes=0-9"});
  EXPECT_EQ(part.status, 206);
  EXPECT_EQ(part.body, body_.substr(0, 10));
  EXPECT_THAT(part.headers, Contains(Pair("x-repo-commit", "abc")));
}

TEST_F(HttpTestServerTest, FileWithOtherStatusIsSentAsItIs) {
  server_->SetFile("/api", {.body = R"({"error":"Repository not found"})",
                            .content_type = "application/json",
                            .status = 404,
                            .headers = {{"X-Error-Code", "RepoNotFound"}}});
  // Range is ignored and no body fault applies: this is an API answer.
  server_->SetBehavior("/api", {.drop_after_bytes = 3, .drop_count = 1});
  Response response = Fetch(*server_, "GET", "/api", {"Range: bytes=0-3"});
  EXPECT_EQ(response.status_line, "HTTP/1.1 404 Not Found");
  EXPECT_EQ(response.body, R"({"error":"Repository not found"})");
  EXPECT_FALSE(response.truncated);
  EXPECT_THAT(response.headers, Contains(Pair("x-error-code", "RepoNotFound")));
  EXPECT_THAT(response.headers,
              Contains(Pair("content-type", "application/json")));
  EXPECT_THAT(response.headers, Not(Contains(Key("accept-ranges"))));
  EXPECT_THAT(response.headers, Not(Contains(Key("content-range"))));

  server_->SetFile("/go", {.body = "Found.",
                           .status = 302,
                           .headers = {{"Location", "http://127.0.0.2:1/x"}}});
  Client client(*server_);
  ASSERT_TRUE(client.SendRequest("HEAD", "/go"));
  Response head = client.ReadResponse(/*head_only=*/true);
  EXPECT_EQ(head.status_line, "HTTP/1.1 302 Found");
  EXPECT_THAT(head.headers, Contains(Pair("location", "http://127.0.0.2:1/x")));
  EXPECT_THAT(head.headers, Contains(Pair("content-length", "6")));
  // The HEAD sent no body: the next answer parses cleanly.
  ASSERT_TRUE(client.SendRequest("GET", "/go"));
  EXPECT_EQ(client.ReadResponse().body, "Found.");
}

TEST_F(HttpTestServerTest, HandlerAnswersBeforeStoredFiles) {
  std::vector<HttpRequestRecord> seen;  // only the handler's thread writes
  Mutex seen_mu;
  server_->SetHandler([&](const HttpRequestRecord& request)
                          -> std::shared_ptr<const HttpTestFile> {
    {
      MutexLock lock(&seen_mu);
      seen.push_back(request);
    }
    if (request.target.rfind("/dynamic/", 0) != 0) return nullptr;
    return std::make_shared<const HttpTestFile>(HttpTestFile{
        .body = "dynamic " + request.target,
        .headers = {{"X-Seen-Auth",
                     request.headers.count("authorization") ? "yes" : "no"}}});
  });
  Response dynamic =
      Fetch(*server_, "GET", "/dynamic/a?q=1", {"Authorization: Bearer t"});
  EXPECT_EQ(dynamic.status, 200);
  EXPECT_EQ(dynamic.body, "dynamic /dynamic/a?q=1");
  EXPECT_THAT(dynamic.headers, Contains(Pair("x-seen-auth", "yes")));
  // nullptr falls back to the stored files, and to 404 without one.
  EXPECT_EQ(Fetch(*server_, "GET", "/file").body, body_);
  EXPECT_EQ(Fetch(*server_, "GET", "/missing").status, 404);
  // Handler answers take ranges like stored files.
  Response part = Fetch(*server_, "GET", "/dynamic/b", {"Range: bytes=8-"});
  EXPECT_EQ(part.status, 206);
  EXPECT_EQ(part.body, "/dynamic/b");
  // Other methods never reach the handler.
  EXPECT_EQ(Fetch(*server_, "DELETE", "/dynamic/a").status, 405);
  {
    MutexLock lock(&seen_mu);
    ASSERT_EQ(seen.size(), 4u);
    EXPECT_EQ(seen[0].method, "GET");
    EXPECT_EQ(seen[0].target, "/dynamic/a?q=1");
    EXPECT_THAT(seen[0].headers, Contains(Pair("authorization", "Bearer t")));
    EXPECT_EQ(seen[0].status, 0);
  }
  // The path's behaviour still applies on top of the handler.
  server_->SetBehavior("/dynamic/c", {.fail_statuses = {503}});
  EXPECT_EQ(Fetch(*server_, "GET", "/dynamic/c").status, 503);
  EXPECT_EQ(Fetch(*server_, "GET", "/dynamic/c").body, "dynamic /dynamic/c");
  // Removing the handler leaves the stored files.
  server_->SetHandler(nullptr);
  EXPECT_EQ(Fetch(*server_, "GET", "/dynamic/a").status, 404);
  EXPECT_EQ(server_->RequestsFor("/dynamic/a").size(), 3u);
}

TEST_F(HttpTestServerTest, OtherMethodsAre405) {
  Response response = Fetch(*server_, "DELETE", "/file");
  EXPECT_EQ(response.status_line, "HTTP/1.1 405 Method Not Allowed");
  EXPECT_THAT(response.headers, Contains(Pair("allow", "GET, HEAD")));
}

TEST_F(HttpTestServerTest, StreamsLargeBodies) {
  const std::string large = RandomBody(64 << 20, 9);
  server_->SetFile("/large", {.body = large});
  Response response = Fetch(*server_, "GET", "/large");
  EXPECT_EQ(response.status, 200);
  ASSERT_EQ(response.body.size(), large.size());
  EXPECT_TRUE(response.body == large);
}

TEST(HttpTestServerStartTest, SecondServerOnAnotherLoopbackAddress) {
  ASSERT_OK_AND_ASSIGN(auto other,
                       HttpTestServer::Start({.bind_address = "127.0.0.2"}));
  EXPECT_EQ(other->host_port(), absl::StrCat("127.0.0.2:", other->port()));
  EXPECT_EQ(other->Url("/x"),
            absl::StrCat("http://127.0.0.2:", other->port(), "/x"));
  other->SetFile("/x", {.body = "elsewhere"});
  Client client("127.0.0.2", other->port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.SendRequest("GET", "/x"));
  EXPECT_EQ(client.ReadResponse().body, "elsewhere");
}

TEST(HttpTestServerStartTest, RejectsAddressThatIsNotIpv4) {
  EXPECT_THAT(HttpTestServer::Start({.bind_address = "localhost"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("'localhost'")));
}

TEST(RandomBodyTest, IsDeterministicPerSeed) {
  EXPECT_EQ(RandomBody(333, 5), RandomBody(333, 5));
  EXPECT_NE(RandomBody(333, 5), RandomBody(333, 6));
  EXPECT_EQ(RandomBody(333, 5).substr(0, 100), RandomBody(100, 5));
  EXPECT_EQ(RandomBody(0, 5), "");
}

}  // namespace
}  // namespace mm::testing
