// A real HTTP/1.1 server on a loopback address for the downloader's tests,
// with per-path fault injection (error statuses, redirects, dropped, stalled,
// short, over-long and throttled bodies, ignored Range).
//
//   ASSERT_OK_AND_ASSIGN(auto server, HttpTestServer::Start());
//   server->SetFile("/model.bin", {.body = RandomBody(1 << 20, 7)});
//   server->SetBehavior("/model.bin", {.drop_after_bytes = 1000,
//                                      .drop_count = 1});
//   ... download server->Url("/model.bin") ...
//   EXPECT_EQ(server->RequestsFor("/model.bin").size(), 2);
//
// Lifecycle: Start() binds an ephemeral port and starts an accept thread;
// each accepted connection gets its own thread, which serves GET and HEAD
// requests with keep-alive until the client closes, sends
// `Connection: close`, or a fault ends the connection. Stop() (also run by
// the destructor) wakes every thread, even one stalled mid-body, closes
// every socket and joins every thread.
//
// Paths: files and behaviours are keyed by the path of the request target
// without its query ("/a?x=1" is served by SetFile("/a", ...)). Methods
// other than GET and HEAD get 405; a malformed request gets 400 and the
// connection is closed (it is not recorded).
//
// Dynamic answers: a handler set with SetHandler() is asked for the file of
// every GET or HEAD request before the stored files; it may answer any
// status with any headers (a fake API such as tests/testing/fake_hf_hub.h),
// and the behaviour of the path still applies on top of it.
//
// Thread-safety: every method may be called from any thread while the
// server runs; a request uses the file and behaviour current when it
// arrives.
#ifndef MM_TESTS_TESTING_HTTP_TEST_SERVER_H_
#define MM_TESTS_TESTING_HTTP_TEST_SERVER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mutex.h"

namespace mm::testing {

// What the server holds at one path.
struct HttpTestFile {
  std::string body;
  std::string etag;           // sent as ETag when not empty (quoted as given)
  std::string last_modified;  // sent as Last-Modified when not empty
  std::string content_type = "application/octet-stream";
  std::string content_disposition;  // raw header value when not empty
  // 200: served as a file (Range, If-Range, body faults). Anything else: the
  // status with `body` as it is (no Range, no Accept-Ranges, no body
  // faults), e.g. a 302 with a Location header or a 404 with a JSON error.
  int status = 200;
  // Extra response headers, sent as given after the server's own.
  std::vector<std::pair<std::string, std::string>> headers;
};

// Faults applied to one path. Counters ("the next N requests") start from
// the moment the behaviour is set. The order of checks is: status_override,
// redirect_to, fail_statuses, require_bearer, then the file itself (404 when
// there is none), Range and the body faults.
struct HttpBehavior {
  // false: ignore Range and If-Range, always 200 with the full body and no
  // Accept-Ranges header.
  bool accept_ranges = true;
  // true: no Content-Length; the body ends when the server closes the
  // connection (announced with `Connection: close`).
  bool omit_content_length = false;
  // Non-empty: answer redirect_status with `Location: <redirect_to>` (a path
  // or an absolute URL, sent as given).
  std::string redirect_to;
  int redirect_status = 302;
  // Non-empty: 401 unless the request has "Authorization: Bearer <this>".
  std::string require_bearer;
  // The next requests answer these statuses in order (e.g. {503, 429}), then
  // normal service resumes. Each request reaching this check uses one.
  std::vector<int> fail_statuses;
  // Retry-After value sent with every 429 or 503 answer when not empty.
  std::string retry_after;

  // Body faults. They apply only to the body of 200/206 answers to GET, and
  // the drop/stall counters count only those answers (a HEAD or a 404 does
  // not use one up).
  //
  // >= 0: send this many body bytes, then close the connection; for the
  // next drop_count answers.
  int64_t drop_after_bytes = -1;
  int drop_count = 0;
  // >= 0: send this many body bytes, then nothing for stall_for (use
  // absl::InfiniteDuration() for "until the client leaves or Stop()"), then
  // the rest; for the next stall_count answers.
  int64_t stall_after_bytes = -1;
  absl::Duration stall_for;
  int stall_count = 0;
  // Announce Content-Length as the true size of what is served, but send
  // size + length_delta bytes and close the connection: more bytes (filled
  // with 'X') when > 0, fewer when < 0. Applies to every answer while set.
  int64_t length_delta = 0;
  // > 0: send the body at about this rate.
  int64_t bytes_per_second = 0;
  // Non-zero: answer this status (e.g. 404 or 500) to every request.
  int status_override = 0;
};

// One request as the server saw it.
struct HttpRequestRecord {
  std::string method;
  std::string target;                          // path + query as received
  std::map<std::string, std::string> headers;  // names lowercased; repeated
                                               // headers joined with ", "
  int status = 0;  // what we answered (0 until decided)
  // Updated while the body is sent: the client may have read every byte
  // before the server thread records it, so it is final only once `done`.
  int64_t body_bytes_sent = 0;
  int connection_id = 0;  // same id = same TCP connection (from 1)
  bool done = false;      // the answer is fully sent, or was abandoned
};

// Decides the file for a GET or HEAD request (its method, target and
// headers are set; status is 0): nullptr to fall back to the stored files
// (404 when there is none). Runs on the connection's thread without the
// server's lock held, so it may take its own locks, but it must not call
// the server that runs it (Requests() and the waits would see a half-made
// record).
using HttpTestHandler = std::function<std::shared_ptr<const HttpTestFile>(
    const HttpRequestRecord&)>;

class HttpTestServer {
 public:
  struct Options {
    // IPv4 address to listen on; another loopback address such as
    // "127.0.0.2" makes a second server look like another host.
    std::string bind_address = "127.0.0.1";
  };

