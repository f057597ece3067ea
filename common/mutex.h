// Mutex, MutexLock and condition waits for the whole project, on top of
// std::mutex and std::condition_variable.
//
// Why not absl::Mutex: Debian's prebuilt Abseil is not instrumented for
// ThreadSanitizer, so TSan cannot see absl::Mutex's locking and reports
// every access it guards as a race. std::mutex goes through pthread, which
// TSan intercepts, so the `tsan` build reports only real races. The
// interface is the subset of absl::Mutex we use, with the same clang
// thread-safety annotations (ABSL_GUARDED_BY etc. keep working).
//
//   mm::Mutex mu;
//   int ready ABSL_GUARDED_BY(mu) = 0;
//   {
//     mm::MutexLock lock(&mu);
//     mu.AwaitWithDeadline([&] { return ready > 0; }, deadline);
//   }
//
// Like absl::Mutex's Await, a waiting predicate is re-checked whenever any
// holder releases the mutex, so writers need no explicit signal.
#ifndef MM_COMMON_MUTEX_H_
#define MM_COMMON_MUTEX_H_

#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace mm {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    bool wake = waiters_ > 0;
    mu_.unlock();
    if (wake) cv_.notify_all();
  }

  // Releases the mutex until `condition()` holds (re-checked under the
  // mutex) or `deadline` passes; returns whether it holds. Must be called
  // with the mutex held; returns with it held.
  template <typename Condition>
  bool AwaitWithDeadline(Condition condition, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    ++waiters_;
    bool held;
    if (deadline == absl::InfiniteFuture()) {
      cv_.wait(lock, condition);
      held = true;
    } else {
      held = cv_.wait_until(lock, absl::ToChronoTime(deadline), condition);
    }
    --waiters_;
    lock.release();
    return held;
  }
  template <typename Condition>
  bool AwaitWithTimeout(Condition condition, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    return AwaitWithDeadline(std::move(condition), absl::Now() + timeout);
  }
  template <typename Condition>
  void Await(Condition condition) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    AwaitWithDeadline(std::move(condition), absl::InfiniteFuture());
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  // Threads inside an Await; guarded by mu_.
  int waiters_ = 0;
};

// Holds a Mutex for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* mu_;
};

}  // namespace mm

#endif  // MM_COMMON_MUTEX_H_
