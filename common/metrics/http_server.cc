// The one translation unit that includes Boost (Asio and Beast).
#include "common/metrics/http_server.h"

#include <chrono>
#include <map>
#include <optional>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "common/logging.h"
#include "common/mutex.h"

namespace mm::metrics {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

struct MetricsServer::Impl {
  MetricsServerOptions options;
  const Registry* registry = nullptr;
  std::function<bool()> healthy;

  Mutex stop_mu;
  bool stopped ABSL_GUARDED_BY(stop_mu) = false;

  // One thread runs io; the fields below are touched only on it (or
  // before it starts, or after it is joined). Declared after `connections`
  // because destroying io destroys the connections still pending, whose
  // destructors count down.
  int connections = 0;
  // How to close each open connection (Stop), by connection id.
  std::map<uint64_t, std::function<void()>> closers;
  uint64_t next_connection_id = 0;
  int port = 0;
  std::string address;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  std::thread thread;

  void Accept();
};

namespace {

std::chrono::steady_clock::duration ToSteady(absl::Duration duration) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      absl::ToChronoNanoseconds(duration));
}

// One connection: read one request (bounded in size and time), write one
// response, then close politely. Kept alive by the shared_ptr each pending
// handler holds; the io_context's destruction frees a connection that is
// still pending at Stop.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, MetricsServer::Impl* server)
      : stream_(std::move(socket)),
        server_(server),
        buffer_(server->options.max_request_bytes),
        id_(server->next_connection_id++) {
    ++server_->connections;
    server_->closers[id_] = [this] { stream_.close(); };
  }
  ~Connection() {
    server_->closers.erase(id_);
    --server_->connections;
  }

  void Start() {
    parser_.emplace();
    parser_->header_limit(
        static_cast<uint32_t>(server_->options.max_request_bytes));
    parser_->body_limit(server_->options.max_request_bytes);
    stream_.expires_after(ToSteady(server_->options.io_timeout));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code error, size_t) {
          self->OnRead(error);
        });
  }

 private:
  void OnRead(beast::error_code error) {
    if (error == http::error::header_limit ||
        error == beast::http::error::buffer_overflow) {
      Respond(http::status::request_header_fields_too_large,
              "request headers too large\n", /*keep_reading=*/false);
      return;
    }
    if (error == http::error::body_limit) {
      Respond(http::status::payload_too_large, "request too large\n",
              /*keep_reading=*/false);
      return;
    }
    if (error) {
      // Timed out, closed early, or not HTTP: nothing worth answering.
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
      return;
    }
    const auto& request = parser_->get();
    std::string_view target(request.target().data(), request.target().size());
    target = target.substr(0, target.find('?'));
    bool known = target == "/metrics" || target == "/healthz";
    if (!known) {
      Respond(http::status::not_found, "not found: try /metrics or /healthz\n",
              true);
      return;
    }
    if (request.method() != http::verb::get &&
        request.method() != http::verb::head) {
      response_.set(http::field::allow, "GET, HEAD");
      Respond(http::status::method_not_allowed, "use GET\n", true);
      return;
    }
    head_only_ = request.method() == http::verb::head;
    if (target == "/healthz") {
      bool healthy = server_->healthy && server_->healthy();
      Respond(healthy ? http::status::ok : http::status::service_unavailable,
              healthy ? "SERVING\n" : "NOT_SERVING\n", true);
      return;
    }
    response_.set(http::field::content_type,
                  "text/plain; version=0.0.4; charset=utf-8");
    Respond(http::status::ok, server_->registry->Render(), true);
  }

  // `keep_reading`: whether the request was read whole. When it was not,
  // the client may still be sending; we stop reading but drain after the
  // response (see Linger), so that closing with unread bytes does not
  // reset the connection before the client has read why.
  void Respond(http::status status, std::string body, bool keep_reading) {
    response_.result(status);
    response_.version(11);
    response_.keep_alive(false);
    response_.set(http::field::server, "mm-metrics");
    if (response_.find(http::field::content_type) == response_.end()) {
      response_.set(http::field::content_type, "text/plain; charset=utf-8");
    }
    response_.body() = std::move(body);
    response_.prepare_payload();
    if (head_only_) response_.body().clear();
    stream_.expires_after(ToSteady(server_->options.io_timeout));
    serializer_.emplace(response_);
    if (head_only_) serializer_->split(true);
    auto done = [self = shared_from_this()](beast::error_code error, size_t) {
      if (error) return;
      self->Linger();
    };
    if (head_only_) {
      http::async_write_header(stream_, *serializer_, std::move(done));
    } else {
      http::async_write(stream_, *serializer_, std::move(done));
    }
  }

  // Half-closes and reads (discarding) until the client closes or the
  // timeout passes.
  void Linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.async_read_some(
        asio::buffer(drain_),
        [self = shared_from_this()](beast::error_code error, size_t) {
          if (!error) self->Linger();
        });
  }

  beast::tcp_stream stream_;
  MetricsServer::Impl* server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;
  std::optional<http::response_serializer<http::string_body>> serializer_;
  uint64_t id_;
  bool head_only_ = false;
  char drain_[1024];
};

}  // namespace

