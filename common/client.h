// Channels to our services, with the same address forms, TLS and bearer
// token options the servers take (common/server.h).
//
//   ClientOptions options;
//   options.token_file = "/run/secrets/mm-token";
//   ASSIGN_OR_RETURN(auto channel, MakeChannel("unix:/var/mm/records.sock",
//                                              options));
//   auto stub = modelmanager::v1::ModelRecords::NewStub(channel);
#ifndef MM_COMMON_CLIENT_H_
#define MM_COMMON_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"

namespace mm {

struct ClientOptions {
  // File holding the bearer token; empty sends none.
  std::string token_file;
  // PEM CA bundle to verify the server: use TLS. Empty: plain (unix socket
  // or loopback).
  std::string tls_ca;
  // PEM client certificate and key, for servers that require mutual TLS.
  std::string tls_cert;
  std::string tls_key;
  // Overrides the name checked against the server certificate.
  std::string tls_server_name;
};

// `address` is one of "unix:PATH", "HOST:PORT", or gRPC's multi-address
// form for replicas, "ipv4:127.0.0.1:7001,127.0.0.1:7002" (or "ipv6:[::1]:
// 7001,[::1]:7002"): calls are then spread round-robin over the addresses
// that answer, and one that goes away is left out until it is back. With TLS
// the certificate must name the first address's host (or tls_server_name).
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(
    const std::string& address, const ClientOptions& options);

// Whether `address` is an ipv4:/ipv6: target listing several addresses.
bool IsMultiAddressTarget(const std::string& address);

// Asks the standard health service whether `service` ("" = the whole
// server) is SERVING. UNAVAILABLE when the server cannot be reached before
// the deadline; FAILED_PRECONDITION when it answers NOT_SERVING.
absl::Status CheckHealth(grpc::Channel& channel, const std::string& service,
                         absl::Duration timeout);

// Waits until `service` ("" = the whole server) reports SERVING, following
// the health service's Watch stream rather than polling; a server not yet
// listening is waited for (wait_for_ready). OK on SERVING;
// DEADLINE_EXCEEDED, naming the last status seen, when `timeout` passes
// first; UNIMPLEMENTED when the server has no health service.
absl::Status WaitForServing(grpc::Channel& channel, const std::string& service,
                            absl::Duration timeout);

}  // namespace mm

#endif  // MM_COMMON_CLIENT_H_
