#include "common/http/fetch.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/mutex.h"
#include "common/strings.h"

namespace mm::http {
namespace {

class CollectingHandler final : public TransferHandler {
 public:
  explicit CollectingHandler(size_t max_body_bytes)
      : max_body_bytes_(max_body_bytes) {}

  bool OnResponse(const ResponseHead& head) override {
    MutexLock lock(&mu_);
    result_.head = head;
    return true;
  }
  bool OnBody(const char* data, size_t size) override {
    MutexLock lock(&mu_);
    if (result_.body.size() + size > max_body_bytes_) {
      too_large_ = true;
      return false;
    }
    result_.body.append(data, size);
    return true;
  }
  void OnDone(const TransferResult& result) override {
    MutexLock lock(&mu_);
    transfer_ = result;
    done_ = true;
  }

  // Blocks until OnDone ran.
  absl::StatusOr<FetchResult> Await(const std::string& url) {
    MutexLock lock(&mu_);
    mu_.Await([this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return done_; });
    const std::string where = QuotedForMessage(url);
    if (too_large_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the response of ", where, " is larger than ",
                       max_body_bytes_, " bytes"));
    }
    switch (transfer_.kind) {
      case TransferResult::Kind::kComplete:
        return std::move(result_);
      case TransferResult::Kind::kBlocked:
        return absl::PermissionDeniedError(
            absl::StrCat("request to ", where,
                         " refused: ", SafeForMessage(transfer_.message)));
      case TransferResult::Kind::kPermanent:
        return absl::InvalidArgumentError(
            absl::StrCat("request to ", where,
                         " failed: ", SafeForMessage(transfer_.message)));
      default:
        return absl::UnavailableError(
            absl::StrCat("request to ", where,
                         " failed: ", SafeForMessage(transfer_.message)));
    }
  }

 private:
  const size_t max_body_bytes_;
  Mutex mu_;
  FetchResult result_ ABSL_GUARDED_BY(mu_);
  TransferResult transfer_ ABSL_GUARDED_BY(mu_);
  bool too_large_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<FetchResult> Fetch(TransferLoop& loop, Request request,
                                  size_t max_body_bytes) {
  auto handler = std::make_shared<CollectingHandler>(max_body_bytes);
  const std::string url = request.url;
  loop.Start(std::move(request), handler);
  return handler->Await(url);
}

}  // namespace mm::http
