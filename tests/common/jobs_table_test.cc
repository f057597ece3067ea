// The shared durable job table (common/jobs/job_table.h) on both backends,
// with a job kind that is not the downloader's ("widget" jobs with their
// own states), to show that nothing in it is download-specific. Leases and
// heartbeats age on a FakeClock. Two tables on one database stand for two
// replicas.
#include "common/jobs/job_table.h"

#include <atomic>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/jobs/job_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/postgres_cluster.h"
#include "tests/testing/sql_backend.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::jobs {
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

constexpr absl::Duration kLease = absl::Seconds(15);
constexpr absl::Duration kTtl = absl::Seconds(30);
// Bound on every wait for a NOTIFY from another table.
constexpr absl::Duration kWait = absl::Seconds(15);

JobTableSpec WidgetSpec() {
  JobTableSpec spec;
  spec.prefix = "widget";
  spec.component = "widgets";
  spec.channel = "mm_widgets";
  spec.noun = "widget job";
  spec.claimable_states = {"ready", "working"};
  spec.claimed_state = "working";
  spec.terminal_states = {"finished", "broken"};
  return spec;
}

std::vector<std::string> Ids(const std::vector<JobRow>& rows) {
  std::vector<std::string> ids;
  for (const JobRow& row : rows) ids.push_back(row.id);
  return ids;
}

class JobTableTest : public ::testing::TestWithParam<SqlBackend> {
 protected:
  void SetUp() override {
    std::string no_cluster;
    url_ = FreshDatabaseUrl(GetParam(), dir_.path(), &no_cluster);
    if (url_.empty()) MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(no_cluster);
    table_ = Open("replica-a");
    ASSERT_NE(table_, nullptr);
  }

  std::unique_ptr<JobTable> Open(const std::string& replica,
                                 JobTableSpec spec = WidgetSpec()) {
    absl::StatusOr<std::unique_ptr<JobTable>> table =
        JobTable::Open(url_, replica, std::move(spec), &clock_);
    EXPECT_OK(table.status());
    return table.ok() ? std::move(*table) : nullptr;
  }

  JobRow NewRow(std::string state = "ready", int priority = 10) {
    JobRow row;
    row.id = absl::StrCat("w", next_++);
    row.state = std::move(state);
    row.priority = priority;
    row.body = {{"size", next_}};
    return row;
  }
  JobRow MustCreate(JobRow row) {
    absl::StatusOr<JobRow> created = table_->Create(std::move(row));
    EXPECT_OK(created.status());
    return created.ok() ? *created : JobRow{};
  }

  FakeClock clock_;
  TempDir dir_;
  std::string url_;
  std::unique_ptr<JobTable> table_;
  int next_ = 0;
};

TEST_P(JobTableTest, CreateAssignsSequenceAndRevisionAndKeepsTheBody) {
  JobRow a = MustCreate(NewRow());
  JobRow b = MustCreate(NewRow());
  EXPECT_EQ(a.revision, 1);
  EXPECT_LT(a.sequence, b.sequence);
  ASSERT_OK_AND_ASSIGN(JobRow got, table_->Get(b.id));
  EXPECT_EQ(got.body, b.body);
  EXPECT_EQ(got.state, "ready");
  EXPECT_THAT(table_->Get("nope"),
              StatusIs(absl::StatusCode::kNotFound, "no widget job nope"));
}

