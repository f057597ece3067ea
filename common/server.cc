#include "common/server.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/rpc_metrics.h"
#include "common/secret_file.h"
#include "common/status.h"
#include "grpc/grpc_security_constants.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/auth_metadata_processor.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace mm {
namespace {

// Idle threads the synchronous gRPC server keeps for the next calls (see
// Start).
constexpr int kMaxIdleServerThreads = 16;

// Compares without an early exit, so the time taken does not reveal how
// much of a guessed token was right.
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

// Accepts calls that carry "authorization: Bearer <token>", and health
// checks without it (orchestrators probe health without secrets).
class BearerTokenProcessor : public grpc::AuthMetadataProcessor {
 public:
  explicit BearerTokenProcessor(std::string token)
      : expected_(absl::StrCat("Bearer ", token)) {}

  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& auth_metadata,
                       grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override {
    auto path = auth_metadata.find(":path");
    if (path != auth_metadata.end() &&
        std::string_view(path->second.data(), path->second.size())
            .starts_with("/grpc.health.v1.Health/")) {
      return grpc::Status::OK;
    }
    auto header = auth_metadata.find("authorization");
    if (header != auth_metadata.end() &&
        ConstantTimeEquals(
            std::string_view(header->second.data(), header->second.size()),
            expected_)) {
      consumed_auth_metadata->insert(
          {std::string(header->first.data(), header->first.size()),
           std::string(header->second.data(), header->second.size())});
      return grpc::Status::OK;
    }
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing or wrong bearer token (pass --token-file)");
  }

 private:
  std::string expected_;
};

}  // namespace

std::vector<OptionSpec> ServerOptionSpecs(const std::string& default_listen) {
  return {
      {"listen", default_listen,
       "Address to serve on: unix:PATH (mode 0600) or HOST:PORT"},
      {"auth-token-file", "",
       "File with the bearer token every rpc must carry (health exempt)"},
      {"tls-cert", "", "PEM certificate chain: serve TLS"},
      {"tls-key", "", "PEM private key for --tls-cert"},
      {"tls-client-ca", "",
       "PEM CA bundle: require client certificates (mutual TLS)"},
      {"shutdown-grace", "10s",
       "How long in-flight calls may finish after SIGTERM"},
      {"log-level", "info", "debug, info, warning or error"},
      {"metrics-listen", "",
       "HOST:PORT to serve Prometheus /metrics and /healthz on over HTTP "
       "(off when empty)"},
  };
}

absl::StatusOr<ServerOptions> ServerOptionsFromConfig(const Config& config) {
  ServerOptions options;
  options.listen = config.GetString("listen");
  if (options.listen.empty()) {
    return absl::InvalidArgumentError(
        "--listen is required: unix:PATH or HOST:PORT");
  }
  options.auth_token_file = config.GetString("auth-token-file");
  options.tls_cert = config.GetString("tls-cert");
  options.tls_key = config.GetString("tls-key");
  options.tls_client_ca = config.GetString("tls-client-ca");
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key must be given together");
  }
  if (!options.tls_client_ca.empty() && options.tls_cert.empty()) {
    return absl::InvalidArgumentError(
        "--tls-client-ca needs --tls-cert and --tls-key");
  }
  ASSIGN_OR_RETURN(options.shutdown_grace,
                   config.GetDuration("shutdown-grace"));
  LogLevel level;
  std::string level_text = config.GetString("log-level");
  if (!ParseLogLevel(level_text, &level)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--log-level must be debug, info, warning or error, got '",
                     level_text, "'"));
  }
  SetMinLogLevel(level);
  options.metrics_listen = config.GetString("metrics-listen");
  return options;
}

void BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A client vanishing mid-write must not kill the process.
  signal(SIGPIPE, SIG_IGN);
}

