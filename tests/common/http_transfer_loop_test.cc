// Tests for the transfer loop against a real HTTP server on loopback: what
// a handler sees, how each way of ending is reported, and the limits the
// loop enforces (connections per host, bandwidth, stalls, address policy).
#include "common/http/transfer_loop.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/http_test_server.h"
#include "tests/testing/status_matchers.h"

namespace mm::http {
namespace {

using ::mm::testing::HttpRequestRecord;
using ::mm::testing::HttpTestServer;
using ::mm::testing::RandomBody;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Key;
using ::testing::Not;
using ::testing::Pair;
using Kind = TransferResult::Kind;

// Long enough for a loaded machine, short enough that a hang fails.
constexpr absl::Duration kWait = absl::Seconds(20);

// Records everything a transfer reports; can stop the transfer at the
// response or the first body bytes. Callbacks arrive on the loop thread,
// the test reads from its own, hence the mutex.
class RecordingHandler : public TransferHandler {
 public:
  enum class StopAt { kNever, kResponse, kBody };
  explicit RecordingHandler(StopAt stop_at = StopAt::kNever)
      : stop_at_(stop_at) {}

  bool OnResponse(const ResponseHead& head) override {
    MutexLock lock(&mu_);
    head_ = head;
    ++responses_;
    return stop_at_ != StopAt::kResponse;
  }
  bool OnBody(const char* data, size_t size) override {
    MutexLock lock(&mu_);
    body_.append(data, size);
    return stop_at_ != StopAt::kBody;
  }
  void OnDone(const TransferResult& result) override {
    MutexLock lock(&mu_);
    result_ = result;
    ++done_calls_;
  }

  bool WaitDone(absl::Duration timeout = kWait) {
    MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_calls_ > 0; },
        timeout);
  }
  // Until at least `n` body bytes arrived.
  bool WaitForBody(size_t n, absl::Duration timeout = kWait) {
    MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(
               [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                 return body_.size() >= n || done_calls_ > 0;
               },
               timeout) &&
           body_.size() >= n;
  }

  bool done() const {
    MutexLock lock(&mu_);
    return done_calls_ > 0;
  }
  int done_calls() const {
    MutexLock lock(&mu_);
    return done_calls_;
  }
  int responses() const {
    MutexLock lock(&mu_);
    return responses_;
  }
  TransferResult result() const {
    MutexLock lock(&mu_);
    return result_;
  }
  ResponseHead head() const {
    MutexLock lock(&mu_);
    return head_;
  }
  std::string body() const {
    MutexLock lock(&mu_);
    return body_;
  }

 private:
  const StopAt stop_at_;
  mutable Mutex mu_;
  ResponseHead head_ ABSL_GUARDED_BY(mu_);
  std::string body_ ABSL_GUARDED_BY(mu_);
  TransferResult result_ ABSL_GUARDED_BY(mu_);
  int responses_ ABSL_GUARDED_BY(mu_) = 0;
  int done_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

std::string KindName(Kind kind) {
  switch (kind) {
    case Kind::kComplete:
      return "kComplete";
    case Kind::kStopped:
      return "kStopped";
    case Kind::kCancelled:
      return "kCancelled";
    case Kind::kStalled:
      return "kStalled";
    case Kind::kBlocked:
      return "kBlocked";
    case Kind::kNetwork:
      return "kNetwork";
    case Kind::kPermanent:
      return "kPermanent";
  }
  return "?";
}

MATCHER_P(HasKind, kind, "transfer ended with " + KindName(kind)) {
  *result_listener << "ended with " << KindName(arg.kind) << " (" << arg.message
                   << ")";
  return arg.kind == kind;
}

class TransferLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(server_, HttpTestServer::Start());
    loop_ = TransferLoop::Create({});
  }

  Request Get(std::string_view path) const {
    Request request;
    request.url = server_->Url(path);
    return request;
  }

  // Starts `request` and waits for its end.
  std::shared_ptr<RecordingHandler> Run(
      Request request,
      RecordingHandler::StopAt stop_at = RecordingHandler::StopAt::kNever) {
    auto handler = std::make_shared<RecordingHandler>(stop_at);
    loop_->Start(std::move(request), handler);
    EXPECT_TRUE(handler->WaitDone()) << "the transfer did not end";
    return handler;
  }

  // Declared first so it outlives the loop (destroyed in reverse order):
  // the loop's shutdown may still talk to it.
  std::unique_ptr<HttpTestServer> server_;
  std::unique_ptr<TransferLoop> loop_;
};

