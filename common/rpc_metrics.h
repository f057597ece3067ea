// Counts and times every rpc a server handles, by method and status code,
// into a metrics::Registry. ServiceHost installs it on every server, so all
// services report the same rpc metrics:
//   mm_rpc_requests_total{method,code}     counter
//   mm_rpc_duration_seconds{method,code}   histogram (LatencyBuckets)
//   mm_rpc_in_flight{method}               gauge
// `method` is "package.Service/Method"; `code` the canonical name ("OK",
// "NOT_FOUND"). A call that ends without a status (the client went away)
// counts as CANCELLED. Calls refused before reaching a handler (a missing
// bearer token) are not seen here.
//
// Thread-safety: the factory and its interceptors may be used from every
// server thread; the registry must outlive the server.
#ifndef MM_COMMON_RPC_METRICS_H_
#define MM_COMMON_RPC_METRICS_H_

#include <memory>

#include "common/metrics/registry.h"
#include "grpcpp/support/server_interceptor.h"

namespace mm {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeRpcMetricsInterceptorFactory(metrics::Registry* registry);

}  // namespace mm

#endif  // MM_COMMON_RPC_METRICS_H_
