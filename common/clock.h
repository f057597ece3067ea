// Clock: where services read the time and sleep, so that leases, retries,
// stall detection and progress throttling can be tested on a fake clock
// (tests/testing/fake_clock.h) that a test advances instead of sleeping.
//
//   Clock* clock = RealClock();              // in main.cc
//   absl::Time expires = clock->Now() + lease;
//   clock->SleepUntil(next_attempt);
//
// Waits on a condition (a Mutex, a ChangeSignal) keep using real deadlines;
// code that must also notice a fake clock's time passing waits in short
// real slices and reads Now() between them.
//
// Thread-safety: every method may be called concurrently.
#ifndef MM_COMMON_CLOCK_H_
#define MM_COMMON_CLOCK_H_

#include "absl/time/time.h"

namespace mm {

class Clock {
 public:
  virtual ~Clock() = default;

  virtual absl::Time Now() const = 0;
  // Returns once Now() >= deadline (at once when it already is).
  virtual void SleepUntil(absl::Time deadline) = 0;
  void SleepFor(absl::Duration duration) { SleepUntil(Now() + duration); }
};

// The system clock (absl::Now, absl::SleepFor). Lives for the whole process.
Clock* RealClock();

}  // namespace mm

#endif  // MM_COMMON_CLOCK_H_