TEST_F(TransferLoopTest, GetDeliversHeadAndBody) {
  const std::string body = RandomBody(300 * 1024, 1);
  server_->SetFile(
      "/model.bin",
      {.body = body, .etag = "\"abc\"", .content_type = "Application/X-Test"});
  auto handler = Run(Get("/model.bin"));

  TransferResult result = handler->result();
  EXPECT_THAT(result, HasKind(Kind::kComplete));
  EXPECT_EQ(result.http_status, 200);
  EXPECT_EQ(result.body_bytes, static_cast<int64_t>(body.size()));
  EXPECT_FALSE(result.Retryable());
  EXPECT_TRUE(handler->body() == body) << "the body differs";
  EXPECT_EQ(handler->responses(), 1);

  ResponseHead head = handler->head();
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.effective_url, server_->Url("/model.bin"));
  EXPECT_EQ(head.ContentLength(), static_cast<int64_t>(body.size()));
  EXPECT_EQ(head.Header("etag"), "\"abc\"");
  EXPECT_EQ(head.Header("content-type"), "Application/X-Test");
  EXPECT_EQ(head.Header("accept-ranges"), "bytes");
  EXPECT_EQ(head.Header("x-not-sent"), "");
  for (const auto& [name, value] : head.headers) {
    EXPECT_TRUE(std::none_of(name.begin(), name.end(), [](char c) {
      return std::isupper(c);
    })) << name;
  }

  std::vector<HttpRequestRecord> requests = server_->RequestsFor("/model.bin");
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "GET");
  EXPECT_THAT(requests[0].headers,
              Contains(Pair("user-agent", "mm-downloader")));
  EXPECT_THAT(requests[0].headers,
              Contains(Pair("accept-encoding", "identity")));
  EXPECT_THAT(requests[0].headers, Not(Contains(Key("range"))));
  EXPECT_THAT(requests[0].headers, Not(Contains(Key("authorization"))));
}

TEST_F(TransferLoopTest, ContentLengthIsMinusOneWhenAbsent) {
  ResponseHead head;
  EXPECT_EQ(head.ContentLength(), -1);
  head.headers["content-length"] = "12x";
  EXPECT_EQ(head.ContentLength(), -1);
  head.headers["content-length"] = "-3";
  EXPECT_EQ(head.ContentLength(), -1);
  head.headers["content-length"] = "42";
  EXPECT_EQ(head.ContentLength(), 42);
}

TEST_F(TransferLoopTest, HeadRequestHasNoBody) {
  server_->SetFile("/m.bin", {.body = RandomBody(5000, 2)});
  Request request = Get("/m.bin");
  request.head = true;
  auto handler = Run(request);
  EXPECT_THAT(handler->result(), HasKind(Kind::kComplete));
  EXPECT_EQ(handler->head().ContentLength(), 5000);
  EXPECT_EQ(handler->body(), "");
  ASSERT_EQ(server_->RequestsFor("/m.bin").size(), 1u);
  EXPECT_EQ(server_->RequestsFor("/m.bin")[0].method, "HEAD");
}

