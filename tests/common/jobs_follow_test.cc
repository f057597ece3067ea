// The Wait and Watch loops every job service shares (common/jobs/follow.h),
// driven by a scripted job: each look returns the next step and announces
// a change, so the loops never wait out their poll interval.
#include "common/jobs/follow.h"

#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace mm::jobs {
namespace {

using ::mm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A job whose looks follow `steps` (the last one repeats); NOT_FOUND steps
// stand for a pruned job.
class ScriptedJob {
 public:
  ScriptedJob(ChangeSignal* changes, std::vector<absl::StatusOr<Look>> steps)
      : changes_(changes), steps_(std::move(steps)) {}

  absl::StatusOr<Look> Next() {
    absl::StatusOr<Look> step = steps_[std::min(next_, steps_.size() - 1)];
    ++next_;
    // The next step is "a change": the loop looks again at once.
    changes_->Notify();
    if (step.ok()) last_ = *step;
    return step;
  }
  bool Send() {
    sent_.push_back(last_.revision);
    return true;
  }
  const std::vector<int64_t>& sent() const { return sent_; }
  size_t looks() const { return next_; }

 private:
  ChangeSignal* changes_;
  std::vector<absl::StatusOr<Look>> steps_;
  size_t next_ = 0;
  Look last_;
  std::vector<int64_t> sent_;
};

Look Running(int64_t revision) {
  return Look{revision, "running", false, false};
}
Look Paused(int64_t revision) { return Look{revision, "paused", false, true}; }
Look Done(int64_t revision) { return Look{revision, "succeeded", true, true}; }

class FollowTest : public ::testing::Test {
 protected:
  absl::Status Watch(ScriptedJob& job, int64_t since = 0) {
    return follower_.Watch(
        "j1", since, [&] { return job.Next(); }, [&] { return job.Send(); },
        {});
  }
  absl::Status Wait(ScriptedJob& job, FollowOptions options = {}) {
    return follower_.Wait(
        "j1", [&] { return job.Next(); }, options);
  }

  ChangeSignal changes_;
  Follower follower_{&changes_, "widget job"};
};

TEST_F(FollowTest, WatchSendsSnapshotThenEachNewRevisionThenEndsOnDone) {
  // Revisions 3 and 4 were written between two looks: one message (4).
  ScriptedJob job(&changes_, {Running(2), Running(2), Running(4), Done(5)});
  EXPECT_OK(Watch(job));
  EXPECT_THAT(job.sent(), ElementsAre(2, 4, 5));
}

TEST_F(FollowTest, WatchResumesAfterTheGivenRevision) {
  ScriptedJob job(&changes_, {Running(4), Running(5), Done(6)});
  EXPECT_OK(Watch(job, /*since=*/4));
  EXPECT_THAT(job.sent(), ElementsAre(5, 6));
}

TEST_F(FollowTest, WatchOfAFinishedJobSendsItOnce) {
  ScriptedJob job(&changes_, {Done(7)});
  EXPECT_OK(Watch(job));
  EXPECT_THAT(job.sent(), ElementsAre(7));
  EXPECT_EQ(job.looks(), 1u);
}

TEST_F(FollowTest, WatchOfAJobPrunedBetweenLooksIsNotFound) {
  ScriptedJob job(&changes_,
                  {Running(2), absl::NotFoundError("no widget job j1")});
  EXPECT_THAT(Watch(job), StatusIs(absl::StatusCode::kNotFound,
                                   HasSubstr("widget job j1 ended and was "
                                             "pruned")));
}

TEST_F(FollowTest, WatchOfAnUnknownJobIsItsGetError) {
  ScriptedJob job(&changes_, {absl::NotFoundError("no widget job j1")});
  EXPECT_THAT(Watch(job),
              StatusIs(absl::StatusCode::kNotFound, "no widget job j1"));
}

TEST_F(FollowTest, WatchEndsCancelledWhenTheClientIsGone) {
  ScriptedJob job(&changes_, {Running(2)});
  EXPECT_THAT(
      follower_.Watch(
          "j1", 0, [&] { return job.Next(); }, [] { return false; }, {}),
      StatusIs(absl::StatusCode::kCancelled));
  bool gone = false;
  ScriptedJob second(&changes_, {Running(2), Running(3)});
  FollowOptions options;
  options.cancelled = [&] { return gone; };
  EXPECT_THAT(follower_.Watch(
                  "j1", 0,
                  [&] {
                    gone = second.looks() > 0;
                    return second.Next();
                  },
                  [&] { return second.Send(); }, options),
              StatusIs(absl::StatusCode::kCancelled));
}

TEST_F(FollowTest, WaitReturnsOnceSettled) {
  ScriptedJob job(&changes_, {Running(2), Running(3), Paused(4)});
  EXPECT_OK(Wait(job));
  EXPECT_EQ(job.looks(), 3u);
}

TEST_F(FollowTest, WaitPastItsDeadlineNamesTheState) {
  ScriptedJob job(&changes_, {Running(2)});
  FollowOptions options;
  options.deadline = absl::InfinitePast();
  EXPECT_THAT(Wait(job, options), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                           "widget job j1 is still running"));
}

TEST_F(FollowTest, ShutdownEndsWaitsAndWatchesUnavailable) {
  ScriptedJob job(&changes_, {Running(2)});
  // A waiter parked on the signal wakes from Shutdown, not its deadline.
  absl::Status waited;
  std::thread waiter([&] {
    waited = follower_.Wait(
        "j1",
        [&]() -> absl::StatusOr<Look> {
          return Running(2);  // no change announced: the waiter parks
        },
        {});
  });
  follower_.Shutdown();
  waiter.join();
  EXPECT_THAT(waited, StatusIs(absl::StatusCode::kUnavailable,
                               "the service is stopping"));
  EXPECT_THAT(Watch(job), StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace mm::jobs
