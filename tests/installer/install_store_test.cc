#include "services/installer/install_store.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::installer {
namespace {

using ::mm::testing::FakeClock;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;

class InstallStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = "sqlite:" + (dir_.path() / "installs.db").string();
    ASSERT_OK_AND_ASSIGN(a_, OpenInstallStore(url_, "replica-a", &clock_));
    ASSERT_OK_AND_ASSIGN(b_, OpenInstallStore(url_, "replica-b", &clock_));
  }

  InstallJob NewJob(const std::string& id) {
    InstallJob job;
    job.id = id;
    job.source = "owner/" + id;
    job.source_type = "hf_repo_id";
    job.key = "key-" + id;
    job.created = clock_.Now();
    return job;
  }

  TempDir dir_;
  FakeClock clock_;
  std::string url_;
  std::unique_ptr<InstallStore> a_;
  std::unique_ptr<InstallStore> b_;
};

TEST_F(InstallStoreTest, AClaimKeepsTheJobsStateAndStep) {
  InstallJob job = NewJob("j1");
  job.state = InstallState::kDownloading;
  job.step = InstallStep::kDownload;
  job.download_id = "d1";
  ASSERT_OK(a_->Create(job).status());
  ASSERT_OK_AND_ASSIGN(std::optional<InstallJob> claimed,
                       a_->ClaimNext(absl::Seconds(30), absl::Seconds(60)));
  ASSERT_TRUE(claimed.has_value());
  EXPECT_EQ(claimed->state, InstallState::kDownloading);
  EXPECT_EQ(claimed->step, InstallStep::kDownload);
  EXPECT_EQ(claimed->download_id, "d1");
  EXPECT_EQ(claimed->lease_owner, "replica-a");
  // Nothing else to claim, for either replica, while the lease holds.
  EXPECT_THAT(b_->ClaimNext(absl::Seconds(30), absl::Seconds(60)),
              mm::testing::IsOkAndHolds(::testing::Eq(std::nullopt)));
}

TEST_F(InstallStoreTest,
       AnExpiredLeaseGoesToAnotherReplicaAndTheOldWorkerIsRefused) {
  ASSERT_OK(a_->Create(NewJob("j2")).status());
  ASSERT_OK_AND_ASSIGN(std::optional<InstallJob> claimed,
                       a_->ClaimNext(absl::Seconds(30), absl::Seconds(60)));
  ASSERT_TRUE(claimed.has_value());
  clock_.Advance(absl::Seconds(29));
  EXPECT_THAT(b_->ClaimNext(absl::Seconds(30), absl::Seconds(60)),
              mm::testing::IsOkAndHolds(::testing::Eq(std::nullopt)));
  clock_.Advance(absl::Seconds(2));  // the lease has run out
  ASSERT_OK_AND_ASSIGN(std::optional<InstallJob> taken,
                       b_->ClaimNext(absl::Seconds(30), absl::Seconds(60)));
  ASSERT_TRUE(taken.has_value());
  EXPECT_EQ(taken->lease_owner, "replica-b");

  // The first worker's saves no longer land.
  bool asked = false;
  ASSERT_OK_AND_ASSIGN(
      InstallJob seen,
      a_->UpdateLeased("j2", absl::Seconds(30),
                       [&](InstallJob& job) -> absl::StatusOr<bool> {
                         asked = true;
                         job.step = InstallStep::kDone;
                         return true;
                       }));
  EXPECT_FALSE(asked);
  EXPECT_EQ(seen.lease_owner, "replica-b");
  EXPECT_EQ(seen.step, InstallStep::kPlan);
}

TEST_F(InstallStoreTest, PausedAndFinishedJobsAreNotClaimed) {
  InstallJob paused = NewJob("p");
  paused.state = InstallState::kPaused;
  InstallJob done = NewJob("d");
  done.state = InstallState::kCompleted;
  done.ended = clock_.Now();
  ASSERT_OK(a_->Create(paused).status());
  ASSERT_OK(a_->Create(done).status());
  EXPECT_THAT(a_->ClaimNext(absl::Seconds(30), absl::Seconds(60)),
              mm::testing::IsOkAndHolds(::testing::Eq(std::nullopt)));
  ASSERT_OK_AND_ASSIGN(std::vector<InstallJob> live, a_->ListAll(LiveStates()));
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].id, "p");
  ASSERT_OK_AND_ASSIGN(std::vector<InstallJob> pruned,
                       a_->Prune(absl::InfiniteFuture()));
  ASSERT_EQ(pruned.size(), 1u);
  EXPECT_EQ(pruned[0].id, "d");
  EXPECT_THAT(a_->Get("d"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(InstallStoreTest, ARequestIdReturnsTheFirstJob) {
  InstallJob first = NewJob("first");
  first.request_id = "req-1";
  InstallJob second = NewJob("second");
  second.request_id = "req-1";
  ASSERT_OK(a_->Create(first).status());
  ASSERT_OK_AND_ASSIGN(InstallJob again, b_->Create(second));
  EXPECT_EQ(again.id, "first");
}

}  // namespace
}  // namespace mm::installer