TEST_F(TransferLoopTest, RangeRequestSendsRangeAndIfRange) {
  const std::string body = RandomBody(1000, 3);
  server_->SetFile("/m.bin", {.body = body, .etag = "\"v1\""});
  Request request = Get("/m.bin");
  request.range_begin = 10;
  request.range_end = 19;
  request.if_range = "\"v1\"";
  auto handler = Run(request);

  EXPECT_THAT(handler->result(), HasKind(Kind::kComplete));
  EXPECT_EQ(handler->result().http_status, 206);
  EXPECT_EQ(handler->body(), body.substr(10, 10));
  EXPECT_EQ(handler->head().Header("content-range"), "bytes 10-19/1000");
  std::vector<HttpRequestRecord> requests = server_->RequestsFor("/m.bin");
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_THAT(requests[0].headers, Contains(Pair("range", "bytes=10-19")));
  EXPECT_THAT(requests[0].headers, Contains(Pair("if-range", "\"v1\"")));
}

TEST_F(TransferLoopTest, OpenRangeAndChangedValidator) {
  const std::string body = RandomBody(1000, 4);
  server_->SetFile("/m.bin", {.body = body, .etag = "\"v2\""});

  Request open = Get("/m.bin");
  open.range_begin = 900;
  auto tail = Run(open);
  EXPECT_EQ(tail->result().http_status, 206);
  EXPECT_EQ(tail->body(), body.substr(900));

  // The file changed since: the server sends all of it with 200.
  Request stale = Get("/m.bin");
  stale.range_begin = 100;
  stale.range_end = 199;
  stale.if_range = "\"v1\"";
  auto whole = Run(stale);
  EXPECT_EQ(whole->result().http_status, 200);
  EXPECT_TRUE(whole->body() == body);

  std::vector<HttpRequestRecord> requests = server_->RequestsFor("/m.bin");
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_THAT(requests[0].headers, Contains(Pair("range", "bytes=900-")));
  EXPECT_THAT(requests[0].headers, Not(Contains(Key("if-range"))));
  EXPECT_THAT(requests[1].headers, Contains(Pair("if-range", "\"v1\"")));
}

TEST_F(TransferLoopTest, NotFoundIsACompleteTransferWithItsStatus) {
  auto handler = Run(Get("/missing"));
  TransferResult result = handler->result();
  EXPECT_THAT(result, HasKind(Kind::kComplete));
  EXPECT_EQ(result.http_status, 404);
  EXPECT_FALSE(result.Retryable());
  EXPECT_EQ(handler->head().status, 404);
}

TEST_F(TransferLoopTest, HandlerRefusingTheResponseStops) {
  server_->SetFile("/m.bin", {.body = RandomBody(100000, 5)});
  auto handler = Run(Get("/m.bin"), RecordingHandler::StopAt::kResponse);
  TransferResult result = handler->result();
  EXPECT_THAT(result, HasKind(Kind::kStopped));
  EXPECT_EQ(result.http_status, 200);
  EXPECT_FALSE(result.Retryable());
  EXPECT_EQ(handler->body(), "");
  EXPECT_EQ(handler->done_calls(), 1);
}

TEST_F(TransferLoopTest, HandlerRefusingTheBodyStops) {
  server_->SetFile("/m.bin", {.body = RandomBody(4 << 20, 6)});
  auto handler = Run(Get("/m.bin"), RecordingHandler::StopAt::kBody);
  TransferResult result = handler->result();
  EXPECT_THAT(result, HasKind(Kind::kStopped));
  EXPECT_EQ(result.http_status, 200);
  // Nothing was delivered after the refused chunk.
  EXPECT_LT(handler->body().size(), size_t{4} << 20);
}

