// A Clock that stands still until the test moves it. Threads in SleepUntil
// wake when Advance or SetTime reaches their deadline, so a test of a lease,
// a retry backoff or a stall timeout runs in no real time:
//
//   FakeClock clock;
//   auto store = JobStore::Open(url, "replica-a", &clock);
//   ... claim a job with a 15 s lease ...
//   clock.Advance(absl::Seconds(16));   // the lease has expired
//
// Thread-safety: every method may be called concurrently.
#ifndef MM_TESTS_TESTING_FAKE_CLOCK_H_
#define MM_TESTS_TESTING_FAKE_CLOCK_H_

#include "absl/time/time.h"
#include "common/clock.h"
#include "common/mutex.h"

namespace mm::testing {

class FakeClock final : public Clock {
 public:
  // Starts at a fixed instant (2027-01-15), not the real time, so a test
  // that reads the real clock by mistake sees a difference.
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'800'000'000));

  absl::Time Now() const override ABSL_LOCKS_EXCLUDED(mu_);
  void SleepUntil(absl::Time deadline) override ABSL_LOCKS_EXCLUDED(mu_);

  void Advance(absl::Duration duration) ABSL_LOCKS_EXCLUDED(mu_);
  // Moves to `time` (never backwards: an earlier time is ignored).
  void SetTime(absl::Time time) ABSL_LOCKS_EXCLUDED(mu_);

  // Threads now blocked in SleepUntil.
  int sleepers() const ABSL_LOCKS_EXCLUDED(mu_);
  // Waits (real time, at most `timeout`) until at least `count` threads
  // sleep on this clock; returns whether they do. Lets a test advance time
  // only once the code under test is parked on it.
  bool AwaitSleepers(int count, absl::Duration timeout)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  int sleepers_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mm::testing

#endif  // MM_TESTS_TESTING_FAKE_CLOCK_H_