  // Listens on an ephemeral port of options.bind_address. INVALID_ARGUMENT
  // for an address that is not dotted IPv4, INTERNAL when a socket call
  // fails (with the errno text).
  static absl::StatusOr<std::unique_ptr<HttpTestServer>> Start(Options options);
  // With the default Options. (An overload, not a default argument: GCC
  // cannot default-construct a nested struct with member initializers
  // inside its enclosing class.)
  static absl::StatusOr<std::unique_ptr<HttpTestServer>> Start();

  ~HttpTestServer();
  HttpTestServer(const HttpTestServer&) = delete;
  HttpTestServer& operator=(const HttpTestServer&) = delete;

  // Closes every connection and joins every thread; idempotent. Requests()
  // and the other queries keep working afterwards.
  void Stop();

  int port() const { return port_; }
  std::string host_port() const;  // "127.0.0.1:PORT"
  // "http://127.0.0.1:PORT" + path.
  std::string Url(std::string_view path) const;

  // Serves `file` at `path`, replacing what was there.
  void SetFile(std::string path, HttpTestFile file);
  // Sets the faults for `path` and restarts its counters.
  void SetBehavior(std::string path, HttpBehavior behavior);
  // Replaces the handler (nullptr removes it). Requests already past the
  // point of asking keep the answer they got.
  void SetHandler(HttpTestHandler handler);

  // Every request so far, in arrival order.
  std::vector<HttpRequestRecord> Requests() const;
  // Those whose target's path (without the query) is `path`.
  std::vector<HttpRequestRecord> RequestsFor(std::string_view path) const;
  // TCP connections accepted so far.
  int ConnectionCount() const;
  // Connections open right now.
  int ActiveConnections() const;

  // Blocks until `n` requests for `path` have arrived; false on timeout.
  bool WaitForRequests(std::string_view path, int n, absl::Duration timeout);
  // Blocks until `n` requests for `path` are `done` (answered or abandoned),
  // so their records are final; false on timeout.
  bool WaitForDoneRequests(std::string_view path, int n,
                           absl::Duration timeout);
  // Blocks until at most `n` connections are open (e.g. 0: the client has
  // closed everything); false on timeout.
  bool WaitForActiveConnectionsAtMost(int n, absl::Duration timeout);

 private:
  // A behaviour with the state of its counters.
  struct PathFaults {
    HttpBehavior behavior;
    size_t fail_statuses_used = 0;
    int drops_used = 0;
    int stalls_used = 0;
  };
  // How one answer is to be sent, decided under mu_ when a request arrives.
  struct ResponsePlan;
  // A parsed request head.
  struct Request;

  HttpTestServer(Options options, int listen_fd, int port, int wake_read_fd,
                 int wake_write_fd);

  void AcceptLoop();
  void ServeConnection(int fd, int connection_id);
  // Joins connection threads that have finished.
  void JoinFinishedConnections();

  // Decides the answer to `request` and records it; returns the plan and
  // sets `*record_index` to its entry in requests_.
  ResponsePlan Plan(const Request& request, int connection_id,
                    size_t* record_index);
  // Sends the answer; false when the connection must be closed afterwards.
  bool Respond(int fd, const Request& request, const ResponsePlan& plan,
               size_t record_index);
  // Sends `plan`'s body with its faults; false when the connection must be
  // closed afterwards.
  bool SendBody(int fd, const ResponsePlan& plan, size_t record_index);

  // Sends all of `data` on non-blocking `fd`; false when the peer is gone
  // or the server is stopping.
  bool SendAll(int fd, std::string_view data);
  // Waits up to `timeout` for a reason to abandon `fd`: Stop(), or the peer
  // closing. True when there is one, false when the time passed.
  bool WaitForAbandon(int fd, absl::Duration timeout);
  bool Stopping() const;
  // Blocks until `n` records for `path` satisfy `wanted`.
  template <typename Predicate>
  bool WaitForRecords(std::string_view path, int n, Predicate wanted,
                      absl::Duration timeout);

  const Options options_;
  const int listen_fd_;
  const int port_;
  // A pipe whose read end becomes readable (forever) at Stop(); every wait
  // polls it, so no thread can block past Stop().
  const int wake_read_fd_;
  const int wake_write_fd_;
  std::thread accept_thread_;

  mutable Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // shared_ptr so that a request streams the body it started with, without
  // a copy, even if SetFile() replaces it meanwhile.
  std::map<std::string, std::shared_ptr<const HttpTestFile>> files_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, PathFaults> faults_ ABSL_GUARDED_BY(mu_);
  // shared_ptr so that a request can call it outside mu_ while another
  // thread replaces it.
  std::shared_ptr<const HttpTestHandler> handler_ ABSL_GUARDED_BY(mu_);
  std::vector<HttpRequestRecord> requests_ ABSL_GUARDED_BY(mu_);
  int connection_count_ ABSL_GUARDED_BY(mu_) = 0;
  int active_connections_ ABSL_GUARDED_BY(mu_) = 0;
  // Connection threads by connection id, running or finished-but-unjoined.
  std::map<int, std::thread> connection_threads_ ABSL_GUARDED_BY(mu_);
  // Ids whose thread has returned (or is about to) and may be joined.
  std::vector<int> finished_connections_ ABSL_GUARDED_BY(mu_);
};

// A deterministic pseudo-random body of `size` bytes: the same size and seed
// give the same bytes.
std::string RandomBody(size_t size, uint32_t seed);

}  // namespace mm::testing

#endif  // MM_TESTS_TESTING_HTTP_TEST_SERVER_H_