TEST_F(TransferLoopTest, CancelEndsARunningTransfer) {
  server_->SetFile("/m.bin", {.body = RandomBody(100000, 7)});
  server_->SetBehavior("/m.bin", {.stall_after_bytes = 1000,
                                  .stall_for = absl::InfiniteDuration(),
                                  .stall_count = 1});
  Request request = Get("/m.bin");
  request.stall_timeout = absl::ZeroDuration();  // wait forever
  auto handler = std::make_shared<RecordingHandler>();
  TransferId id = loop_->Start(request, handler);
  ASSERT_TRUE(handler->WaitForBody(1000));
  EXPECT_FALSE(handler->done());
  EXPECT_EQ(loop_->ActiveTransfers(), 1);

  loop_->Cancel(id);
  ASSERT_TRUE(handler->WaitDone());
  TransferResult result = handler->result();
  EXPECT_THAT(result, HasKind(Kind::kCancelled));
  EXPECT_EQ(result.message, "cancelled");
  EXPECT_EQ(result.body_bytes, 1000);
  EXPECT_FALSE(result.Retryable());
  EXPECT_EQ(loop_->ActiveTransfers(), 0);

  // Cancelling again, or an id that never existed, changes nothing.
  loop_->Cancel(id);
  loop_->Cancel(id + 1000);
  loop_.reset();
  EXPECT_EQ(handler->done_calls(), 1);
}

TEST_F(TransferLoopTest, AddressPolicyBlocksTheConnection) {
  server_->SetFile("/m.bin", {.body = "secret"});
  Request request = Get("/m.bin");
  request.address_policy = std::make_shared<const AddressPolicy>();
  auto handler = Run(request);
  TransferResult result = handler->result();
  EXPECT_THAT(result, HasKind(Kind::kBlocked));
  EXPECT_THAT(result.message,
              AllOf(HasSubstr("127.0.0.1"), HasSubstr("loopback")));
  EXPECT_EQ(result.http_status, 0);
  EXPECT_FALSE(result.Retryable());
  EXPECT_EQ(handler->responses(), 0);
  EXPECT_EQ(handler->body(), "");
  EXPECT_TRUE(server_->Requests().empty());
}

TEST_F(TransferLoopTest, AddressPolicyAllowListLetsTheConnectionThrough) {
  server_->SetFile("/m.bin", {.body = "allowed"});
  auto policy = std::make_shared<AddressPolicy>();
  ASSERT_OK(policy->Allow("127.0.0.1/32"));
  Request request = Get("/m.bin");
  request.address_policy = policy;
  auto handler = Run(request);
  EXPECT_THAT(handler->result(), HasKind(Kind::kComplete));
  EXPECT_EQ(handler->body(), "allowed");
}

TEST_F(TransferLoopTest, RedirectToAnotherHostDropsTheBearerToken) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HttpTestServer> other,
                       HttpTestServer::Start({.bind_address = "127.0.0.2"}));
  const std::string body = RandomBody(20000, 8);
  other->SetFile("/f.bin", {.body = body});
  server_->SetBehavior("/r", {.redirect_to = other->Url("/f.bin")});

  Request request = Get("/r");
  request.bearer_token = "secret-token";
  auto handler = Run(request);

  EXPECT_THAT(handler->result(), HasKind(Kind::kComplete));
  EXPECT_EQ(handler->result().http_status, 200);
  EXPECT_TRUE(handler->body() == body);
  EXPECT_EQ(handler->head().effective_url, other->Url("/f.bin"));
  EXPECT_EQ(handler->responses(), 1) << "the redirect itself is not reported";

  std::vector<HttpRequestRecord> first = server_->RequestsFor("/r");
  ASSERT_EQ(first.size(), 1u);
  EXPECT_THAT(first[0].headers,
              Contains(Pair("authorization", "Bearer secret-token")));
  std::vector<HttpRequestRecord> second = other->RequestsFor("/f.bin");
  ASSERT_EQ(second.size(), 1u);
  EXPECT_THAT(second[0].headers, Not(Contains(Key("authorization"))));
}

