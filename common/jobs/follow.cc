#include "common/jobs/follow.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace mm::jobs {
namespace {

// How long a follow sleeps between looks when no change arrives: the bound
// on how late a change that no signal announced (a NOTIFY lost with a
// reconnect) is seen.
constexpr absl::Duration kPoll = absl::Seconds(1);

}  // namespace

void Follower::Shutdown() {
  stopping_ = true;
  changes_->Interrupt();
}

absl::Status Follower::Interrupted(const FollowOptions& options) const {
  if (options.cancelled && options.cancelled()) {
    return absl::CancelledError("the client cancelled the call");
  }
  if (stopping_) return absl::UnavailableError("the service is stopping");
  return absl::OkStatus();
}

absl::Status Follower::Wait(const std::string& id,
                            const std::function<absl::StatusOr<Look>()>& look,
                            const FollowOptions& options) const {
  while (true) {
    int64_t seen = changes_->version();
    absl::StatusOr<Look> found = look();
    if (!found.ok()) return found.status();
    if (found->settled) return absl::OkStatus();
    if (absl::Status s = Interrupted(options); !s.ok()) return s;
    if (absl::Now() >= options.deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(noun_, " ", id, " is still ", found->state));
    }
    changes_->WaitForChange(seen,
                            std::min(options.deadline, absl::Now() + kPoll));
  }
}

absl::Status Follower::Watch(const std::string& id, int64_t since_revision,
                             const std::function<absl::StatusOr<Look>()>& look,
                             const std::function<bool()>& send,
                             const FollowOptions& options) const {
  int64_t last = since_revision;
  bool first = true;
  while (true) {
    int64_t seen = changes_->version();
    absl::StatusOr<Look> found = look();
    if (!found.ok()) {
      // Gone after a look that found it unfinished: it ended and was pruned
      // between two looks, so its final state cannot be sent. Ending OK
      // here would pass for a stream cut short (DESIGN §2: a final `done`
      // message, or NOT_FOUND).
      if (!first && absl::IsNotFound(found.status())) {
        return absl::NotFoundError(absl::StrCat(
            noun_, " ", id,
            " ended and was pruned before this watch could send its final "
            "state"));
      }
      return found.status();
    }
    if (found->revision > last || (first && last == 0)) {
      // Latest wins: whatever changed since the last message is in this one.
      if (!send()) return absl::CancelledError("the client went away");
      last = found->revision;
    }
    first = false;
    if (found->done) return absl::OkStatus();
    if (absl::Status s = Interrupted(options); !s.ok()) return s;
    changes_->WaitForChange(seen, absl::Now() + kPoll);
  }
}

}  // namespace mm::jobs
