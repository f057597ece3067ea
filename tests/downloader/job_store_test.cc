// Tests for the durable job queue on both backends: a real SQLite file and
// a throwaway PostgreSQL cluster (one cluster per binary, one database per
// test). Two JobStore objects on one database stand for two replicas. What
// holds on one backend only (replicas in several processes, NOTIFY) is in
// its own PostgreSQL suite, so no case is instantiated only to be skipped.
#include "services/downloader/job_store.h"

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/postgres_cluster.h"
#include "tests/testing/sql_backend.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::downloader {
namespace {

using ::mm::testing::AllSqlBackends;
using ::mm::testing::FakeClock;
using ::mm::testing::FreshDatabaseUrl;
using ::mm::testing::SqlBackend;
using ::mm::testing::SqlBackendName;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr absl::Duration kLongLease = absl::Minutes(10);
constexpr absl::Duration kLongTtl = absl::Hours(1);
// Bound on every wait for something another store or thread does.
constexpr absl::Duration kWait = absl::Seconds(15);

std::vector<std::string> Ids(const std::vector<Job>& jobs) {
  std::vector<std::string> ids;
  for (const Job& job : jobs) ids.push_back(job.id);
  return ids;
}

// A store on a fresh database of one backend, and what the cases share.
class JobStoreFixture : public ::testing::Test {
 protected:
  // Opens store_ on `backend`. Without a PostgreSQL cluster the case is
  // skipped, or fails where PostgreSQL is required (postgres_cluster.h).
  void OpenStore(SqlBackend backend) {
    std::string no_cluster;
    url_ = FreshDatabaseUrl(backend, dir_.path(), &no_cluster);
    if (url_.empty()) MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(no_cluster);
    ASSERT_OK_AND_ASSIGN(store_, JobStore::Open(url_, "replica-a", &clock_));
  }

  // Another replica on the same database.
  std::unique_ptr<JobStore> OpenReplica(const std::string& replica_id) {
    absl::StatusOr<std::unique_ptr<JobStore>> store =
        JobStore::Open(url_, replica_id, &clock_);
    EXPECT_OK(store.status());
    return store.ok() ? std::move(*store) : nullptr;
  }

  // Now on the stores' clock, at the millisecond precision they keep.
  absl::Time NowMs() const {
    return absl::FromUnixMillis(absl::ToUnixMillis(clock_.Now()));
  }

  // A job as the service would submit it, with a unique id.
  Job NewJob(int priority = 10, JobState state = JobState::kQueued) {
    static std::atomic<int> next{0};
    Job job;
    job.id = absl::StrCat("job-", next++);
    job.state = state;
    job.priority = priority;
    job.destination = "/downloads";
    job.created = NowMs();
    Part part;
    part.url = absl::StrCat("https://example.com/", job.id, ".bin");
    part.segments = {Segment{0, 1000, 0}, Segment{1000, 2000, 0}};
    job.parts.push_back(part);
    return job;
  }

  Job MustCreate(Job job) {
    absl::StatusOr<Job> created = store_->Create(std::move(job));
    EXPECT_OK(created.status());
    return created.ok() ? *created : Job{};
  }

  // Leases and heartbeats age with the stores' clock: moves it past
  // `unix_ms` (milliseconds, as the store keeps times), so a claim made
  // after it sees the lease or heartbeat as expired, in no real time.
  void AdvanceClockPast(int64_t unix_ms) {
    clock_.SetTime(absl::FromUnixMillis(unix_ms + 1));
  }

