// ChangeSignal: a counter that wakes waiters when it moves. A job table
// bumps it on every write it makes and on every NOTIFY from another
// replica; Watch/Wait loops (common/jobs/follow.h) and workers read the
// version, look at the table, and wait for the version to move on.
//
//   int64_t seen = changes.version();
//   ... read the job ...
//   changes.WaitForChange(seen, absl::Now() + absl::Seconds(1));
//
// Waits use real deadlines (see common/clock.h): code that must notice a
// fake clock's time waits in short slices.
//
// Thread-safety: every method may be called concurrently.
#ifndef MM_COMMON_JOBS_CHANGE_SIGNAL_H_
#define MM_COMMON_JOBS_CHANGE_SIGNAL_H_

#include <cstdint>

#include "absl/time/time.h"
#include "common/mutex.h"

namespace mm::jobs {

class ChangeSignal {
 public:
  void Notify() ABSL_LOCKS_EXCLUDED(mu_);
  int64_t version() const ABSL_LOCKS_EXCLUDED(mu_);
  // Returns when the version differs from `seen`, Interrupt was called, or
  // `deadline` passed.
  void WaitForChange(int64_t seen, absl::Time deadline) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Wakes all waiters now and forever after (shutdown).
  void Interrupt() ABSL_LOCKS_EXCLUDED(mu_);
  bool interrupted() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable Mutex mu_;
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  bool interrupted_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace mm::jobs

#endif  // MM_COMMON_JOBS_CHANGE_SIGNAL_H_
