// Per-job access tokens, in this replica's memory only: never stored,
// logged or returned. A job created with a token names this replica as its
// token owner, so other replicas leave it to this one while it lives; a job
// whose owner died pauses until ResumeInstall brings the token again.
//
// Thread-safety: all methods may be called concurrently.
#ifndef MM_SERVICES_INSTALLER_TOKENS_H_
#define MM_SERVICES_INSTALLER_TOKENS_H_

#include <map>
#include <optional>
#include <string>

#include "common/mutex.h"

namespace mm::installer {

class TokenCache {
 public:
  void Put(const std::string& job_id, std::string token)
      ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    tokens_[job_id] = std::move(token);
  }
  std::optional<std::string> Get(const std::string& job_id) const
      ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    auto it = tokens_.find(job_id);
    if (it == tokens_.end()) return std::nullopt;
    return it->second;
  }
  void Forget(const std::string& job_id) ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    tokens_.erase(job_id);
  }

 private:
  mutable Mutex mu_;
  std::map<std::string, std::string> tokens_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_TOKENS_H_