TEST_P(JobTableTest, CreateIsIdempotentOnRequestId) {
  JobRow first = NewRow();
  first.request_id = "req-1";
  first = MustCreate(first);
  JobRow again = NewRow("working");
  again.request_id = "req-1";
  ASSERT_OK_AND_ASSIGN(JobRow got, table_->Create(again));
  EXPECT_EQ(got.id, first.id);
  EXPECT_EQ(got.state, "ready");
  EXPECT_THAT(table_->Get(again.id), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(JobTableTest, UpdateWritesUnderTheRowLockOrNotAtAll) {
  JobRow row = MustCreate(NewRow());
  ASSERT_OK_AND_ASSIGN(JobRow written, table_->Update(row.id, [](JobRow& r) {
    r.body["size"] = 99;
    return absl::OkStatus();
  }));
  EXPECT_EQ(written.revision, 2);
  EXPECT_EQ(written.body["size"], 99);
  EXPECT_THAT(table_->Update(row.id,
                             [](JobRow& r) {
                               r.state = "broken";
                               return absl::FailedPreconditionError("no");
                             }),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no"));
  ASSERT_OK_AND_ASSIGN(JobRow got, table_->Get(row.id));
  EXPECT_EQ(got.revision, 2);
  EXPECT_EQ(got.state, "ready");
}

TEST_P(JobTableTest, ListPagesAreBoundToTheirStates) {
  std::vector<std::string> ready;
  for (int i = 0; i < 5; ++i) {
    ready.push_back(MustCreate(NewRow("ready")).id);
    MustCreate(NewRow("finished"));
  }
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    ASSERT_OK_AND_ASSIGN(JobPage page, table_->ListPage({"ready"}, 2, token));
    for (const JobRow& row : page.rows) seen.push_back(row.id);
    token = page.next_page_token;
    ASSERT_LT(++pages, 10);
  } while (!token.empty());
  EXPECT_EQ(seen, ready);
  EXPECT_EQ(pages, 3);

  ASSERT_OK_AND_ASSIGN(JobPage first, table_->ListPage({"ready"}, 2, ""));
  // Another filter with this token: refused, not silently mixed.
  EXPECT_THAT(
      table_->ListPage({}, 2, first.next_page_token),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("other filters")));
  // The same set of states in another order is the same query.
  EXPECT_OK(
      table_
          ->ListPage(
              {"finished", "ready"}, 2,
              table_->ListPage({"ready", "finished"}, 2, "")->next_page_token)
          .status());
  EXPECT_THAT(table_->ListPage({}, -1, ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(table_->ListPage({}, 0, "garbage!"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("page_token is malformed")));
}

TEST_P(JobTableTest, ClaimNextLeasesByPriorityAndHandsOverExpiredLeases) {
  std::unique_ptr<JobTable> other = Open("replica-b");
  ASSERT_NE(other, nullptr);
  JobRow low = MustCreate(NewRow("ready", 20));
  JobRow high = MustCreate(NewRow("ready", 1));
  MustCreate(NewRow("finished", 0));

  ASSERT_OK_AND_ASSIGN(std::optional<JobRow> mine,
                       table_->ClaimNext(kLease, kTtl, [](JobRow& row) {
                         row.body["claimed"] = true;
                       }));
  ASSERT_TRUE(mine.has_value());
  EXPECT_EQ(mine->id, high.id);
  EXPECT_EQ(mine->state, "working");
  EXPECT_EQ(mine->lease_owner, "replica-a");
  EXPECT_EQ(mine->lease_expires_ms, absl::ToUnixMillis(clock_.Now() + kLease));
  EXPECT_EQ(mine->body["claimed"], true);

  ASSERT_OK_AND_ASSIGN(std::optional<JobRow> theirs,
                       other->ClaimNext(kLease, kTtl));
  ASSERT_TRUE(theirs.has_value());
  EXPECT_EQ(theirs->id, low.id);
  ASSERT_OK_AND_ASSIGN(theirs, other->ClaimNext(kLease, kTtl));
  EXPECT_FALSE(theirs.has_value()) << "a leased job was handed out twice";

  // replica-a dies; its lease runs out on the clock, not in real time.
  clock_.Advance(kLease + absl::Milliseconds(1));
  ASSERT_OK(other->Heartbeat());
  ASSERT_OK_AND_ASSIGN(theirs, other->ClaimNext(kLease, kTtl));
  ASSERT_TRUE(theirs.has_value());
  EXPECT_EQ(theirs->id, high.id);
  EXPECT_EQ(theirs->lease_owner, "replica-b");
  EXPECT_EQ(theirs->body["claimed"], true);
}

TEST_P(JobTableTest, TokenOwnersKeepTheirJobsWhileAlive) {
  std::unique_ptr<JobTable> other = Open("replica-b");
  ASSERT_NE(other, nullptr);
  JobRow owned = NewRow();
  owned.token_owner = "replica-b";
  MustCreate(owned);
  ASSERT_OK_AND_ASSIGN(std::optional<JobRow> claimed,
                       table_->ClaimNext(kLease, kTtl));
  EXPECT_FALSE(claimed.has_value());
  clock_.Advance(kTtl + absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(claimed, table_->ClaimNext(kLease, kTtl));
  ASSERT_TRUE(claimed.has_value()) << "a dead replica's job was not taken";
  EXPECT_EQ(claimed->id, owned.id);
}

TEST_P(JobTableTest, UpdateLeasedWritesOnlyForTheLeaseHolder) {
  std::unique_ptr<JobTable> other = Open("replica-b");
  ASSERT_NE(other, nullptr);
  MustCreate(NewRow());
  ASSERT_OK_AND_ASSIGN(std::optional<JobRow> claimed,
                       table_->ClaimNext(kLease, kTtl));
  ASSERT_TRUE(claimed.has_value());

  bool called = false;
  ASSERT_OK_AND_ASSIGN(JobRow seen,
                       other->UpdateLeased(claimed->id, [&](JobRow&) {
                         called = true;
                         return true;
                       }));
  EXPECT_FALSE(called);
  EXPECT_EQ(seen.revision, claimed->revision);

  // The holder may decline to write.
  ASSERT_OK_AND_ASSIGN(seen, table_->UpdateLeased(claimed->id, [](JobRow& r) {
    r.body["size"] = -1;
    return false;
  }));
  EXPECT_EQ(seen.revision, claimed->revision);
  EXPECT_NE(seen.body["size"], -1);

  clock_.Advance(absl::Seconds(5));
  ASSERT_OK_AND_ASSIGN(JobRow renewed,
                       table_->UpdateLeased(claimed->id, [&](JobRow& r) {
                         table_->RenewLease(r, kLease);
                         return true;
                       }));
  EXPECT_EQ(renewed.revision, claimed->revision + 1);
  EXPECT_EQ(renewed.lease_expires_ms,
            absl::ToUnixMillis(clock_.Now() + kLease));

  ASSERT_OK_AND_ASSIGN(JobRow released,
                       table_->UpdateLeased(claimed->id, [](JobRow& r) {
                         r.state = "finished";
                         JobTable::ClearLease(r);
                         return true;
                       }));
  EXPECT_EQ(released.lease_owner, "");
  EXPECT_EQ(released.lease_expires_ms, 0);
  EXPECT_THAT(table_->UpdateLeased("nope", [](JobRow&) { return true; }),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(JobTableTest, ReleaseAndExpireLeasesRequeueWork) {
  std::unique_ptr<JobTable> other = Open("replica-b");
  ASSERT_NE(other, nullptr);
  JobRow row = MustCreate(NewRow());
  ASSERT_OK_AND_ASSIGN(std::optional<JobRow> claimed,
                       table_->ClaimNext(kLease, kTtl));
  ASSERT_TRUE(claimed.has_value());
  // Another replica's release does nothing; the holder's frees the job.
  ASSERT_OK(other->ReleaseLease(row.id));
  ASSERT_OK_AND_ASSIGN(std::optional<JobRow> theirs,
                       other->ClaimNext(kLease, kTtl));
  EXPECT_FALSE(theirs.has_value());
  ASSERT_OK(table_->ReleaseLease(row.id));
  ASSERT_OK_AND_ASSIGN(theirs, other->ClaimNext(kLease, kTtl));
  ASSERT_TRUE(theirs.has_value());

  ASSERT_OK(table_->ExpireAllLeases());
  ASSERT_OK_AND_ASSIGN(std::optional<JobRow> back,
                       table_->ClaimNext(kLease, kTtl));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->id, row.id);
}

TEST_P(JobTableTest, PruneDeletesOnlyTerminalJobsEndedBefore) {
  const int64_t now_ms = absl::ToUnixMillis(clock_.Now());
  JobRow old_done = NewRow("finished");
  old_done.ended_ms = now_ms - 7'200'000;
  old_done = MustCreate(old_done);
  JobRow old_broken = NewRow("broken");
  old_broken.ended_ms = now_ms - 7'200'000;
  old_broken = MustCreate(old_broken);
  JobRow recent = NewRow("finished");
  recent.ended_ms = now_ms;
  recent = MustCreate(recent);
  JobRow working = NewRow("working");
  working.ended_ms = now_ms - 7'200'000;  // not terminal: kept
  working = MustCreate(working);

  int64_t version = table_->changes().version();
  ASSERT_OK_AND_ASSIGN(std::vector<JobRow> pruned,
                       table_->Prune(clock_.Now() - absl::Hours(1)));
  EXPECT_THAT(Ids(pruned), ElementsAre(old_done.id, old_broken.id));
  EXPECT_NE(table_->changes().version(), version);
  ASSERT_OK_AND_ASSIGN(pruned, table_->Prune(absl::InfiniteFuture()));
  EXPECT_THAT(Ids(pruned), ElementsAre(recent.id));
  ASSERT_OK_AND_ASSIGN(std::vector<JobRow> left, table_->List({}, 0, 100));
  EXPECT_THAT(Ids(left), ElementsAre(working.id));
  // Sequences are never reused after the newest job was pruned.
  JobRow next = MustCreate(NewRow());
  EXPECT_GT(next.sequence, working.sequence);
}

TEST_P(JobTableTest, CountGivesJobsByStateAndThoseWaitingForAWorker) {
  ASSERT_OK_AND_ASSIGN(JobCounts empty, table_->Count());
  EXPECT_TRUE(empty.by_state.empty());
  EXPECT_EQ(empty.unclaimed, 0);
  MustCreate(NewRow("ready"));
  MustCreate(NewRow("ready"));
  MustCreate(NewRow("finished"));
  ASSERT_OK_AND_ASSIGN(auto claimed, table_->ClaimNext(kLease, kTtl));
  ASSERT_TRUE(claimed.has_value());
  ASSERT_OK_AND_ASSIGN(JobCounts counts, table_->Count());
  EXPECT_EQ(counts.by_state,
            (std::map<std::string, int64_t>{
                {"finished", 1}, {"ready", 1}, {"working", 1}}));
  EXPECT_EQ(counts.unclaimed, 1);  // the leased job is not waiting
  // Its lease runs out: waiting again (ClaimNext would hand it over).
  clock_.Advance(kLease + absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(counts, table_->Count());
  EXPECT_EQ(counts.unclaimed, 2);
}

TEST_P(JobTableTest, JobMetricsReadTheCountsAtScrapeTime) {
  metrics::Registry registry;
  {
    JobMetrics job_metrics(table_.get(), &registry,
                           {"ready", "working", "finished", "broken"});
    EXPECT_EQ(registry.Render(),
              "# HELP mm_job_queue_depth Jobs waiting for a worker: in a "
              "claimable state, with no live lease\n"
              "# TYPE mm_job_queue_depth gauge\n"
              "mm_job_queue_depth 0\n"
              "# HELP mm_jobs Jobs in the job table, by state\n"
              "# TYPE mm_jobs gauge\n"
              "mm_jobs{state=\"broken\"} 0\n"
              "mm_jobs{state=\"finished\"} 0\n"
              "mm_jobs{state=\"ready\"} 0\n"
              "mm_jobs{state=\"working\"} 0\n");
    MustCreate(NewRow("ready"));
    MustCreate(NewRow("odd"));  // a state the metrics were not told of
    std::string text = registry.Render();
    EXPECT_THAT(text, HasSubstr("mm_jobs{state=\"ready\"} 1\n"));
    EXPECT_THAT(text, HasSubstr("mm_jobs{state=\"odd\"} 1\n"));
    EXPECT_THAT(text, HasSubstr("mm_job_queue_depth 1\n"));
  }
  // Gone with the JobMetrics: the gauges stay as last read.
  MustCreate(NewRow("ready"));
  EXPECT_THAT(registry.Render(), HasSubstr("mm_jobs{state=\"ready\"} 1\n"));
}

TEST_P(JobTableTest, TwoKindsShareADatabaseButNotTheirJobs) {
  JobTableSpec gadgets = WidgetSpec();
  gadgets.prefix = "gadget";
  gadgets.component = "gadgets";
  gadgets.channel = "mm_gadgets";
  gadgets.noun = "gadget job";
  std::unique_ptr<JobTable> gadget_table = Open("replica-a", gadgets);
  ASSERT_NE(gadget_table, nullptr);
  JobRow widget = MustCreate(NewRow());
  ASSERT_OK_AND_ASSIGN(JobRow gadget, gadget_table->Create(NewRow()));
  EXPECT_EQ(gadget.sequence, widget.sequence);  // each its own sequence
  EXPECT_THAT(
      gadget_table->Get(widget.id),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("no gadget job")));
  ASSERT_OK_AND_ASSIGN(std::vector<JobRow> widgets, table_->List({}, 0, 10));
  EXPECT_THAT(Ids(widgets), ElementsAre(widget.id));
}

TEST_P(JobTableTest, ReopeningKeepsTheJobs) {
  JobRow row = MustCreate(NewRow());
  table_.reset();
  table_ = Open("replica-a");
  ASSERT_NE(table_, nullptr);
  ASSERT_OK_AND_ASSIGN(JobRow got, table_->Get(row.id));
  EXPECT_EQ(got.body, row.body);
}

// Replicas in several processes exist only on PostgreSQL (NOTIFY).
class PostgresJobTableTest : public JobTableTest {};

TEST_P(PostgresJobTableTest, AnotherTablesWriteReachesThisSignal) {
  std::unique_ptr<JobTable> other = Open("replica-b");
  ASSERT_NE(other, nullptr);
  int64_t version = table_->changes().version();
  ASSERT_OK(other->Create(NewRow()).status());
  table_->changes().WaitForChange(version, absl::Now() + kWait);
  EXPECT_NE(table_->changes().version(), version)
      << "NOTIFY from the other table never arrived";
}

TEST(JobTableSpecTest, IncompleteSpecIsRefused) {
  FakeClock clock;
  JobTableSpec spec = WidgetSpec();
  spec.claimable_states.clear();
  EXPECT_THAT(JobTable::Open("sqlite::memory:", "r", spec, &clock),
              StatusIs(absl::StatusCode::kInvalidArgument));
  spec = WidgetSpec();
  spec.terminal_states.clear();
  EXPECT_THAT(JobTable::Open("sqlite::memory:", "r", spec, &clock),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(JobTableSpecTest, WithoutAClaimedStateAClaimKeepsTheJobsState) {
  FakeClock clock;
  JobTableSpec spec = WidgetSpec();
  spec.claimed_state.clear();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<JobTable> table,
                       JobTable::Open("sqlite::memory:", "r", spec, &clock));
  JobRow row;
  row.id = "kept";
  row.state = "ready";
  ASSERT_OK(table->Create(row).status());
  ASSERT_OK_AND_ASSIGN(std::optional<JobRow> claimed,
                       table->ClaimNext(absl::Seconds(30), absl::Seconds(60)));
  ASSERT_TRUE(claimed.has_value());
  EXPECT_EQ(claimed->state, "ready");
  EXPECT_EQ(claimed->lease_owner, "r");
  // Expiring every lease (an embedded store's restart) frees it again.
  ASSERT_OK(table->ExpireAllLeases());
  ASSERT_OK_AND_ASSIGN(claimed,
                       table->ClaimNext(absl::Seconds(30), absl::Seconds(60)));
  EXPECT_TRUE(claimed.has_value());
}

INSTANTIATE_TEST_SUITE_P(Postgres, PostgresJobTableTest,
                         ::testing::Values(SqlBackend::kPostgres),
                         SqlBackendName);
INSTANTIATE_TEST_SUITE_P(Backends, JobTableTest, AllSqlBackends(),
                         SqlBackendName);

}  // namespace
}  // namespace mm::jobs
