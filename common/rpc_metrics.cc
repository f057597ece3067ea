#include "common/rpc_metrics.h"

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/interceptor.h"

namespace mm {
namespace {

struct RpcFamilies {
  metrics::Family<metrics::Counter>* requests;
  metrics::Family<metrics::Histogram>* durations;
  metrics::Family<metrics::Gauge>* in_flight;
};

// One per call, created when the call starts. The outcome and duration are
// recorded as the status is about to be sent, or when gRPC is done with
// the call without one.
class RpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(const RpcFamilies& families, std::string method)
      : families_(families),
        method_(std::move(method)),
        start_(std::chrono::steady_clock::now()),
        in_flight_(families.in_flight->WithLabels({method_})) {
    in_flight_->Add(1);
  }

  // A call that never sent a status was cancelled (the client left, or
  // the server shut down under it).
  ~RpcMetricsInterceptor() override {
    if (!recorded_) Record(grpc::CANCELLED);
  }

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      // Recorded before the status leaves, so a client that has its
      // answer finds the call already counted.
      Record(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  const RpcFamilies families_;
  const std::string method_;
  const std::chrono::steady_clock::time_point start_;
  metrics::Gauge* const in_flight_;
  bool recorded_ = false;  // gRPC calls Intercept serially per call

  void Record(grpc::StatusCode code) {
    if (recorded_) return;
    recorded_ = true;
    in_flight_->Add(-1);
    std::string name =
        absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
            .count();
    families_.requests->WithLabels({method_, name})->Increment();
    families_.durations->WithLabels({method_, name})->Observe(seconds);
  }
};

class RpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcMetricsInterceptorFactory(metrics::Registry* registry)
      : families_{
            registry->AddCounter("mm_rpc_requests_total",
                                 "Rpcs finished, by method and status code",
                                 {"method", "code"}),
            registry->AddHistogram(
                "mm_rpc_duration_seconds",
                "Time from an rpc's start to its status, by method and code "
                "(streams: their whole life)",
                {"method", "code"}, metrics::LatencyBuckets()),
            registry->AddGauge("mm_rpc_in_flight", "Rpcs now running",
                               {"method"})} {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const char* method = info->method();
    std::string name = method == nullptr ? "unknown" : method;
    if (name.starts_with("/")) name.erase(0, 1);
    return new RpcMetricsInterceptor(families_, std::move(name));
  }

 private:
  const RpcFamilies families_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeRpcMetricsInterceptorFactory(metrics::Registry* registry) {
  return std::make_unique<RpcMetricsInterceptorFactory>(registry);
}

}  // namespace mm
