// The metrics endpoint on loopback, spoken to over plain sockets so that
// the test sees exactly the bytes a scraper would.
#include "common/metrics/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace mm::metrics {
namespace {

using ::mm::testing::StatusIs;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A connected client socket with a receive deadline, so that a test never
// waits forever on a server that misbehaves.
class Client {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval timeout{.tv_sec = 10, .tv_usec = 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address),
                           sizeof(address)) == 0;
  }
  ~Client() { ::close(fd_); }

  bool connected() const { return connected_; }

  bool Send(const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      ssize_t n =
          ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += n;
    }
    return true;
  }

  // Everything until the server closes; "TIMEOUT" appended when the 10 s
  // receive deadline passed first, "ERROR <errno>" on another failure.
  std::string ReadAll() {
    std::string data;
    char buffer[4096];
    while (true) {
      ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n == 0) return data;
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return data + "TIMEOUT";
        return data + "ERROR " + std::to_string(errno);
      }
      data.append(buffer, n);
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

std::string Get(int port, const std::string& request) {
  Client client(port);
  if (!client.connected() || !client.Send(request)) return "connect failed";
  return client.ReadAll();
}

class MetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.AddCounter("mm_test_total", "A test counter", {"kind"})
        ->WithLabels({"a\"b"})
        ->Increment(3);
  }

  std::unique_ptr<MetricsServer> StartServer(MetricsServerOptions options) {
    options.listen = "127.0.0.1:0";
    auto server = MetricsServer::Start(options, &registry_,
                                       [this] { return healthy_.load(); });
    EXPECT_OK(server.status());
    return server.ok() ? std::move(*server) : nullptr;
  }

  Registry registry_;
  std::atomic<bool> healthy_{false};
};