void MetricsServer::Impl::Accept() {
  acceptor.async_accept([this](beast::error_code error, tcp::socket socket) {
    if (error == asio::error::operation_aborted || !acceptor.is_open()) {
      return;  // Stop closed the acceptor
    }
    if (!error) {
      if (connections >= options.max_connections) {
        beast::error_code ignored;
        socket.close(ignored);
      } else {
        std::make_shared<Connection>(std::move(socket), this)->Start();
      }
    }
    Accept();
  });
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const MetricsServerOptions& options, const Registry* registry,
    std::function<bool()> healthy) {
  size_t colon = options.listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(options.listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics-listen must be HOST:PORT, got '", options.listen, "'"));
  }
  std::string host = options.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) host = "0.0.0.0";

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->registry = registry;
  impl->healthy = std::move(healthy);

  beast::error_code error;
  tcp::resolver resolver(impl->io);
  auto endpoints = resolver.resolve(host, std::to_string(port),
                                    tcp::resolver::passive, error);
  if (error || endpoints.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen ", options.listen, ": cannot resolve '",
                     host, "': ", error.message()));
  }
  tcp::endpoint endpoint = endpoints.begin()->endpoint();
  auto fail = [&](std::string_view step) {
    std::string reason = error.message();
    return absl::UnavailableError(absl::StrCat(
        "--metrics-listen ", options.listen, ": cannot ", std::string(step),
        ": ", reason, " (is the port in use?)"));
  };
  impl->acceptor.open(endpoint.protocol(), error);
  if (error) return fail("open a socket");
  impl->acceptor.set_option(asio::socket_base::reuse_address(true), error);
  impl->acceptor.bind(endpoint, error);
  if (error) return fail("bind");
  impl->acceptor.listen(asio::socket_base::max_listen_connections, error);
  if (error) return fail("listen");
  tcp::endpoint bound = impl->acceptor.local_endpoint(error);
  if (error) return fail("read the bound address");
  impl->port = bound.port();
  std::string bound_host = bound.address().to_string();
  impl->address = bound.address().is_v6()
                      ? absl::StrCat("[", bound_host, "]:", impl->port)
                      : absl::StrCat(bound_host, ":", impl->port);

  impl->Accept();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->io.run(); });
  MM_LOG(INFO) << "metrics on http://" << impl->address << "/metrics";
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() { Stop(); }

void MetricsServer::Stop() {
  {
    MutexLock lock(&impl_->stop_mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  Impl* impl = impl_.get();
  // Closing the listener and every connection cancels their pending
  // operations; once those handlers have run (dropping the connections)
  // run() has no work left and returns.
  asio::post(impl->io, [impl] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
    // Closing runs no handler inline, so the map is not changed under us.
    for (auto& [id, close] : impl->closers) close();
  });
  if (impl->thread.joinable()) impl->thread.join();
}

int MetricsServer::port() const { return impl_->port; }

const std::string& MetricsServer::address() const { return impl_->address; }

}  // namespace mm::metrics
