#include "common/jobs/change_signal.h"

namespace mm::jobs {

void ChangeSignal::Notify() {
  MutexLock lock(&mu_);
  ++version_;
}

int64_t ChangeSignal::version() const {
  MutexLock lock(&mu_);
  return version_;
}

void ChangeSignal::WaitForChange(int64_t seen, absl::Time deadline) const {
  MutexLock lock(&mu_);
  mu_.AwaitWithDeadline([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                            mu_) { return version_ != seen || interrupted_; },
                        deadline);
}

void ChangeSignal::Interrupt() {
  MutexLock lock(&mu_);
  interrupted_ = true;
}

bool ChangeSignal::interrupted() const {
  MutexLock lock(&mu_);
  return interrupted_;
}

}  // namespace mm::jobs
