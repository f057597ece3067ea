// End to end (installer_harness.h): crash safety and scale-out. The
// installer killed with SIGKILL while downloading and at each later step
// finishes the same install after a restart, exactly once; a records
// service or downloader that restarts makes the job wait, not fail; a
// second replica on PostgreSQL finishes a killed replica's install; start-up
// removes abandoned temporary folders and registers orphans when asked.
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "modelmanager/v1/installer.grpc.pb.h"
#include "modelmanager/v1/records.grpc.pb.h"
#include "tests/e2e/installer_harness.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/postgres_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::e2e {
namespace {

namespace v1 = ::modelmanager::v1;
namespace fs = std::filesystem;
using ::mm::testing::ReadFile;
using ::mm::testing::WriteFile;
using ::testing::ElementsAre;

TEST_F(InstallerE2eTest,
       KilledWhileDownloadingTheInstallFinishesAfterARestart) {
  // Served slowly enough (about 4 s) to be caught mid-download.
  const std::string big = testing::LoraSd1Bytes();
  web_->SetFile("/slow.safetensors", {.body = big, .etag = "\"slow\""});
  web_->SetBehavior(
      "/slow.safetensors",
      {.bytes_per_second = static_cast<int64_t>(big.size() / 4) + 1});
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job,
                       Create(web_->Url("/slow.safetensors")));
  // Wait until the download moves, then kill the installer.
  ASSERT_OK(WatchUntil(*stub_, job.id(), [](const v1::InstallJob& j) {
              return j.bytes() > 0;
            }).status());
  ASSERT_OK(StopChild(installer_, SIGKILL));
  web_->SetBehavior("/slow.safetensors", {});
  ASSERT_OK(StartInstaller());
  ASSERT_OK_AND_ASSIGN(v1::InstallJob done, Wait(job.id()));
  ASSERT_EQ(done.state(), v1::INSTALL_STATE_COMPLETED)
      << done.error().type() << ": " << done.error().message();
  EXPECT_EQ(Records().size(), 1u);
  EXPECT_THAT(ModelsEntries(), ElementsAre(done.key()));
}

TEST_F(InstallerE2eTest, TheJobWaitsForARecordsServiceThatRestarts) {
  const std::string body = testing::LoraSd1Bytes();
  web_->SetFile("/w/lora.safetensors", {.body = body});
  web_->SetBehavior(
      "/w/lora.safetensors",
      {.bytes_per_second = static_cast<int64_t>(body.size() / 2)});
  ASSERT_OK(StopChild(records_, SIGKILL));
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job,
                       Create(web_->Url("/w/lora.safetensors")));
  // The download finishes; registering waits for the records service.
  ASSERT_OK_AND_ASSIGN(
      v1::InstallJob waiting,
      WatchUntil(*stub_, job.id(), [](const v1::InstallJob& j) {
        return absl::StrContains(j.status_message(),
                                 "waiting for the records service");
      }));
  EXPECT_FALSE(waiting.done());
  ASSERT_OK(StartRecords());
  ASSERT_OK_AND_ASSIGN(v1::InstallJob done, Wait(job.id()));
  ASSERT_EQ(done.state(), v1::INSTALL_STATE_COMPLETED)
      << done.error().message();
  EXPECT_EQ(Records().size(), 1u);
}

TEST_F(InstallerE2eTest, TheJobWaitsForADownloaderThatRestarts) {
  const std::string body = testing::LoraSd1Bytes();
  web_->SetFile("/d/lora.safetensors", {.body = body});
  ASSERT_OK(StopChild(downloader_, SIGKILL));
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job,
                       Create(web_->Url("/d/lora.safetensors")));
  ASSERT_OK_AND_ASSIGN(
      v1::InstallJob waiting,
      WatchUntil(*stub_, job.id(), [](const v1::InstallJob& j) {
        return absl::StrContains(j.status_message(),
                                 "waiting for the downloader");
      }));
  EXPECT_FALSE(waiting.done());
  ASSERT_OK(StartDownloader());
  ASSERT_OK_AND_ASSIGN(v1::InstallJob done, Wait(job.id()));
  ASSERT_EQ(done.state(), v1::INSTALL_STATE_COMPLETED)
      << done.error().message();
  EXPECT_EQ(Records().size(), 1u);
}

