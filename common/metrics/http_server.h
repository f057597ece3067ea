// A small HTTP/1.1 server for an operator's scraper and probes:
//   GET /metrics  the registry's Prometheus text exposition (200)
//   GET /healthz  200 "SERVING" when `healthy()` is true, 503 otherwise
// anything else 404 (405 for other methods on those paths). One request per
// connection (the response says Connection: close); a request larger than
// max_request_bytes gets 431 or 413, and a connection that does not finish
// its request within io_timeout is closed.
//
//   ASSIGN_OR_RETURN(auto server, MetricsServer::Start(
//       {.listen = "0.0.0.0:9090"}, &registry, [&] { return serving; }));
//   ...
//   server->Stop();  // or let the destructor do it
//
// Lifecycle: Start binds and starts one thread that accepts and serves;
// Stop closes the listening socket and every open connection and joins the
// thread. Scrapes are served one after another on that thread, so a slow
// collector delays the next scrape but never an rpc.
// Thread-safety: Stop, port and address may be called from any thread;
// `registry` and `healthy` must outlive the server.
#ifndef MM_COMMON_METRICS_HTTP_SERVER_H_
#define MM_COMMON_METRICS_HTTP_SERVER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/metrics/registry.h"

namespace mm::metrics {

struct MetricsServerOptions {
  // "HOST:PORT" ("[::1]:PORT" for IPv6; an empty HOST means 0.0.0.0). Port
  // 0 picks a free one (see MetricsServer::port).
  std::string listen;
  // How long one connection may take to send its request and read the
  // response.
  absl::Duration io_timeout = absl::Seconds(10);
  // The largest request (request line and headers, and any body) read.
  size_t max_request_bytes = 16 * 1024;
  // Connections served at once; more are closed on accept.
  int max_connections = 32;
};

class MetricsServer {
 public:
  // UNAVAILABLE when the address cannot be bound; INVALID_ARGUMENT when it
  // is not HOST:PORT.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const MetricsServerOptions& options, const Registry* registry,
      std::function<bool()> healthy);

  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Idempotent.
  void Stop();
  // The bound port.
  int port() const;
  // "HOST:PORT" as bound, e.g. "127.0.0.1:40123".
  const std::string& address() const;

  struct Impl;  // in http_server.cc: the only place that includes Boost

 private:
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mm::metrics

#endif  // MM_COMMON_METRICS_HTTP_SERVER_H_