TEST_F(TransferLoopTest, RedirectToAnotherPortDropsTheBearerToken) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HttpTestServer> other,
                       HttpTestServer::Start());
  other->SetFile("/f.bin", {.body = "elsewhere"});
  server_->SetBehavior("/r", {.redirect_to = other->Url("/f.bin")});
  Request request = Get("/r");
  request.bearer_token = "secret-token";
  auto handler = Run(request);
  EXPECT_EQ(handler->body(), "elsewhere");
  std::vector<HttpRequestRecord> second = other->RequestsFor("/f.bin");
  ASSERT_EQ(second.size(), 1u);
  EXPECT_THAT(second[0].headers, Not(Contains(Key("authorization"))));
}

TEST_F(TransferLoopTest, SameHostRedirectKeepsTheBearerToken) {
  server_->SetFile("/f.bin", {.body = "here"});
  server_->SetBehavior("/f.bin", {.require_bearer = "secret-token"});
  server_->SetBehavior("/r", {.redirect_to = "/f.bin", .redirect_status = 307});
  Request request = Get("/r");
  request.bearer_token = "secret-token";
  auto handler = Run(request);
  EXPECT_THAT(handler->result(), HasKind(Kind::kComplete));
  EXPECT_EQ(handler->result().http_status, 200);
  EXPECT_EQ(handler->body(), "here");
  EXPECT_EQ(handler->head().effective_url, server_->Url("/f.bin"));
  std::vector<HttpRequestRecord> target = server_->RequestsFor("/f.bin");
  ASSERT_EQ(target.size(), 1u);
  EXPECT_THAT(target[0].headers,
              Contains(Pair("authorization", "Bearer secret-token")));
}

TEST_F(TransferLoopTest, AddressPolicyAppliesToRedirectTargets) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HttpTestServer> other,
                       HttpTestServer::Start({.bind_address = "127.0.0.2"}));
  other->SetFile("/f.bin", {.body = "internal"});
  server_->SetBehavior("/r", {.redirect_to = other->Url("/f.bin")});
  auto policy = std::make_shared<AddressPolicy>();
  ASSERT_OK(policy->Allow("127.0.0.1/32"));
  Request request = Get("/r");
  request.address_policy = policy;
  auto handler = Run(request);
  EXPECT_THAT(handler->result(), HasKind(Kind::kBlocked));
  EXPECT_THAT(handler->result().message, HasSubstr("127.0.0.2"));
  EXPECT_EQ(server_->RequestsFor("/r").size(), 1u);
  EXPECT_TRUE(other->Requests().empty());
}

TEST_F(TransferLoopTest, StallIsDetectedQuickly) {
  server_->SetFile("/m.bin", {.body = RandomBody(100000, 9)});
  server_->SetBehavior("/m.bin", {.stall_after_bytes = 1000,
                                  .stall_for = absl::InfiniteDuration(),
                                  .stall_count = 1});
  Request request = Get("/m.bin");
  request.stall_timeout = absl::Milliseconds(300);
  absl::Time start = absl::Now();
  auto handler = Run(request);
  absl::Duration elapsed = absl::Now() - start;

  TransferResult result = handler->result();
  EXPECT_THAT(result, HasKind(Kind::kStalled));
  EXPECT_TRUE(result.Retryable());
  EXPECT_EQ(result.body_bytes, 1000);
  EXPECT_EQ(result.http_status, 200);
  EXPECT_THAT(result.message, HasSubstr("no data received for"));
  EXPECT_LT(elapsed, absl::Seconds(3));
}

