// A replica that cannot reach its job database cannot renew its lease on a
// running job. Once the lease nears its end another replica may claim the
// job and write the same files, so the runner must stop first; while the
// lease still lasts, a failed save is no reason to stop.
//
// The database is a real PostgreSQL server, stopped under the running job
// (saves then fail at once, as in a database outage). The engine and the
// store share a FakeClock: the lease passes only when the test moves it.
#include <filesystem>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "services/downloader/paths.h"
#include "tests/downloader/harness.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/http_test_server.h"
#include "tests/testing/postgres_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::downloader {
namespace {

namespace v1 = modelmanager::v1;
namespace fs = std::filesystem;
using ::mm::testing::FakeClock;
using ::mm::testing::HttpTestServer;
using ::mm::testing::PostgresCluster;
using ::mm::testing::RandomBody;
using ::mm::testing::TempDir;

constexpr absl::Duration kLease = absl::Minutes(1);

TEST(EngineLeaseTest, StopsBeforeTheLeaseEndsWhenTheDatabaseIsUnreachable) {
  absl::StatusOr<std::unique_ptr<PostgresCluster>> cluster =
      PostgresCluster::Start();
  if (!cluster.ok()) MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(cluster.status());
  FakeClock clock;
  TempDir tmp;
  const fs::path root = tmp.path() / "models";
  fs::create_directories(root);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HttpTestServer> server,
                       HttpTestServer::Start());
  // One stream that sends half the file and then stalls until the client
  // leaves: no bytes flow while the lease runs out.
  constexpr int64_t kSent = 512 * 1024;
  server->SetFile("/model.bin", {.body = RandomBody(1024 * 1024, 31)});
  server->SetBehavior("/model.bin", {.accept_ranges = false,
                                     .stall_after_bytes = kSent,
                                     .stall_for = absl::InfiniteDuration(),
                                     .stall_count = 1});

  HarnessOptions options;
  options.db_url = (*cluster)->url();
  options.root = root.string();
  options.clock = &clock;
  options.engine.clock = &clock;
  options.engine.lease = kLease;
  // The stalled connection must not be dropped when the clock jumps.
  options.engine.stall_timeout = absl::Hours(1);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Harness> harness,
                       Harness::Start(options));

  v1::CreateDownloadRequest request;
  request.set_url(server->Url("/model.bin"));
  request.set_dest_dir(root.string());
  ASSERT_OK_AND_ASSIGN(v1::DownloadJob created, harness->Create(request));
  const std::string id = created.id();
  ASSERT_TRUE(server->WaitForRequests("/model.bin", 1, kActTimeout));
  const absl::Time deadline = absl::Now() + kActTimeout;
  while (server->RequestsFor("/model.bin")[0].body_bytes_sent < kSent &&
         absl::Now() < deadline) {
    ASSERT_FALSE(
        server->WaitForDoneRequests("/model.bin", 1, absl::Milliseconds(20)))
        << "the answer ended instead of stalling";
  }
  // A save with the bytes renews the lease: it ends kLease after now. The
  // bytes the server sent may still be on their way through the socket
  // when a save runs, and on a still clock no later save is due: step the
  // clock until one has saved them (each save renews the lease).
  const absl::Time saved_deadline = absl::Now() + kActTimeout;
  absl::Status saved;
  do {
    clock.Advance(options.engine.progress_interval);
    saved = harness->WaitForBytes(id, 256 * 1024, absl::Milliseconds(200));
  } while (!saved.ok() && absl::Now() < saved_deadline);
  ASSERT_OK(saved);

  ASSERT_OK((*cluster)->Stop());
  // Half the lease left: the saves that fail now do not stop the job.
  clock.Advance(kLease / 2);
  EXPECT_FALSE(server->WaitForDoneRequests("/model.bin", 1, kQuietPeriod))
      << "the job stopped although its lease had half its time left";

  // A quarter left: the next failed save stops the transfer.
  clock.Advance(kLease / 4);
  ASSERT_TRUE(server->WaitForDoneRequests("/model.bin", 1, kActTimeout))
      << "the job went on although its lease could not be renewed";
  // Nothing deleted: the next claimer resumes from the partial file.
  const fs::path final_path = root / "model.bin";
  EXPECT_TRUE(fs::exists(PartialPath(final_path.string())));
  EXPECT_FALSE(fs::exists(final_path));

  // Neither failed nor finished by this replica: still RUNNING under the
  // lease it could not renew, for whoever claims it once that ends.
  ASSERT_OK((*cluster)->Restart());
  absl::StatusOr<Job> job;
  const absl::Time read_deadline = absl::Now() + absl::Seconds(30);
  do {
    job = harness->store().Get(id);
    if (job.ok()) break;
    absl::SleepFor(absl::Milliseconds(50));  // polling interval, not a sync
  } while (absl::Now() < read_deadline);
  ASSERT_OK(job.status());
  EXPECT_EQ(job->state, JobState::kRunning);
  EXPECT_FALSE(job->error.has_value());
  EXPECT_EQ(job->lease_owner, harness->store().replica_id());
  EXPECT_GE(job->Bytes(), 256 * 1024);
  EXPECT_EQ(server->RequestsFor("/model.bin").size(), 1u);
}

}  // namespace
}  // namespace mm::downloader