TEST_F(InstallerE2eTest,
       ASecondReplicaOnPostgresFinishesAKilledReplicasInstall) {
  absl::StatusOr<std::unique_ptr<testing::PostgresCluster>> cluster =
      testing::PostgresCluster::Start();
  if (!cluster.ok()) {
    MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(cluster.status());
  }
  ASSERT_OK_AND_ASSIGN(std::string db, (*cluster)->CreateDatabase("installs"));
  ASSERT_OK(RestartInstaller({"--db", db}));
  Child first = std::move(installer_);

  const std::string body = testing::LoraSd1Bytes();
  web_->SetFile("/r/lora.safetensors", {.body = body});
  web_->SetBehavior(
      "/r/lora.safetensors",
      {.bytes_per_second = static_cast<int64_t>(body.size() / 4)});
  stub_ = v1::Installer::NewStub(first.channel);
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job,
                       Create(web_->Url("/r/lora.safetensors")));
  ASSERT_OK(WatchUntil(*stub_, job.id(), [](const v1::InstallJob& j) {
              return j.bytes() > 0;
            }).status());
  // The second replica starts only now, so the first one holds the job.
  ASSERT_OK_AND_ASSIGN(Child second, StartChild(dir_.path(), "installer-b",
                                                InstallerArgv({"--db", db}),
                                                "modelmanager.v1.Installer"));
  ASSERT_OK(StopChild(first, SIGKILL));
  stub_ = v1::Installer::NewStub(second.channel);
  ASSERT_OK_AND_ASSIGN(v1::InstallJob done, Wait(job.id()));
  ASSERT_EQ(done.state(), v1::INSTALL_STATE_COMPLETED)
      << done.error().type() << ": " << done.error().message();
  EXPECT_EQ(Records().size(), 1u);
  EXPECT_THAT(ModelsEntries(), ElementsAre(done.key()));
  installer_ = std::move(second);
}

TEST_F(InstallerE2eTest,
       StartUpRemovesAbandonedTemporariesAndCanRegisterOrphans) {
  ASSERT_OK(StopChild(installer_, SIGTERM));
  // A temporary folder no job owns, and a model nobody registered.
  WriteFile(models_ / "tmpinstall_gone" / "part.safetensors.downloading", "x");
  testing::WriteLoraSd1(models_ / "dropped" / "lora.safetensors");
  ASSERT_OK(StartInstaller({"--scan-on-startup"}));
  EXPECT_FALSE(fs::exists(models_ / "tmpinstall_gone"));
  // The scan runs as the installer starts serving: follow the records
  // service's change feed (from the start) until the record arrives.
  {
    grpc::ClientContext context;
    SetDeadline(context, absl::Seconds(60));
    v1::WatchModelsRequest request;
    request.set_since_revision(0);
    auto reader = records_stub_->WatchModels(&context, request);
    v1::ModelEvent event;
    bool added = false;
    while (!added && reader->Read(&event)) {
      added = event.type() == v1::ModelEvent::ADDED;
    }
    context.TryCancel();
    reader->Finish();
    ASSERT_TRUE(added) << "no record was added";
  }
  std::vector<v1::Model> records = Records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].type(), "lora");
  EXPECT_EQ(records[0].path(), "dropped/lora.safetensors");
}

// kill -9 at each step after the download: the restarted installer finishes
// the same install, with one record, the files in models/<key>/ and no
// temporary folder left.
class InstallerCrashTest : public InstallerE2eTest,
                           public ::testing::WithParamInterface<const char*> {};

TEST_P(InstallerCrashTest, ARestartFinishesTheSameInstallExactlyOnce) {
  ASSERT_OK(RestartInstaller({}, {{"MM_INSTALLER_FAILPOINT", GetParam()}}));
  web_->SetFile("/m/lora.safetensors", {.body = testing::LoraSd1Bytes()});
  // The failpoint may kill the installer before it has answered the create
  // (its worker can reach the point first), so the create carries a
  // request id and is repeated after the restart, which returns the job.
  const std::string url = web_->Url("/m/lora.safetensors");
  absl::StatusOr<v1::InstallJob> created = Create(url, false, "", "", "crash");
  // The failpoint kills the installer: SIGKILL is 128 + 9.
  EXPECT_THAT(installer_.process->Wait(absl::Seconds(60)),
              mm::testing::IsOkAndHolds(128 + SIGKILL));

  ASSERT_OK(StartInstaller());
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job, Create(url, false, "", "", "crash"));
  if (created.ok()) {
    EXPECT_EQ(job.id(), created->id());
  }
  ASSERT_OK_AND_ASSIGN(v1::InstallJob done, Wait(job.id()));
  ASSERT_EQ(done.state(), v1::INSTALL_STATE_COMPLETED)
      << done.error().type() << ": " << done.error().message();
  std::vector<v1::Model> records = Records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].key(), done.key());
  EXPECT_EQ(ReadFile(models_ / done.key() / "lora.safetensors"),
            testing::LoraSd1Bytes());
  EXPECT_THAT(ModelsEntries(), ElementsAre(done.key()));
}

INSTANTIATE_TEST_SUITE_P(Steps, InstallerCrashTest,
                         ::testing::Values("hashing", "after-place",
                                           "before-register", "after-register"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace mm::e2e
