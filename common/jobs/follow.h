// Follower: the Wait and Watch loops of a job service (DESIGN §2), shared
// by every service that keeps jobs in a JobTable. The service says how to
// look at its job (its own typed Get) and how to send it; the follower
// does the rest the same way everywhere:
//
// - Wait returns once a look finds the job settled (for downloads: done or
//   paused), DEADLINE_EXCEEDED naming the state at the deadline.
// - Watch sends a snapshot first (or nothing until the revision passes
//   `since_revision`, so a client resumes where it stopped), then the
//   latest state after each change (changes that arrive between two looks
//   coalesce into one message), and ends OK after sending a final `done`
//   job. A job pruned between two looks ends the stream NOT_FOUND, never
//   OK, so a client cannot take it for a stream cut short.
// - Both end CANCELLED when the client goes away and UNAVAILABLE once
//   Shutdown was called (before a server drains).
//
//   Follower follower(&table->changes(), "download job");
//   RETURN_IF_ERROR(follower.Wait(id, look, {.deadline = deadline}));
//
// Thread-safety: every method may be called concurrently.
#ifndef MM_COMMON_JOBS_FOLLOW_H_
#define MM_COMMON_JOBS_FOLLOW_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/jobs/change_signal.h"

namespace mm::jobs {

// What one look at the followed job found.
struct Look {
  int64_t revision = 0;
  std::string state;     // the state's name, for messages
  bool done = false;     // terminal: a Watch ends after sending it
  bool settled = false;  // a Wait returns it
};

struct FollowOptions {
  // Wait's deadline (a Watch runs until done, cancelled or stopped).
  absl::Time deadline = absl::InfiniteFuture();
  // Whether the client went away (e.g. ServerContext::IsCancelled).
  std::function<bool()> cancelled;
};

class Follower {
 public:
  // `changes` must outlive the follower; `noun` names the job in
  // messages ("download job").
  Follower(ChangeSignal* changes, std::string noun)
      : changes_(changes), noun_(std::move(noun)) {}

  // Ends every Wait and Watch promptly, now and after (called before a
  // server drains).
  void Shutdown();

  // Looks (look() keeps what it read) until the job is settled.
  absl::Status Wait(const std::string& id,
                    const std::function<absl::StatusOr<Look>()>& look,
                    const FollowOptions& options) const;
  // Looks and calls send() (which sends what the last look read; false
  // when the client is gone) until the job is done.
  absl::Status Watch(const std::string& id, int64_t since_revision,
                     const std::function<absl::StatusOr<Look>()>& look,
                     const std::function<bool()>& send,
                     const FollowOptions& options) const;

 private:
  // CANCELLED or UNAVAILABLE when the follow must end, else OK.
  absl::Status Interrupted(const FollowOptions& options) const;

  ChangeSignal* const changes_;
  const std::string noun_;
  std::atomic<bool> stopping_{false};
};

}  // namespace mm::jobs

#endif  // MM_COMMON_JOBS_FOLLOW_H_
