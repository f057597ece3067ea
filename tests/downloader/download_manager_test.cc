// The downloader's logic layer without gRPC: the job state machine
// (CanTransition, every pair), request transitions, ids, time stamps from
// the injected clock, and the shared paging policy.
#include "services/downloader/download_manager.h"

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/downloader/harness.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::downloader {
namespace {

namespace v1 = modelmanager::v1;
using ::mm::testing::FakeClock;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using Action = DownloadManager::Action;

constexpr JobState kAll[] = {
    JobState::kWaiting,   JobState::kQueued,    JobState::kRunning,
    JobState::kPaused,    JobState::kSucceeded, JobState::kFailed,
    JobState::kCancelled,
};

TEST(JobStateMachineTest, EveryPair) {
  // from -> the states it may move to (downloader.proto's DownloadState).
  const std::map<JobState, std::set<JobState>> allowed = {
      {JobState::kWaiting,
       {JobState::kQueued, JobState::kPaused, JobState::kCancelled}},
      {JobState::kQueued,
       {JobState::kRunning, JobState::kPaused, JobState::kCancelled}},
      {JobState::kRunning,
       {JobState::kPaused, JobState::kSucceeded, JobState::kFailed,
        JobState::kCancelled}},
      {JobState::kPaused, {JobState::kQueued, JobState::kCancelled}},
      {JobState::kSucceeded, {}},
      {JobState::kFailed, {}},
      {JobState::kCancelled, {}},
  };
  int pairs = 0;
  for (JobState from : kAll) {
    for (JobState to : kAll) {
      EXPECT_EQ(CanTransition(from, to), allowed.at(from).contains(to))
          << StateName(from) << " -> " << StateName(to);
      ++pairs;
    }
  }
  EXPECT_EQ(pairs, 49);
}

class DownloadManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.path() / "models");
    HarnessOptions options;
    options.db_url = absl::StrCat("sqlite:", (dir_.path() / "dl.db").string());
    options.root = (dir_.path() / "models").string();
    options.clock = &clock_;
    ASSERT_OK_AND_ASSIGN(harness_, Harness::Start(options));
  }

  DownloadManager& manager() { return harness_->manager(); }

  // A job that waits for StartDownload, so no worker touches it.
  Job Waiting() {
    v1::CreateDownloadRequest request;
    request.set_url("http://127.0.0.1:9/never");
    request.set_start(false);
    absl::StatusOr<Job> job = manager().Create(request);
    EXPECT_OK(job.status());
    return job.value_or(Job{});
  }

  FakeClock clock_;
  TempDir dir_;
  std::unique_ptr<Harness> harness_;
};

TEST_F(DownloadManagerTest, CreateMakesARandomIdAndStampsTheClock) {
  Job a = Waiting();
  Job b = Waiting();
  EXPECT_THAT(a.id, MatchesRegex("[0-9a-f]{32}"));
  EXPECT_NE(a.id, b.id);
  EXPECT_EQ(a.state, JobState::kWaiting);
  EXPECT_EQ(absl::ToUnixMillis(a.created), absl::ToUnixMillis(clock_.Now()));
}

TEST_F(DownloadManagerTest, RequestsFollowTheStateMachine) {
  Job job = Waiting();
  // Resume queues a job too, but only a paused one.
  EXPECT_THAT(manager().Apply(job.id, Action::kResume),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("cannot resume download ", job.id,
                                    ": it is waiting")));
  ASSERT_OK_AND_ASSIGN(Job paused, manager().Apply(job.id, Action::kPause));
  EXPECT_EQ(paused.state, JobState::kPaused);
  // Pausing a paused job changes nothing.
  ASSERT_OK_AND_ASSIGN(Job again, manager().Apply(job.id, Action::kPause));
  EXPECT_EQ(again.revision, paused.revision);
  EXPECT_THAT(manager().Apply(job.id, Action::kStart),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("cannot start")));
  clock_.Advance(absl::Minutes(3));
  ASSERT_OK_AND_ASSIGN(Job cancelled, manager().Apply(job.id, Action::kCancel));
  EXPECT_EQ(cancelled.state, JobState::kCancelled);
  EXPECT_EQ(absl::ToUnixMillis(cancelled.ended),
            absl::ToUnixMillis(clock_.Now()));
  for (Action action :
       {Action::kStart, Action::kPause, Action::kResume, Action::kCancel}) {
    EXPECT_THAT(manager().Apply(job.id, action),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr("it is cancelled")));
  }
  EXPECT_THAT(manager().Apply("", Action::kCancel),
              StatusIs(absl::StatusCode::kInvalidArgument, "id is required"));
  EXPECT_THAT(manager().Apply("nope", Action::kCancel),
              StatusIs(absl::StatusCode::kNotFound, "no download job nope"));
}

TEST_F(DownloadManagerTest, ApplyToAllSkipsJobsItCannotChange) {
  Job first = Waiting();
  Job second = Waiting();
  ASSERT_OK(manager().Apply(second.id, Action::kCancel).status());
  ASSERT_OK_AND_ASSIGN(std::vector<Job> paused,
                       manager().ApplyToAll(Action::kPause));
  ASSERT_EQ(paused.size(), 1u);
  EXPECT_EQ(paused[0].id, first.id);
}

TEST_F(DownloadManagerTest, ListFollowsThePagingPolicy) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Waiting().id);
  ASSERT_OK_AND_ASSIGN(JobPage page,
                       manager().List({JobState::kWaiting}, 2, ""));
  ASSERT_EQ(page.jobs.size(), 2u);
  ASSERT_FALSE(page.next_page_token.empty());
  // The token belongs to the states it was issued for.
  EXPECT_THAT(
      manager().List({}, 2, page.next_page_token),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("other filters")));
  ASSERT_OK_AND_ASSIGN(
      page, manager().List({JobState::kWaiting}, 2, page.next_page_token));
  ASSERT_EQ(page.jobs.size(), 1u);
  EXPECT_EQ(page.jobs[0].id, ids[2]);
  EXPECT_TRUE(page.next_page_token.empty());
  // Too large a page is lowered to the maximum, as in every service.
  ASSERT_OK_AND_ASSIGN(page, manager().List({}, 1'000'000, ""));
  EXPECT_EQ(page.jobs.size(), 3u);
  EXPECT_THAT(manager().List({}, -1, ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(DownloadManagerTest, ListThroughTheStubRefusesAForeignToken) {
  for (int i = 0; i < 3; ++i) Waiting();
  grpc::ClientContext first_context;
  SetDeadline(first_context);
  v1::ListDownloadsRequest request;
  request.set_page_size(1);
  request.add_states(v1::DOWNLOAD_STATE_WAITING);
  v1::ListDownloadsResponse response;
  ASSERT_TRUE(
      harness_->stub().ListDownloads(&first_context, request, &response).ok());
  ASSERT_FALSE(response.next_page_token().empty());
  grpc::ClientContext context;
  SetDeadline(context);
  request.clear_states();
  request.set_page_token(response.next_page_token());
  grpc::Status status =
      harness_->stub().ListDownloads(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << status.error_message();
}

}  // namespace
}  // namespace mm::downloader