TEST_F(TransferLoopTest, StallDetectionRunsOnTheLoopsClock) {
  // A stall of 30 s on a fake clock: it ends when the test moves the clock,
  // not after 30 real seconds.
  testing::FakeClock clock;
  std::unique_ptr<TransferLoop> loop = TransferLoop::Create({.clock = &clock});
  server_->SetFile("/m.bin", {.body = RandomBody(100000, 9)});
  server_->SetBehavior("/m.bin", {.stall_after_bytes = 1000,
                                  .stall_for = absl::InfiniteDuration(),
                                  .stall_count = 1});
  Request request = Get("/m.bin");
  request.stall_timeout = absl::Seconds(30);
  auto handler =
      std::make_shared<RecordingHandler>(RecordingHandler::StopAt::kNever);
  loop->Start(std::move(request), handler);
  ASSERT_TRUE(handler->WaitForBody(1000));
  clock.Advance(absl::Seconds(29));
  EXPECT_FALSE(handler->WaitDone(absl::Milliseconds(300)));
  // Past the timeout: the loop may stamp its last byte's arrival after the
  // test saw the byte (and so after an advance), hence a few steps, each
  // longer than the timeout.
  bool done = false;
  for (int step = 0; step < 10 && !done; ++step) {
    clock.Advance(absl::Seconds(31));
    done = handler->WaitDone(absl::Seconds(2));
  }
  ASSERT_TRUE(done);
  EXPECT_THAT(handler->result(), HasKind(Kind::kStalled));
  EXPECT_EQ(handler->result().body_bytes, 1000);
}

TEST_F(TransferLoopTest, DroppedConnectionIsARetryableNetworkError) {
  server_->SetFile("/m.bin", {.body = RandomBody(100000, 10)});
  server_->SetBehavior("/m.bin", {.drop_after_bytes = 1000, .drop_count = 1});
  auto handler = Run(Get("/m.bin"));
  TransferResult result = handler->result();
  EXPECT_THAT(result, HasKind(Kind::kNetwork));
  EXPECT_TRUE(result.Retryable());
  EXPECT_EQ(result.http_status, 200);
  EXPECT_EQ(result.body_bytes, 1000);
  EXPECT_FALSE(result.message.empty());
}

TEST_F(TransferLoopTest, ConnectionRefusedIsANetworkError) {
  // A bound socket that never listens: its port refuses connections, and
  // no other process can take it meanwhile.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)),
            0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length),
            0);
  Request request;
  request.url =
      "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/m.bin";
  auto handler = Run(request);
  ::close(fd);

  TransferResult result = handler->result();
  EXPECT_THAT(result, HasKind(Kind::kNetwork));
  EXPECT_TRUE(result.Retryable());
  EXPECT_EQ(result.http_status, 0);
  EXPECT_FALSE(result.message.empty());
}

TEST_F(TransferLoopTest, HostConnectionLimitHolds) {
  loop_ = TransferLoop::Create({.max_host_connections = 2});
  const std::string body = RandomBody(32 * 1024, 11);
  server_->SetFile("/m.bin", {.body = body});
  // Slow bodies keep the transfers overlapping for about 1.5 s.
  server_->SetBehavior("/m.bin", {.bytes_per_second = 64 * 1024});

  std::vector<std::shared_ptr<RecordingHandler>> handlers;
  for (int i = 0; i < 6; ++i) {
    handlers.push_back(std::make_shared<RecordingHandler>());
    loop_->Start(Get("/m.bin"), handlers.back());
  }
  int most_open = 0;
  absl::Time deadline = absl::Now() + kWait;
  auto all_done = [&] {
    return std::all_of(handlers.begin(), handlers.end(),
                       [](const auto& h) { return h->done(); });
  };
  while (!all_done() && absl::Now() < deadline) {
    most_open = std::max(most_open, server_->ActiveConnections());
    absl::SleepFor(absl::Milliseconds(1));  // sampling, not ordering
  }
  ASSERT_TRUE(all_done());
  EXPECT_LE(most_open, 2);
  EXPECT_GE(most_open, 1);
  for (const auto& handler : handlers) {
    EXPECT_THAT(handler->result(), HasKind(Kind::kComplete));
    EXPECT_TRUE(handler->body() == body);
  }
  EXPECT_EQ(server_->RequestsFor("/m.bin").size(), 6u);
}