absl::StatusOr<std::unique_ptr<ServiceHost>> ServiceHost::Start(
    const ServerOptions& options, const std::vector<grpc::Service*>& services,
    const std::vector<std::string>& health_names) {
  auto host = std::unique_ptr<ServiceHost>(new ServiceHost());
  host->options_ = options;
  host->health_names_ = health_names;
  host->health_names_.push_back("");
  host->metrics_ = options.metrics != nullptr
                       ? options.metrics
                       : std::make_shared<metrics::Registry>();
  host->serving_gauge_ =
      host->metrics_
          ->AddGauge("mm_serving",
                     "1 while the gRPC health status is SERVING, 0 otherwise")
          ->WithLabels({});

  std::string listen = options.listen;
  bool is_unix = absl::StartsWith(listen, "unix:");
  if (is_unix) {
    std::string path(absl::StripPrefix(listen, "unix:"));
    if (absl::StartsWith(path, "//")) path = path.substr(2);
    if (path.empty()) {
      return absl::InvalidArgumentError("--listen unix: needs a socket path");
    }
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "--listen ", listen, ": ", path,
            " exists and is not a socket; refusing to replace it"));
      }
      ::unlink(path.c_str());  // a stale socket of an earlier run
    }
    host->unix_path_ = path;
    listen = absl::StrCat("unix:", path);
    host->address_ = listen;
  }

  std::optional<std::string> token;
  if (!options.auth_token_file.empty()) {
    ASSIGN_OR_RETURN(std::string text, ReadTokenFile(options.auth_token_file));
    token = std::move(text);
  }

  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (!options.tls_cert.empty()) {
    grpc::SslServerCredentialsOptions ssl(
        options.tls_client_ca.empty()
            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ASSIGN_OR_RETURN(std::string cert,
                     ReadConfigFile(options.tls_cert, "TLS certificate"));
    ASSIGN_OR_RETURN(std::string key,
                     ReadConfigFile(options.tls_key, "TLS key"));
    ssl.pem_key_cert_pairs.push_back({key, cert});
    if (!options.tls_client_ca.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_root_certs,
                       ReadConfigFile(options.tls_client_ca, "TLS client CA"));
    }
    credentials = grpc::SslServerCredentials(ssl);
  } else if (token) {
    // Token checks need a credentials type that carries call metadata to
    // an auth processor; local credentials do, and accept only same-host
    // peers (a unix socket, or loopback TCP).
    credentials =
        grpc::experimental::LocalServerCredentials(is_unix ? UDS : LOCAL_TCP);
  } else {
    credentials = grpc::InsecureServerCredentials();
  }
  if (token) {
    credentials->SetAuthMetadataProcessor(
        std::make_shared<BearerTokenProcessor>(*token));
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, credentials,
                           is_unix ? nullptr : &host->port_);
  builder.SetMaxReceiveMessageSize(16 << 20);
  // The synchronous server runs each call on a polling thread and keeps
  // at most MAX_POLLERS of them idle (gRPC's default: 2); with more calls
  // in flight than that, a finished call ended its thread and a new one
  // was started for the next: with 8 clients, a thread every 3 to 6 calls
  // and a fifth to a quarter of the CPU of a records get
  // (docs/PERFORMANCE.md). Up to 16 idle threads cost only their stacks'
  // resident pages.
  builder.SetSyncServerOption(
      grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
      kMaxIdleServerThreads);
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(
      MakeRpcMetricsInterceptorFactory(host->metrics_.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));

  // The socket is created inside BuildAndStart; a tight umask makes it 0600
  // from its first moment rather than after a chmod.
  mode_t old_umask = is_unix ? ::umask(0177) : 0;
  host->server_ = builder.BuildAndStart();
  if (is_unix) ::umask(old_umask);
  if (host->server_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen,
                     " (address in use, bad address, or no permission)"));
  }
  if (is_unix) {
    ::chmod(host->unix_path_.c_str(), 0600);
  } else {
    if (host->port_ == 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", options.listen));
    }
    std::string hostname = listen.substr(0, listen.rfind(':'));
    if (hostname.empty() || hostname == "0.0.0.0" || hostname == "[::]") {
      hostname = "127.0.0.1";
    }
    host->address_ = absl::StrCat(hostname, ":", host->port_);
  }
  host->SetServing(false);
  ServiceHost* raw = host.get();
  if (!options.metrics_listen.empty()) {
    ASSIGN_OR_RETURN(
        host->metrics_server_,
        metrics::MetricsServer::Start({.listen = options.metrics_listen},
                                      host->metrics_.get(),
                                      [raw] { return raw->healthy(); }));
  }
  MM_LOG(INFO) << "listening on " << host->address_
               << (options.tls_cert.empty() ? "" : " (TLS)")
               << (token ? " (token auth)" : "");
  return host;
}

ServiceHost::~ServiceHost() {
  Shutdown(absl::ZeroDuration());
  if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
}

void ServiceHost::SetServing(bool serving) {
  serving_ = serving;
  if (shut_down_.load() && serving) return;
  serving_gauge_->Set(serving ? 1 : 0);
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;
  for (const std::string& name : health_names_) {
    health->SetServingStatus(name, serving);
  }
}

void ServiceHost::MonitorHealth(std::function<absl::Status()> check,
                                absl::Duration interval) {
  monitor_ = std::thread([this, check = std::move(check), interval] {
    bool first = true;
    bool was_ok = false;
    MutexLock lock(&monitor_mu_);
    while (!monitor_stop_) {
      monitor_mu_.Unlock();
      absl::Status status = check();
      monitor_mu_.Lock();
      if (monitor_stop_) break;
      if (first || status.ok() != was_ok) {
        if (status.ok()) {
          MM_LOG(INFO) << "dependencies ready: SERVING";
        } else {
          MM_LOG(WARNING) << "NOT_SERVING: " << status;
        }
        SetServing(status.ok());
      }
      first = false;
      was_ok = status.ok();
      monitor_mu_.AwaitWithTimeout(
          [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return monitor_stop_; },
          interval);
    }
  });
}

void ServiceHost::AddShutdownHook(std::function<void()> hook) {
  shutdown_hooks_.push_back(std::move(hook));
}

void ServiceHost::Shutdown(absl::Duration grace) {
  if (shut_down_.exchange(true)) return;
  {
    MutexLock lock(&monitor_mu_);
    monitor_stop_ = true;
  }
  if (monitor_.joinable()) monitor_.join();
  if (server_ == nullptr) return;
  SetServing(false);
  for (auto& hook : shutdown_hooks_) hook();
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_->Wait();
  if (metrics_server_ != nullptr) metrics_server_->Stop();
}

int ServiceHost::RunUntilSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int signal_number = 0;
  while (sigwait(&set, &signal_number) != 0) {
  }
  MM_LOG(INFO) << "received " << strsignal(signal_number)
               << "; draining (grace "
               << absl::FormatDuration(options_.shutdown_grace) << ")";
  Shutdown(options_.shutdown_grace);
  MM_LOG(INFO) << "stopped";
  return 0;
}

}  // namespace mm
