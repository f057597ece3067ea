#include "common/client.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/secret_file.h"
#include "common/status.h"
#include "grpc/grpc.h"
#include "grpc/grpc_security_constants.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace mm {

bool IsMultiAddressTarget(const std::string& address) {
  return (absl::StartsWith(address, "ipv4:") ||
          absl::StartsWith(address, "ipv6:")) &&
         absl::StrContains(address, ',');
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(
    const std::string& address, const ClientOptions& options) {
  if (address.empty()) {
    return absl::InvalidArgumentError("empty service address");
  }
  bool is_unix = absl::StartsWith(address, "unix:");
  std::string token;
  if (!options.token_file.empty()) {
    ASSIGN_OR_RETURN(token, ReadTokenFile(options.token_file));
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  grpc::ChannelArguments args;
  if (!options.tls_ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadConfigFile(options.tls_ca, "CA"));
    if (!options.tls_cert.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                       ReadConfigFile(options.tls_cert, "TLS certificate"));
      ASSIGN_OR_RETURN(ssl.pem_private_key,
                       ReadConfigFile(options.tls_key, "TLS key"));
    }
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
  } else if (!token.empty()) {
    // Matches the server: token-protected servers without TLS use local
    // credentials, which carry call credentials between same-host peers.
    credentials =
        grpc::experimental::LocalCredentials(is_unix ? UDS : LOCAL_TCP);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  if (!token.empty()) {
    credentials = grpc::CompositeChannelCredentials(
        credentials, grpc::AccessTokenCredentials(token));
  }
  if (IsMultiAddressTarget(address)) {
    // Replicas behind one target: spread calls over every address and
    // leave out the ones that do not answer (pick_first, gRPC's default,
    // would send everything to the first one that connects).
    args.SetLoadBalancingPolicyName("round_robin");
    // gRPC's default authority for an ipv4:/ipv6: target is the whole
    // address list, which is no name a certificate can carry; use the
    // first address instead, as a single-address target would.
    std::string first = address.substr(address.find(':') + 1);
    first = first.substr(0, first.find(','));
    args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, first);
  }
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(address, credentials, args);
}

absl::Status CheckHealth(grpc::Channel& channel, const std::string& service,
                         absl::Duration timeout) {
  std::shared_ptr<grpc::Channel> unowned(&channel, [](grpc::Channel*) {});
  auto stub = grpc::health::v1::Health::NewStub(unowned);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::FailedPreconditionError(
        absl::StrCat("service '", service, "' is ",
                     grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
                         response.status())));
  }
  return absl::OkStatus();
}

absl::Status WaitForServing(grpc::Channel& channel, const std::string& service,
                            absl::Duration timeout) {
  std::shared_ptr<grpc::Channel> unowned(&channel, [](grpc::Channel*) {});
  auto stub = grpc::health::v1::Health::NewStub(unowned);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  context.set_wait_for_ready(true);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  auto reader = stub->Watch(&context, request);
  grpc::health::v1::HealthCheckResponse response;
  std::string last = "no answer";
  while (reader->Read(&response)) {
    if (response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      context.TryCancel();
      while (reader->Read(&response)) {
      }
      reader->Finish();
      return absl::OkStatus();
    }
    last = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
        response.status());
  }
  grpc::Status status = reader->Finish();
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    return FromGrpcStatus(status);
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "service '", service, "' not SERVING within ",
      absl::FormatDuration(timeout), " (last: ", last,
      status.ok() ? "" : absl::StrCat("; ", status.error_message()), ")"));
}

}  // namespace mm
