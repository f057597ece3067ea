#include "common/clock.h"

#include "absl/time/clock.h"

namespace mm {
namespace {

class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  void SleepUntil(absl::Time deadline) override {
    const absl::Duration left = deadline - absl::Now();
    if (left > absl::ZeroDuration()) absl::SleepFor(left);
  }
};

}  // namespace

Clock* RealClock() {
  // Never destroyed: threads may read the time during static destruction.
  static Clock* const clock = new SystemClock();
  return clock;
}

}  // namespace mm