  // Before store_, so that both outlive the stores.
  FakeClock clock_;
  TempDir dir_;
  std::string url_;
  std::unique_ptr<JobStore> store_;
};

// Every case here holds on both backends.
class JobStoreTest : public JobStoreFixture,
                     public ::testing::WithParamInterface<SqlBackend> {
 protected:
  void SetUp() override { OpenStore(GetParam()); }
};

// Cases for PostgreSQL alone: only it serves replicas in several processes
// and notifies other store objects of writes (SQLite serves one process).
class PostgresJobStoreTest : public JobStoreFixture {
 protected:
  void SetUp() override { OpenStore(SqlBackend::kPostgres); }
};

TEST_P(JobStoreTest, CreateAssignsIncreasingSequenceAndRevisionOne) {
  std::vector<Job> created;
  for (int i = 0; i < 4; ++i) created.push_back(MustCreate(NewJob()));
  for (size_t i = 0; i < created.size(); ++i) {
    EXPECT_EQ(created[i].revision, 1);
    EXPECT_GT(created[i].sequence, 0);
    if (i > 0) {
      EXPECT_GT(created[i].sequence, created[i - 1].sequence);
    }
  }
}

TEST_P(JobStoreTest, GetReturnsWhatWasCreated) {
  Job job = NewJob(/*priority=*/3);
  job.request_id = "request-1";
  job.file_name = "model.bin";
  job.dest_is_dir = false;
  job.keep_partial = true;
  job.has_token = true;
  job.token_owner = "replica-a";
  job.multi_file = true;
  job.retries = 2;
  job.bytes_per_second = 1234.5;
  job.status_message = "waiting for a slot";
  job.error =
      JobError{absl::StatusCode::kNotFound, "HTTPError(NOT FOUND)", "gone"};
  job.parts[0].relative_path = "unet/model.bin";
  job.parts[0].expected_size = 2000;
  job.parts[0].expected_sha256 = std::string(64, 'a');
  job.parts[0].total_bytes = 2000;
  job.parts[0].validator = "\"etag\"";
  job.parts[0].segments[0].done = 600;
  Job created = MustCreate(job);

  ASSERT_OK_AND_ASSIGN(Job got, store_->Get(job.id));
  EXPECT_EQ(got.id, job.id);
  EXPECT_EQ(got.sequence, created.sequence);
  EXPECT_EQ(got.revision, 1);
  EXPECT_EQ(got.request_id, "request-1");
  EXPECT_EQ(got.state, JobState::kQueued);
  EXPECT_EQ(got.priority, 3);
  EXPECT_EQ(got.destination, "/downloads");
  EXPECT_EQ(got.file_name, "model.bin");
  EXPECT_FALSE(got.dest_is_dir);
  EXPECT_TRUE(got.keep_partial);
  EXPECT_TRUE(got.has_token);
  EXPECT_EQ(got.token_owner, "replica-a");
  EXPECT_TRUE(got.multi_file);
  EXPECT_EQ(got.retries, 2);
  EXPECT_EQ(got.bytes_per_second, 1234.5);
  EXPECT_EQ(got.status_message, "waiting for a slot");
  ASSERT_TRUE(got.error.has_value());
  EXPECT_EQ(got.error->code, absl::StatusCode::kNotFound);
  EXPECT_EQ(got.error->type, "HTTPError(NOT FOUND)");
  EXPECT_EQ(got.error->message, "gone");
  EXPECT_EQ(got.created, job.created);
  EXPECT_EQ(got.ended, absl::InfinitePast());
  EXPECT_EQ(got.lease_owner, "");
  ASSERT_EQ(got.parts.size(), 1u);
  EXPECT_EQ(got.parts[0].url, job.parts[0].url);
  EXPECT_EQ(got.parts[0].relative_path, "unet/model.bin");
  EXPECT_EQ(got.parts[0].expected_sha256, std::string(64, 'a'));
  EXPECT_EQ(got.parts[0].validator, "\"etag\"");
  ASSERT_EQ(got.parts[0].segments.size(), 2u);
  EXPECT_EQ(got.parts[0].segments[0].done, 600);
  EXPECT_EQ(got.parts[0].segments[1].begin, 1000);
  EXPECT_EQ(got.parts[0].segments[1].end, 2000);
}

TEST_P(JobStoreTest, CreateWithAKnownRequestIdReturnsTheExistingJob) {
  Job first = NewJob();
  first.request_id = "request-7";
  Job created = MustCreate(first);

  Job again = NewJob(/*priority=*/1);
  again.request_id = "request-7";
  again.destination = "/elsewhere";
  ASSERT_OK_AND_ASSIGN(Job returned, store_->Create(again));
  EXPECT_EQ(returned.id, first.id);
  EXPECT_EQ(returned.sequence, created.sequence);
  EXPECT_EQ(returned.destination, "/downloads");
  EXPECT_EQ(returned.priority, 10);
  EXPECT_EQ(returned.revision, 1);
  EXPECT_THAT(store_->Get(again.id), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(std::vector<Job> all, store_->List({}, 0, 100));
  EXPECT_THAT(Ids(all), ElementsAre(first.id));

  // Jobs without a request id never collide with each other.
  MustCreate(NewJob());
  MustCreate(NewJob());
  ASSERT_OK_AND_ASSIGN(all, store_->List({}, 0, 100));
  EXPECT_EQ(all.size(), 3u);
}

TEST_P(JobStoreTest, GetUnknownIsNotFound) {
  EXPECT_THAT(store_->Get("no-such-job"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-job")));
}

TEST_P(JobStoreTest, ListFiltersByStateAndPagesBySequence) {
  Job a = MustCreate(NewJob(10, JobState::kQueued));
  Job b = MustCreate(NewJob(10, JobState::kWaiting));
  Job c = MustCreate(NewJob(1, JobState::kQueued));
  Job d = MustCreate(NewJob(10, JobState::kPaused));
  Job e = MustCreate(NewJob(10, JobState::kSucceeded));

  ASSERT_OK_AND_ASSIGN(std::vector<Job> all, store_->List({}, 0, 100));
  // Submission order, whatever the priority.
  EXPECT_THAT(Ids(all), ElementsAre(a.id, b.id, c.id, d.id, e.id));
  ASSERT_OK_AND_ASSIGN(std::vector<Job> queued,
                       store_->List({JobState::kQueued}, 0, 100));
  EXPECT_THAT(Ids(queued), ElementsAre(a.id, c.id));
  ASSERT_OK_AND_ASSIGN(
      std::vector<Job> some,
      store_->List({JobState::kPaused, JobState::kWaiting}, 0, 100));
  EXPECT_THAT(Ids(some), ElementsAre(b.id, d.id));
  ASSERT_OK_AND_ASSIGN(std::vector<Job> none,
                       store_->List({JobState::kRunning}, 0, 100));
  EXPECT_TRUE(none.empty());

  // Pages of two, each continuing after the last sequence seen.
  std::vector<std::string> paged;
  int64_t after = 0;
  int pages = 0;
  while (true) {
    ASSERT_OK_AND_ASSIGN(std::vector<Job> page, store_->List({}, after, 2));
    if (page.empty()) break;
    ASSERT_LE(page.size(), 2u);
    for (const Job& job : page) paged.push_back(job.id);
    after = page.back().sequence;
    ASSERT_LT(++pages, 10);
  }
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(paged, ElementsAre(a.id, b.id, c.id, d.id, e.id));
  // Filter and page together.
  ASSERT_OK_AND_ASSIGN(std::vector<Job> rest,
                       store_->List({JobState::kQueued}, a.sequence, 100));
  EXPECT_THAT(Ids(rest), ElementsAre(c.id));
}

TEST_P(JobStoreTest, UpdateBumpsTheRevision) {
  Job job = MustCreate(NewJob());
  ASSERT_OK_AND_ASSIGN(Job updated, store_->Update(job.id, [](Job& j) {
    j.priority = 3;
    j.status_message = "bumped";
    return absl::OkStatus();
  }));
  EXPECT_EQ(updated.revision, 2);
  EXPECT_EQ(updated.priority, 3);
  ASSERT_OK_AND_ASSIGN(Job got, store_->Get(job.id));
  EXPECT_EQ(got.revision, 2);
  EXPECT_EQ(got.priority, 3);
  EXPECT_EQ(got.status_message, "bumped");
  EXPECT_EQ(got.sequence, job.sequence);

  ASSERT_OK_AND_ASSIGN(
      updated, store_->Update(job.id, [](Job&) { return absl::OkStatus(); }));
  EXPECT_EQ(updated.revision, 3);
}

TEST_P(JobStoreTest, UpdateRollsBackWhenTheChangeFails) {
  Job job = MustCreate(NewJob());
  EXPECT_THAT(store_->Update(job.id,
                             [](Job& j) {
                               j.priority = 99;
                               j.state = JobState::kCancelled;
                               return absl::FailedPreconditionError(
                                   "job is not running");
                             }),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("job is not running")));
  ASSERT_OK_AND_ASSIGN(Job got, store_->Get(job.id));
  EXPECT_EQ(got.revision, 1);
  EXPECT_EQ(got.priority, 10);
  EXPECT_EQ(got.state, JobState::kQueued);

  EXPECT_THAT(
      store_->Update("no-such-job", [](Job&) { return absl::OkStatus(); }),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-job")));
}

TEST_P(JobStoreTest, ClaimNextOrdersByPriorityThenSequence) {
  Job a = MustCreate(NewJob(10));
  Job b = MustCreate(NewJob(5));
  Job c = MustCreate(NewJob(5));
  Job d = MustCreate(NewJob(20));
  Job e = MustCreate(NewJob(-1));

  std::vector<std::string> order;
  while (true) {
    absl::Time before = NowMs();
    ASSERT_OK_AND_ASSIGN(std::optional<Job> claimed,
                         store_->ClaimNext(kLongLease, kLongTtl));
    if (!claimed.has_value()) break;
    order.push_back(claimed->id);
    EXPECT_EQ(claimed->state, JobState::kRunning);
    EXPECT_EQ(claimed->lease_owner, "replica-a");
    EXPECT_GE(claimed->lease_expires_ms,
              absl::ToUnixMillis(before + kLongLease));
    EXPECT_LE(claimed->lease_expires_ms,
              absl::ToUnixMillis(clock_.Now() + kLongLease));
    EXPECT_NE(claimed->started, absl::InfinitePast());
    EXPECT_EQ(claimed->revision, 2);
    ASSERT_OK_AND_ASSIGN(Job stored, store_->Get(claimed->id));
    EXPECT_EQ(stored.state, JobState::kRunning);
    EXPECT_EQ(stored.lease_owner, "replica-a");
    EXPECT_EQ(stored.lease_expires_ms, claimed->lease_expires_ms);
    ASSERT_LT(order.size(), 10u);
  }
  EXPECT_THAT(order, ElementsAre(e.id, b.id, c.id, a.id, d.id));
}

TEST_P(JobStoreTest, ClaimNextSkipsWaitingPausedAndFinishedJobs) {
  MustCreate(NewJob(1, JobState::kWaiting));
  MustCreate(NewJob(1, JobState::kPaused));
  MustCreate(NewJob(1, JobState::kSucceeded));
  MustCreate(NewJob(1, JobState::kFailed));
  MustCreate(NewJob(1, JobState::kCancelled));
  Job queued = MustCreate(NewJob(50, JobState::kQueued));

  ASSERT_OK_AND_ASSIGN(std::optional<Job> claimed,
                       store_->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(claimed.has_value());
  EXPECT_EQ(claimed->id, queued.id);
  ASSERT_OK_AND_ASSIGN(claimed, store_->ClaimNext(kLongLease, kLongTtl));
  EXPECT_FALSE(claimed.has_value()) << claimed->id;
}

TEST_P(JobStoreTest, ClaimKeepsTheStartTimeOfAResumedJob) {
  Job job = NewJob();
  job.started = absl::FromUnixMillis(1'600'000'000'000);
  MustCreate(job);
  ASSERT_OK_AND_ASSIGN(std::optional<Job> claimed,
                       store_->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(claimed.has_value());
  EXPECT_EQ(claimed->started, job.started);
}

TEST_P(JobStoreTest, LeasedJobIsNotHandedToAnotherReplica) {
  std::unique_ptr<JobStore> other = OpenReplica("replica-b");
  ASSERT_NE(other, nullptr);
  Job job = MustCreate(NewJob());
  ASSERT_OK_AND_ASSIGN(std::optional<Job> mine,
                       store_->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(mine.has_value());
  ASSERT_OK_AND_ASSIGN(std::optional<Job> theirs,
                       other->ClaimNext(kLongLease, kLongTtl));
  EXPECT_FALSE(theirs.has_value());
  // Not even to the same replica again: a claim is not re-entrant.
  ASSERT_OK_AND_ASSIGN(std::optional<Job> again,
                       store_->ClaimNext(kLongLease, kLongTtl));
  EXPECT_FALSE(again.has_value());
}

TEST_P(JobStoreTest, ExpiredLeaseIsHandedOver) {
  std::unique_ptr<JobStore> other = OpenReplica("replica-b");
  ASSERT_NE(other, nullptr);
  Job job = MustCreate(NewJob());
  const absl::Time before_claim = clock_.Now();
  ASSERT_OK_AND_ASSIGN(std::optional<Job> mine,
                       store_->ClaimNext(absl::Seconds(1), kLongTtl));
  ASSERT_TRUE(mine.has_value());
  ASSERT_OK_AND_ASSIGN(std::optional<Job> early,
                       other->ClaimNext(kLongLease, kLongTtl));
  EXPECT_FALSE(early.has_value());

  AdvanceClockPast(mine->lease_expires_ms);
  ASSERT_OK_AND_ASSIGN(std::optional<Job> taken,
                       other->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(taken.has_value()) << "the expired lease was not handed over";
  EXPECT_GE(clock_.Now() - before_claim, absl::Seconds(1));
  EXPECT_EQ(taken->id, job.id);
  EXPECT_EQ(taken->state, JobState::kRunning);
  EXPECT_EQ(taken->lease_owner, "replica-b");

  // The first worker learns it lost the job, and writes nothing.
  Job progress = *mine;
  progress.parts[0].segments[0].done = 999;
  ASSERT_OK_AND_ASSIGN(Job stored, store_->SaveProgress(progress, kLongLease));
  EXPECT_EQ(stored.lease_owner, "replica-b");
  EXPECT_EQ(stored.revision, taken->revision);
  EXPECT_EQ(stored.parts[0].segments[0].done, 0);
}

TEST_F(PostgresJobStoreTest, ConcurrentClaimsNeverTakeAJobTwice) {
  constexpr int kJobs = 60;
  constexpr int kThreadsPerStore = 8;
  std::set<std::string> all_ids;
  for (int i = 0; i < kJobs; ++i) all_ids.insert(MustCreate(NewJob(i % 3)).id);
  std::unique_ptr<JobStore> other = OpenReplica("replica-b");
  ASSERT_NE(other, nullptr);

  Mutex mu;
  std::map<std::string, int> claims;  // guarded by mu
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (JobStore* store : {store_.get(), other.get()}) {
    for (int t = 0; t < kThreadsPerStore; ++t) {
      threads.emplace_back([&, store] {
        while (true) {
          absl::StatusOr<std::optional<Job>> claimed =
              store->ClaimNext(kLongLease, kLongTtl);
          if (!claimed.ok()) {
            ++errors;
            ADD_FAILURE() << claimed.status();
            return;
          }
          if (!claimed->has_value()) return;
          MutexLock lock(&mu);
          ++claims[(*claimed)->id];
        }
      });
    }
  }
  for (std::thread& t : threads) t.join();

  EXPECT_EQ(errors.load(), 0);
  MutexLock lock(&mu);
  std::set<std::string> claimed_ids;
  for (const auto& [id, count] : claims) claimed_ids.insert(id);
  EXPECT_EQ(claimed_ids, all_ids);
  for (const auto& [id, count] : claims) {
    EXPECT_EQ(count, 1) << id << " was claimed " << count << " times";
  }
  ASSERT_OK_AND_ASSIGN(std::vector<Job> jobs,
                       store_->List({JobState::kRunning}, 0, 1000));
  EXPECT_EQ(jobs.size(), static_cast<size_t>(kJobs));
  for (const Job& job : jobs) {
    EXPECT_TRUE(job.lease_owner == "replica-a" ||
                job.lease_owner == "replica-b")
        << job.lease_owner;
  }
}

TEST_P(JobStoreTest, TokenOwnedByALiveReplicaIsLeftToIt) {
  // replica-b registers its heartbeat when it opens.
  std::unique_ptr<JobStore> other = OpenReplica("replica-b");
  ASSERT_NE(other, nullptr);
  const int64_t heartbeat_at_most_ms = absl::ToUnixMillis(clock_.Now());
  Job job = NewJob();
  job.has_token = true;
  job.token_owner = "replica-b";
  MustCreate(job);

  ASSERT_OK_AND_ASSIGN(std::optional<Job> claimed,
                       store_->ClaimNext(kLongLease, kLongTtl));
  EXPECT_FALSE(claimed.has_value());
  // Once replica-b's heartbeat is older than the ttl it counts as gone.
  constexpr absl::Duration kShortTtl = absl::Milliseconds(300);
  AdvanceClockPast(heartbeat_at_most_ms + absl::ToInt64Milliseconds(kShortTtl));
  ASSERT_OK_AND_ASSIGN(std::optional<Job> taken,
                       store_->ClaimNext(kLongLease, kShortTtl));
  ASSERT_TRUE(taken.has_value()) << "the dead replica's job was not taken";
  EXPECT_EQ(taken->id, job.id);
  EXPECT_EQ(taken->lease_owner, "replica-a");
}

TEST_P(JobStoreTest, TokenOwnerClaimsItsOwnJobAndUnknownOwnersAreGone) {
  std::unique_ptr<JobStore> other = OpenReplica("replica-b");
  ASSERT_NE(other, nullptr);
  Job owned = NewJob();
  owned.token_owner = "replica-b";
  MustCreate(owned);
  Job orphan = NewJob();
  orphan.token_owner = "replica-never-seen";
  MustCreate(orphan);

  ASSERT_OK_AND_ASSIGN(std::optional<Job> mine,
                       store_->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(mine.has_value());
  EXPECT_EQ(mine->id, orphan.id);
  ASSERT_OK_AND_ASSIGN(std::optional<Job> theirs,
                       other->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(theirs.has_value());
  EXPECT_EQ(theirs->id, owned.id);
  EXPECT_OK(other->Heartbeat());
  EXPECT_OK(other->Ping());
}

TEST_P(JobStoreTest, SaveProgressWritesWhileTheLeaseIsHeld) {
  MustCreate(NewJob(10));
  ASSERT_OK_AND_ASSIGN(std::optional<Job> claimed,
                       store_->ClaimNext(absl::Seconds(30), kLongTtl));
  ASSERT_TRUE(claimed.has_value());

  Job progress = *claimed;
  progress.parts[0].segments[0].done = 500;
  progress.bytes_per_second = 2048;
  progress.retries = 1;
  progress.status_message = "downloading";
  progress.priority = 99;          // not the worker's to change
  progress.destination = "/evil";  // nor this
  absl::Time before = NowMs();
  ASSERT_OK_AND_ASSIGN(Job saved, store_->SaveProgress(progress, kLongLease));
  EXPECT_EQ(saved.revision, claimed->revision + 1);
  EXPECT_EQ(saved.state, JobState::kRunning);
  EXPECT_EQ(saved.parts[0].segments[0].done, 500);
  EXPECT_EQ(saved.bytes_per_second, 2048);
  EXPECT_EQ(saved.retries, 1);
  EXPECT_EQ(saved.status_message, "downloading");
  EXPECT_EQ(saved.priority, 10);
  EXPECT_EQ(saved.destination, "/downloads");
  EXPECT_EQ(saved.lease_owner, "replica-a");
  // Renewed to the new lease length.
  EXPECT_GE(saved.lease_expires_ms, absl::ToUnixMillis(before + kLongLease));

  ASSERT_OK_AND_ASSIGN(Job got, store_->Get(claimed->id));
  EXPECT_EQ(got.revision, saved.revision);
  EXPECT_EQ(got.parts[0].segments[0].done, 500);
  EXPECT_EQ(got.priority, 10);
  EXPECT_EQ(got.lease_expires_ms, saved.lease_expires_ms);
}

// A worker's save goes through the state machine like a request does.
TEST_P(JobStoreTest, SaveProgressRefusesAStateARunningJobCannotReach) {
  MustCreate(NewJob());
  ASSERT_OK_AND_ASSIGN(std::optional<Job> claimed,
                       store_->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(claimed.has_value());
  for (JobState state : {JobState::kWaiting, JobState::kQueued}) {
    Job progress = *claimed;
    progress.state = state;
    progress.parts[0].segments[0].done = 10;
    EXPECT_THAT(store_->SaveProgress(progress, kLongLease),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr("a running download cannot become")));
  }
  ASSERT_OK_AND_ASSIGN(Job stored, store_->Get(claimed->id));
  EXPECT_EQ(stored.revision, claimed->revision);
  EXPECT_EQ(stored.state, JobState::kRunning);
}

TEST_P(JobStoreTest, SaveProgressWithoutTheLeaseWritesNothing) {
  std::unique_ptr<JobStore> other = OpenReplica("replica-b");
  ASSERT_NE(other, nullptr);
  MustCreate(NewJob());
  ASSERT_OK_AND_ASSIGN(std::optional<Job> claimed,
                       store_->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(claimed.has_value());
  Job progress = *claimed;
  progress.parts[0].segments[0].done = 700;
  ASSERT_OK_AND_ASSIGN(Job stored, other->SaveProgress(progress, kLongLease));
  EXPECT_EQ(stored.revision, claimed->revision);
  EXPECT_EQ(stored.lease_owner, "replica-a");
  EXPECT_EQ(stored.parts[0].segments[0].done, 0);

  Job unknown = NewJob();
  EXPECT_THAT(store_->SaveProgress(unknown, kLongLease),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(unknown.id)));
}

TEST_P(JobStoreTest, SaveProgressKeepsPartsOfAPausedJobAndDropsTheLease) {
  MustCreate(NewJob());
  ASSERT_OK_AND_ASSIGN(std::optional<Job> claimed,
                       store_->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(claimed.has_value());
  // A pause request arrives (through any replica).
  ASSERT_OK_AND_ASSIGN(Job paused, store_->Update(claimed->id, [](Job& j) {
    j.state = JobState::kPaused;
    return absl::OkStatus();
  }));

  Job progress = *claimed;
  progress.parts[0].segments[0].done = 800;
  progress.parts[0].segments[1].done = 100;
  // While the worker's transfers may still run, nothing is written and the
  // lease stays, so no other worker can claim the job yet.
  ASSERT_OK_AND_ASSIGN(Job seen, store_->SaveProgress(progress, kLongLease));
  EXPECT_EQ(seen.state, JobState::kPaused);
  EXPECT_EQ(seen.revision, paused.revision);
  EXPECT_EQ(seen.lease_owner, claimed->lease_owner);
  // The worker's final save, once its transfers have ended.
  ASSERT_OK_AND_ASSIGN(Job stored, store_->SaveProgress(progress, kLongLease,
                                                        /*final=*/true));
  EXPECT_EQ(stored.state, JobState::kPaused);
  EXPECT_EQ(stored.parts[0].segments[0].done, 800);
  EXPECT_EQ(stored.parts[0].segments[1].done, 100);
  EXPECT_EQ(stored.lease_owner, "");
  EXPECT_EQ(stored.lease_expires_ms, 0);
  EXPECT_EQ(stored.revision, paused.revision + 1);
  ASSERT_OK_AND_ASSIGN(Job got, store_->Get(claimed->id));
  EXPECT_EQ(got.state, JobState::kPaused);
  EXPECT_EQ(got.lease_owner, "");
  EXPECT_EQ(got.parts[0].segments[0].done, 800);
}

TEST_P(JobStoreTest, SaveProgressOfACancelledJobKeepsItsStoredParts) {
  MustCreate(NewJob());
  ASSERT_OK_AND_ASSIGN(std::optional<Job> claimed,
                       store_->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(claimed.has_value());
  ASSERT_OK(store_
                ->Update(claimed->id,
                         [this](Job& j) {
                           j.state = JobState::kCancelled;
                           j.ended = NowMs();
                           return absl::OkStatus();
                         })
                .status());

  Job progress = *claimed;
  progress.parts[0].segments[0].done = 800;
  ASSERT_OK_AND_ASSIGN(Job stored, store_->SaveProgress(progress, kLongLease,
                                                        /*final=*/true));
  EXPECT_EQ(stored.state, JobState::kCancelled);
  EXPECT_EQ(stored.parts[0].segments[0].done, 0);
  EXPECT_EQ(stored.lease_owner, "");
  EXPECT_EQ(stored.lease_expires_ms, 0);
}

TEST_P(JobStoreTest, SaveProgressOfAFinishedJobClearsLeaseAndTokenOwner) {
  Job job = NewJob();
  job.token_owner = "replica-a";
  MustCreate(job);
  ASSERT_OK_AND_ASSIGN(std::optional<Job> claimed,
                       store_->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(claimed.has_value());
  Job done = *claimed;
  done.state = JobState::kSucceeded;
  done.ended = NowMs();
  done.parts[0].done = true;
  ASSERT_OK_AND_ASSIGN(Job stored, store_->SaveProgress(done, kLongLease));
  EXPECT_EQ(stored.state, JobState::kSucceeded);
  EXPECT_EQ(stored.ended, done.ended);
  EXPECT_TRUE(stored.parts[0].done);
  EXPECT_EQ(stored.lease_owner, "");
  EXPECT_EQ(stored.lease_expires_ms, 0);
  EXPECT_EQ(stored.token_owner, "");
  ASSERT_OK_AND_ASSIGN(std::optional<Job> next,
                       store_->ClaimNext(kLongLease, kLongTtl));
  EXPECT_FALSE(next.has_value());
}

TEST_P(JobStoreTest, ReleaseLeaseMakesTheJobClaimableAtOnce) {
  std::unique_ptr<JobStore> other = OpenReplica("replica-b");
  ASSERT_NE(other, nullptr);
  Job job = MustCreate(NewJob());
  ASSERT_OK_AND_ASSIGN(std::optional<Job> mine,
                       store_->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(mine.has_value());

  // Only the holder can release it.
  ASSERT_OK(other->ReleaseLease(job.id));
  ASSERT_OK_AND_ASSIGN(std::optional<Job> theirs,
                       other->ClaimNext(kLongLease, kLongTtl));
  EXPECT_FALSE(theirs.has_value());

  ASSERT_OK(store_->ReleaseLease(job.id));
  ASSERT_OK_AND_ASSIGN(theirs, other->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(theirs.has_value());
  EXPECT_EQ(theirs->id, job.id);
  EXPECT_EQ(theirs->lease_owner, "replica-b");
  EXPECT_OK(store_->ReleaseLease("no-such-job"));
}

TEST_P(JobStoreTest, ExpireAllLeasesRequeuesRunningJobs) {
  std::unique_ptr<JobStore> other = OpenReplica("replica-b");
  ASSERT_NE(other, nullptr);
  Job job = MustCreate(NewJob());
  ASSERT_OK_AND_ASSIGN(std::optional<Job> mine,
                       store_->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(mine.has_value());
  ASSERT_OK(other->ExpireAllLeases());
  ASSERT_OK_AND_ASSIGN(std::optional<Job> theirs,
                       other->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(theirs.has_value());
  EXPECT_EQ(theirs->id, job.id);
}

TEST_P(JobStoreTest, PruneDeletesOnlyJobsFinishedBeforeTheTime) {
  const absl::Time now = NowMs();
  auto finished = [&](JobState state, absl::Time ended) {
    Job job = NewJob(10, state);
    job.ended = ended;
    return MustCreate(job);
  };
  Job old_ok = finished(JobState::kSucceeded, now - absl::Hours(2));
  Job old_failed = finished(JobState::kFailed, now - absl::Hours(2));
  Job old_cancelled = finished(JobState::kCancelled, now - absl::Hours(2));
  Job recent = finished(JobState::kSucceeded, now - absl::Minutes(1));
  Job queued = MustCreate(NewJob(10, JobState::kQueued));
  Job paused = MustCreate(NewJob(10, JobState::kPaused));
  Job waiting = MustCreate(NewJob(10, JobState::kWaiting));

  int64_t version = store_->changes().version();
  ASSERT_OK_AND_ASSIGN(std::vector<Job> pruned,
                       store_->Prune(now - absl::Hours(1)));
  EXPECT_THAT(Ids(pruned),
              UnorderedElementsAre(old_ok.id, old_failed.id, old_cancelled.id));
  EXPECT_NE(store_->changes().version(), version);
  ASSERT_OK_AND_ASSIGN(std::vector<Job> left, store_->List({}, 0, 100));
  EXPECT_THAT(Ids(left),
              ElementsAre(recent.id, queued.id, paused.id, waiting.id));
  EXPECT_THAT(store_->Get(old_ok.id), StatusIs(absl::StatusCode::kNotFound));

  // Nothing else is old enough.
  ASSERT_OK_AND_ASSIGN(pruned, store_->Prune(now - absl::Hours(1)));
  EXPECT_TRUE(pruned.empty());
  ASSERT_OK_AND_ASSIGN(pruned, store_->Prune(now + absl::Minutes(1)));
  EXPECT_THAT(Ids(pruned), ElementsAre(recent.id));
}

// List pages resume after the last sequence a client saw, so a sequence
// must never be handed out twice, even after the newest job was pruned.
TEST_P(JobStoreTest, SequenceIsNotReusedAfterPrune) {
  Job kept = MustCreate(NewJob());
  Job done = NewJob(10, JobState::kSucceeded);
  done.ended = NowMs() - absl::Hours(2);
  done = MustCreate(done);
  ASSERT_OK_AND_ASSIGN(std::vector<Job> pruned,
                       store_->Prune(NowMs() - absl::Hours(1)));
  ASSERT_THAT(Ids(pruned), ElementsAre(done.id));

  Job next = MustCreate(NewJob());
  EXPECT_GT(next.sequence, done.sequence);
  ASSERT_OK_AND_ASSIGN(std::vector<Job> after,
                       store_->List({}, done.sequence, 100));
  EXPECT_THAT(Ids(after), ElementsAre(next.id))
      << "a client that had seen up to sequence " << done.sequence
      << " misses the new job";
  EXPECT_GT(next.sequence, kept.sequence);
}

TEST_P(JobStoreTest, EveryWriteMovesTheChangeSignal) {
  ChangeSignal& signal = store_->changes();
  int64_t version = signal.version();
  Job job = MustCreate(NewJob());
  EXPECT_NE(signal.version(), version);

  version = signal.version();
  ASSERT_OK(
      store_->Update(job.id, [](Job&) { return absl::OkStatus(); }).status());
  EXPECT_NE(signal.version(), version);

  version = signal.version();
  ASSERT_OK_AND_ASSIGN(std::optional<Job> claimed,
                       store_->ClaimNext(kLongLease, kLongTtl));
  ASSERT_TRUE(claimed.has_value());
  EXPECT_NE(signal.version(), version);

  version = signal.version();
  ASSERT_OK(store_->SaveProgress(*claimed, kLongLease).status());
  EXPECT_NE(signal.version(), version);

  // A wait returns as soon as the version moves.
  version = signal.version();
  std::thread writer([&] { MustCreate(NewJob()); });
  signal.WaitForChange(version, absl::Now() + kWait);
  EXPECT_NE(signal.version(), version);
  writer.join();
}

TEST_F(PostgresJobStoreTest, AnotherReplicasWriteReachesThisSignal) {
  std::unique_ptr<JobStore> other = OpenReplica("replica-b");
  ASSERT_NE(other, nullptr);
  // Opening may itself notify; start from a settled version.
  int64_t version = store_->changes().version();
  ASSERT_OK(other->Create(NewJob()).status());
  store_->changes().WaitForChange(version, absl::Now() + kWait);
  EXPECT_NE(store_->changes().version(), version)
      << "NOTIFY from the other store never arrived";
}

// So a watch on this replica of a job another replica prunes ends at once,
// not at its next periodic look.
TEST_F(PostgresJobStoreTest, AnotherReplicasPruneReachesThisSignal) {
  std::unique_ptr<JobStore> other = OpenReplica("replica-b");
  ASSERT_NE(other, nullptr);
  Job done = NewJob(10, JobState::kSucceeded);
  done.ended = NowMs() - absl::Hours(2);
  int64_t version = store_->changes().version();
  ASSERT_OK(other->Create(done).status());
  // The create's own NOTIFY first, so that it cannot pass for the prune's.
  store_->changes().WaitForChange(version, absl::Now() + kWait);
  ASSERT_NE(store_->changes().version(), version);

  version = store_->changes().version();
  ASSERT_OK_AND_ASSIGN(std::vector<Job> pruned,
                       other->Prune(NowMs() - absl::Hours(1)));
  ASSERT_THAT(Ids(pruned), ElementsAre(done.id));
  store_->changes().WaitForChange(version, absl::Now() + kWait);
  EXPECT_NE(store_->changes().version(), version)
      << "the prune on the other store sent no NOTIFY";
}

TEST(ChangeSignalTest, WaitReturnsOnChangeDeadlineOrInterrupt) {
  ChangeSignal signal;
  EXPECT_EQ(signal.version(), 0);
  signal.Notify();
  EXPECT_EQ(signal.version(), 1);
  // Already different: no wait at all.
  signal.WaitForChange(0, absl::InfiniteFuture());

  absl::Time start = absl::Now();
  signal.WaitForChange(1, absl::Now() + absl::Milliseconds(50));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(40));
  EXPECT_EQ(signal.version(), 1);

  std::thread interrupter([&] { signal.Interrupt(); });
  signal.WaitForChange(1, absl::InfiniteFuture());  // returns: interrupted
  interrupter.join();
  signal.WaitForChange(1, absl::InfiniteFuture());  // and stays so
}

INSTANTIATE_TEST_SUITE_P(Backends, JobStoreTest, AllSqlBackends(),
                         SqlBackendName);

}  // namespace
}  // namespace mm::downloader
