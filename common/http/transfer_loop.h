// HTTP transfers on one libcurl multi handle driven by one thread: many
// concurrent downloads (segments of one file, files of a repo) without a
// thread per connection, a cap on connections per host, a global bandwidth
// limit shared by every transfer, stall detection, and the address policy
// (SSRF guard) applied to every connection, redirects included.
//
// Bodies stream through the handler as they arrive; nothing is buffered
// beyond libcurl's receive buffer, so memory does not grow with file sizes.
//
//   auto loop = TransferLoop::Create({.max_host_connections = 16});
//   TransferId id = loop->Start(request, handler);
//   ...                       // handler->OnDone runs once, on the loop thread
//   loop->Cancel(id);         // optional; OnDone(kCancelled) follows
//
// Every request uses HTTP/1.1, so concurrent transfers to one host use
// separate TCP connections (no multiplexing), which is what makes segmented
// downloads faster than one stream.
//
// Thread-safety: Start, Cancel and SetBandwidthLimit may be called from any
// thread, including from handler callbacks. Handler callbacks run on the
// loop thread, one at a time; they must not block.
#ifndef MM_COMMON_HTTP_TRANSFER_LOOP_H_
#define MM_COMMON_HTTP_TRANSFER_LOOP_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/http/address_policy.h"

namespace mm::http {

struct Request {
  // http:// or https:// only (redirects too).
  std::string url;
  // With range_begin >= 0: "Range: bytes=begin-end" (end inclusive; -1 for
  // an open range).
  int64_t range_begin = -1;
  int64_t range_end = -1;
  // "If-Range: <this>" with a range: the server sends the whole file (200)
  // if its validator changed.
  std::string if_range;
  // "Authorization: Bearer <token>", sent to the URL's own host only: libcurl
  // drops it when a redirect leads to another host, port or scheme.
  std::string bearer_token;
  bool head = false;
  int max_redirects = 10;
  // Checked on every connection attempt; nullptr allows every address.
  std::shared_ptr<const AddressPolicy> address_policy;
  absl::Duration connect_timeout = absl::Seconds(30);
  // Nothing received (connecting, headers or body) for this long: the
  // transfer ends with kStalled. Zero disables the check.
  absl::Duration stall_timeout = absl::Seconds(30);
  std::string user_agent = "mm-downloader";
};

// The final response (after redirects) as its headers arrived.
struct ResponseHead {
  int status = 0;
  // Where the response came from (the last redirect target).
  std::string effective_url;
  // Header names lowercased; a repeated header keeps its last value.
  std::map<std::string, std::string> headers;

  // The header's value, or "" when absent.
  std::string Header(std::string_view lowercase_name) const;
  // Content-Length, or -1 when absent or malformed.
  int64_t ContentLength() const;
};

struct TransferResult {
  enum class Kind {
    kComplete,   // the body arrived in full (any status)
    kStopped,    // the handler returned false
    kCancelled,  // Cancel() or the loop shut down
    kStalled,    // no data for stall_timeout
    kBlocked,    // the address policy refused a connection
    kNetwork,    // connection refused/reset, DNS, truncated body, ...
    kPermanent,  // TLS verification, bad URL, too many redirects, ...
  };
  Kind kind = Kind::kComplete;
  // Human-readable detail for anything but kComplete.
  std::string message;
  // The final response's status; 0 when no response arrived.
  int http_status = 0;
  int64_t body_bytes = 0;

  // Whether trying again may help (kStalled, kNetwork).
  bool Retryable() const {
    return kind == Kind::kStalled || kind == Kind::kNetwork;
  }
};

// What a transfer reports to. All calls happen on the loop thread.
class TransferHandler {
 public:
  virtual ~TransferHandler() = default;
  // The final response's headers, before any of its body. Return false to
  // stop the transfer (it ends with kStopped).
  virtual bool OnResponse(const ResponseHead& head) = 0;
  // Body bytes in order. Return false to stop the transfer (kStopped).
  virtual bool OnBody(const char* data, size_t size) = 0;
  // Exactly once, last.
  virtual void OnDone(const TransferResult& result) = 0;
};

using TransferId = uint64_t;

class TransferLoop {
 public:
  struct Options {
    // Connections per host at most (0 = unlimited); transfers beyond wait
    // inside libcurl for a free connection.
    int max_host_connections = 0;
    // Shared by every transfer (bytes/s); 0 = unlimited.
    int64_t max_bytes_per_second = 0;
    // libcurl's receive buffer per transfer.
    int64_t buffer_size = 512 * 1024;
    // Stall detection's time (Request::stall_timeout); null: RealClock().
    // A test advances a fake clock to stall a transfer without waiting.
    Clock* clock = nullptr;
  };

  // Starts the loop thread.
  static std::unique_ptr<TransferLoop> Create(const Options& options);
  // Cancels every transfer (each handler gets OnDone(kCancelled)) and joins.
  ~TransferLoop();

  TransferId Start(Request request, std::shared_ptr<TransferHandler> handler);
  // Ends the transfer with kCancelled unless it already ended. Unknown or
  // finished ids are ignored.
  void Cancel(TransferId id);
  void SetBandwidthLimit(int64_t bytes_per_second);
  // Transfers started and not yet done.
  int ActiveTransfers() const;

 private:
  class Impl;
  explicit TransferLoop(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mm::http

#endif  // MM_COMMON_HTTP_TRANSFER_LOOP_H_