TEST_F(MetricsServerTest, ServesTheExposition) {
  auto server = StartServer({});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->address(), "127.0.0.1:" + std::to_string(server->port()));
  std::string response =
      Get(server->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(response, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(response, HasSubstr("Content-Type: text/plain; version=0.0.4; "
                                  "charset=utf-8\r\n"));
  EXPECT_THAT(response, HasSubstr("Connection: close\r\n"));
  EXPECT_THAT(response, EndsWith("\r\n\r\n" + registry_.Render()));
  EXPECT_THAT(response, HasSubstr("mm_test_total{kind=\"a\\\"b\"} 3\n"));
}

TEST_F(MetricsServerTest, HealthzFollowsTheHealthState) {
  auto server = StartServer({});
  ASSERT_NE(server, nullptr);
  std::string request = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  std::string response = Get(server->port(), request);
  EXPECT_THAT(response, StartsWith("HTTP/1.1 503 Service Unavailable\r\n"));
  EXPECT_THAT(response, EndsWith("\r\n\r\nNOT_SERVING\n"));
  healthy_ = true;
  response = Get(server->port(), request);
  EXPECT_THAT(response, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(response, EndsWith("\r\n\r\nSERVING\n"));
  // HEAD: the same status line and headers, no body.
  response = Get(server->port(), "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(response, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(response, HasSubstr("Content-Length: 8\r\n"));
  EXPECT_THAT(response, EndsWith("\r\n\r\n"));
}

TEST_F(MetricsServerTest, UnknownPathsAndMethodsAreRefused) {
  auto server = StartServer({});
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(Get(server->port(), "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"),
              StartsWith("HTTP/1.1 404 Not Found\r\n"));
  std::string response =
      Get(server->port(),
          "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
  EXPECT_THAT(response, StartsWith("HTTP/1.1 405 Method Not Allowed\r\n"));
  EXPECT_THAT(response, HasSubstr("Allow: GET, HEAD\r\n"));
  // A query string does not change the path.
  EXPECT_THAT(
      Get(server->port(), "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
      StartsWith("HTTP/1.1 200 OK\r\n"));
  // Not HTTP at all: closed without an answer.
  EXPECT_EQ(Get(server->port(), "hello\r\n\r\n"), "");
}

TEST_F(MetricsServerTest, OversizedRequestsAreRefused) {
  MetricsServerOptions options;
  options.max_request_bytes = 1024;
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  std::string huge_header =
      "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(4096, 'a') +
      "\r\n\r\n";
  EXPECT_THAT(Get(server->port(), huge_header),
              StartsWith("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
  std::string huge_body =
      "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n" +
      std::string(4096, 'b');
  EXPECT_THAT(Get(server->port(), huge_body),
              StartsWith("HTTP/1.1 413 Payload Too Large\r\n"));
  // The server still answers afterwards.
  EXPECT_THAT(Get(server->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
              StartsWith("HTTP/1.1 200 OK\r\n"));
}

TEST_F(MetricsServerTest, ASilentClientIsClosedAfterTheTimeout) {
  MetricsServerOptions options;
  options.io_timeout = absl::Milliseconds(200);
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  Client silent(server->port());
  ASSERT_TRUE(silent.connected());
  Client half(server->port());
  ASSERT_TRUE(half.connected());
  ASSERT_TRUE(half.Send("GET /metrics HTTP/1.1\r\n"));
  // Both are closed by the server (well before the client's own 10 s
  // receive deadline, which would read as "TIMEOUT").
  EXPECT_EQ(silent.ReadAll(), "");
  EXPECT_EQ(half.ReadAll(), "");
  // Meanwhile and afterwards, others are served.
  EXPECT_THAT(Get(server->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
              StartsWith("HTTP/1.1 503"));
}

TEST_F(MetricsServerTest, StopClosesOpenConnectionsAndTheListener) {
  auto server = StartServer({});
  ASSERT_NE(server, nullptr);
  int port = server->port();
  Client waiting(port);
  ASSERT_TRUE(waiting.connected());
  server->Stop();
  server->Stop();  // idempotent
  std::string rest = waiting.ReadAll();
  EXPECT_TRUE(rest.empty() || rest.starts_with("ERROR")) << rest;
  Client late(port);
  EXPECT_FALSE(late.connected());
}

TEST_F(MetricsServerTest, ConcurrentScrapesWhileCountersChange) {
  auto server = StartServer({});
  ASSERT_NE(server, nullptr);
  Counter* counter =
      registry_.AddCounter("mm_busy_total", "Busy")->WithLabels({});
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    while (!stop) counter->Increment();
  });
  std::vector<std::thread> scrapers;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    scrapers.emplace_back([&] {
      for (int j = 0; j < 5; ++j) {
        if (Get(server->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .starts_with("HTTP/1.1 200 OK")) {
          ++ok;
        }
      }
    });
  }
  for (auto& scraper : scrapers) scraper.join();
  stop = true;
  writer.join();
  EXPECT_EQ(ok.load(), 20);
}

TEST(MetricsServerStartTest, RejectsBadAddressesAndBusyPorts) {
  Registry registry;
  EXPECT_THAT(
      MetricsServer::Start({.listen = "9090"}, &registry, nullptr).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "--metrics-listen must be HOST:PORT, got '9090'"));
  EXPECT_THAT(
      MetricsServer::Start({.listen = "127.0.0.1:70000"}, &registry, nullptr)
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "--metrics-listen must be HOST:PORT, got '127.0.0.1:70000'"));
  auto first =
      MetricsServer::Start({.listen = "127.0.0.1:0"}, &registry, nullptr);
  ASSERT_OK(first.status());
  std::string busy = (*first)->address();
  EXPECT_THAT(
      MetricsServer::Start({.listen = busy}, &registry, nullptr).status(),
      StatusIs(absl::StatusCode::kUnavailable,
               HasSubstr("--metrics-listen " + busy + ": cannot bind: ")));
}

}  // namespace
}  // namespace mm::metrics
