// The one conversion between absl::Status (used everywhere inside) and
// grpc::Status (used only at the rpc edge). The codes have the same numbers.
#ifndef MM_COMMON_GRPC_STATUS_H_
#define MM_COMMON_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace mm {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// "NOT_FOUND: unknown model key 'x'": the one-line form the CLI prints.
std::string GrpcStatusLine(const grpc::Status& status);

}  // namespace mm

#endif  // MM_COMMON_GRPC_STATUS_H_
