#include "tests/testing/fake_clock.h"

#include "absl/time/clock.h"

namespace mm::testing {

FakeClock::FakeClock(absl::Time start) : now_(start) {}

absl::Time FakeClock::Now() const {
  MutexLock lock(&mu_);
  return now_;
}

void FakeClock::SleepUntil(absl::Time deadline) {
  {
    // Counted under its own lock: releasing the mutex is what wakes an
    // AwaitSleepers (a wait on the condition releases it without a wake).
    MutexLock lock(&mu_);
    ++sleepers_;
  }
  MutexLock lock(&mu_);
  mu_.Await([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return now_ >= deadline; });
  --sleepers_;
}

void FakeClock::Advance(absl::Duration duration) {
  MutexLock lock(&mu_);
  now_ += duration;
}

void FakeClock::SetTime(absl::Time time) {
  MutexLock lock(&mu_);
  if (time > now_) now_ = time;
}

int FakeClock::sleepers() const {
  MutexLock lock(&mu_);
  return sleepers_;
}

bool FakeClock::AwaitSleepers(int count, absl::Duration timeout) {
  MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(
      [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return sleepers_ >= count; },
      absl::Now() + timeout);
}

}  // namespace mm::testing
