// The one server bootstrap every service uses: listening address (unix
// socket with mode 0600, or HOST:PORT), TLS and mutual TLS, bearer-token
// auth, grpc.health.v1, server reflection and an orderly shutdown on
// SIGTERM/SIGINT (NOT_SERVING, drain in-flight calls with a deadline, stop),
// and the operator's view: rpc metrics on every call (common/rpc_metrics.h)
// and, with --metrics-listen, Prometheus /metrics and /healthz over HTTP
// (common/metrics/http_server.h; docs/operations.md lists the metrics).
//
//   ASSIGN_OR_RETURN(ServerOptions options, ServerOptionsFromConfig(config));
//   ASSIGN_OR_RETURN(auto host, ServiceHost::Start(options, {&service},
//                                                  {"modelmanager.v1.ModelRecords"}));
//   host->metrics();              // where services add their own metrics
//   host->SetServing(true);       // once dependencies are ready
//   return host->RunUntilSignal();  // exit code
//
// Thread-safety: SetServing and Shutdown may be called from any thread.
#ifndef MM_COMMON_SERVER_H_
#define MM_COMMON_SERVER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "common/mutex.h"

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/config.h"
#include "common/metrics/http_server.h"
#include "common/metrics/registry.h"
#include "grpcpp/impl/codegen/service_type.h"
#include "grpcpp/server.h"

namespace mm {

struct ServerOptions {
  // "unix:/path/to.sock", "unix:///abs/path", or "HOST:PORT" (port 0 picks
  // a free one; see ServiceHost::port()).
  std::string listen;
  // File holding the bearer token every rpc must carry (health checks
  // exempt). Empty: no auth. Over TCP without TLS, a token-protected server
  // accepts loopback clients only, so the token never crosses a network in
  // clear text.
  std::string auth_token_file;
  // PEM certificate chain and key: serve TLS.
  std::string tls_cert;
  std::string tls_key;
  // PEM CA bundle: require and verify client certificates (mutual TLS).
  std::string tls_client_ca;
  // How long in-flight calls may finish after SIGTERM before cancelled.
  absl::Duration shutdown_grace = absl::Seconds(10);
  // "HOST:PORT" to serve /metrics and /healthz on over HTTP; empty: off.
  std::string metrics_listen;
  // The registry the host's rpc metrics go to and /metrics renders. Null:
  // the host makes its own (see ServiceHost::metrics). A service whose
  // parts are built before the host passes one in to share it.
  std::shared_ptr<metrics::Registry> metrics;
};

// The flags every service shares: listen, auth-token-file, tls-cert,
// tls-key, tls-client-ca, shutdown-grace, log-level, metrics-listen.
std::vector<OptionSpec> ServerOptionSpecs(const std::string& default_listen);
// Reads them (and applies log-level).
absl::StatusOr<ServerOptions> ServerOptionsFromConfig(const Config& config);

class ServiceHost {
 public:
  // Builds and starts the server. `health_names` are the service names whose
  // health status SetServing flips (the overall "" name is always included).
  // Starts NOT_SERVING.
  static absl::StatusOr<std::unique_ptr<ServiceHost>> Start(
      const ServerOptions& options, const std::vector<grpc::Service*>& services,
      const std::vector<std::string>& health_names);

  ~ServiceHost();

  // Sets every health name to SERVING (true) or NOT_SERVING (false).
  void SetServing(bool serving);
  bool serving() const { return serving_.load(); }
  // What /healthz reports: SERVING and not shut down.
  bool healthy() const { return serving_.load() && !shut_down_.load(); }
  // The TCP port bound (useful with port 0); 0 for unix sockets.
  int port() const { return port_; }
  // The address clients dial: "unix:/path" or "127.0.0.1:PORT".
  const std::string& address() const { return address_; }
  // The registry of this server's metrics (never null): rpc metrics and
  // mm_serving are in it; services add theirs.
  metrics::Registry* metrics() const { return metrics_.get(); }
  // The HTTP address of /metrics ("127.0.0.1:PORT"); empty when off.
  std::string metrics_address() const {
    return metrics_server_ ? metrics_server_->address() : "";
  }

  // NOT_SERVING, runs the shutdown hooks (services end their long-lived
  // streams there), then lets in-flight calls finish until now + grace,
  // cancels the rest and stops, then stops the metrics endpoint.
  // Idempotent.
  void Shutdown(absl::Duration grace);
  // Runs `check` now and then every `interval` on a background thread,
  // setting SERVING while it returns OK and NOT_SERVING (logging why) while
  // it fails, until Shutdown. This is how "SERVING only when dependencies
  // are ready" stays true when a database goes away and comes back.
  void MonitorHealth(std::function<absl::Status()> check,
                     absl::Duration interval);
  // Registers a hook Shutdown runs before draining. Not thread-safe: call
  // during start-up.
  void AddShutdownHook(std::function<void()> hook);

  // Blocks SIGTERM/SIGINT delivery to a sigwait loop, waits for one, shuts
  // down with the configured grace and returns 0. Call BlockShutdownSignals()
  // at the top of main, before any thread starts, so every thread inherits
  // the mask.
  int RunUntilSignal();

 private:
  ServiceHost() = default;

  ServerOptions options_;
  std::shared_ptr<metrics::Registry> metrics_;
  metrics::Gauge* serving_gauge_ = nullptr;  // mm_serving, in metrics_
  std::unique_ptr<grpc::Server> server_;
  // Stopped after server_ (see Shutdown), so /healthz answers 503 while
  // the server drains.
  std::unique_ptr<metrics::MetricsServer> metrics_server_;
  std::vector<std::string> health_names_;
  std::atomic<bool> serving_{false};
  std::atomic<bool> shut_down_{false};
  int port_ = 0;
  std::string address_;
  std::string unix_path_;
  std::vector<std::function<void()>> shutdown_hooks_;
  Mutex monitor_mu_;
  bool monitor_stop_ ABSL_GUARDED_BY(monitor_mu_) = false;
  std::thread monitor_;
};

// Blocks SIGTERM, SIGINT and SIGPIPE in the calling thread (and every thread
// it starts later). Call first thing in main.
void BlockShutdownSignals();

}  // namespace mm

#endif  // MM_COMMON_SERVER_H_