TEST_F(TransferLoopTest, BandwidthLimitIsSharedByAllTransfers) {
  constexpr int64_t kLimit = 512 * 1024;
  loop_ = TransferLoop::Create({.max_bytes_per_second = kLimit});
  const std::string a = RandomBody(256 * 1024, 12);
  const std::string b = RandomBody(256 * 1024, 13);
  server_->SetFile("/a.bin", {.body = a});
  server_->SetFile("/b.bin", {.body = b});

  absl::Time start = absl::Now();
  auto first = std::make_shared<RecordingHandler>();
  auto second = std::make_shared<RecordingHandler>();
  loop_->Start(Get("/a.bin"), first);
  loop_->Start(Get("/b.bin"), second);
  ASSERT_TRUE(first->WaitDone());
  ASSERT_TRUE(second->WaitDone());
  absl::Duration elapsed = absl::Now() - start;

  EXPECT_THAT(first->result(), HasKind(Kind::kComplete));
  EXPECT_THAT(second->result(), HasKind(Kind::kComplete));
  EXPECT_TRUE(first->body() == a);
  EXPECT_TRUE(second->body() == b);
  // 512 KiB at 512 KiB/s, less the allowed burst (64 KiB): about 0.875 s.
  EXPECT_GE(elapsed, absl::Milliseconds(800));
}

TEST_F(TransferLoopTest, DestroyingTheLoopCancelsEveryTransfer) {
  server_->SetFile("/m.bin", {.body = RandomBody(100000, 14)});
  server_->SetBehavior("/m.bin", {.stall_after_bytes = 100,
                                  .stall_for = absl::InfiniteDuration(),
                                  .stall_count = 4});
  Request request = Get("/m.bin");
  request.stall_timeout = absl::ZeroDuration();
  std::vector<std::shared_ptr<RecordingHandler>> handlers;
  for (int i = 0; i < 3; ++i) {
    handlers.push_back(std::make_shared<RecordingHandler>());
    loop_->Start(request, handlers.back());
  }
  for (const auto& handler : handlers) ASSERT_TRUE(handler->WaitForBody(100));
  // One more that may not have reached the loop thread yet.
  handlers.push_back(std::make_shared<RecordingHandler>());
  loop_->Start(request, handlers.back());
  EXPECT_EQ(loop_->ActiveTransfers(), 4);

  loop_.reset();
  for (const auto& handler : handlers) {
    EXPECT_EQ(handler->done_calls(), 1);
    EXPECT_THAT(handler->result(), HasKind(Kind::kCancelled));
  }
}

TEST_F(TransferLoopTest, ManySmallTransfersAllComplete) {
  constexpr int kTransfers = 200;
  for (int i = 0; i < 10; ++i) {
    server_->SetFile("/f" + std::to_string(i),
                     {.body = RandomBody(1000 + i, 100 + i)});
  }
  std::vector<std::shared_ptr<RecordingHandler>> handlers;
  for (int i = 0; i < kTransfers; ++i) {
    handlers.push_back(std::make_shared<RecordingHandler>());
    loop_->Start(Get("/f" + std::to_string(i % 10)), handlers.back());
  }
  for (int i = 0; i < kTransfers; ++i) {
    ASSERT_TRUE(handlers[i]->WaitDone(absl::Seconds(60))) << i;
    EXPECT_THAT(handlers[i]->result(), HasKind(Kind::kComplete)) << i;
    EXPECT_TRUE(handlers[i]->body() == RandomBody(1000 + i % 10, 100 + i % 10))
        << i;
  }
  EXPECT_EQ(loop_->ActiveTransfers(), 0);
  EXPECT_EQ(server_->Requests().size(), static_cast<size_t>(kTransfers));
  loop_.reset();
  for (const auto& handler : handlers) EXPECT_EQ(handler->done_calls(), 1);
}

}  // namespace
}  // namespace mm::http
