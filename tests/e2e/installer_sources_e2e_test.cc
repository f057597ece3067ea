// End to end (installer_harness.h): every source kind installed through
// the real executables with spec §8's event sequences (a local file or
// folder, in place, a URL, a Hugging Face repo with a variant, a branch, a
// subfolder, a gated repo), the dedupe of a live job and of a registered
// model, bad input ending in ERROR with nothing registered and nothing left
// in the models folder, and `mm install`.

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modelmanager/v1/installer.grpc.pb.h"
#include "modelmanager/v1/records.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/installer_harness.h"
#include "tests/testing/fake_hf_hub.h"
#include "tests/testing/http_get.h"
#include "tests/testing/install_fixtures.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace mm::e2e {
namespace {

namespace v1 = ::modelmanager::v1;
namespace fs = std::filesystem;
using ::mm::testing::FakeHfHub;
using ::mm::testing::ReadFile;
using ::mm::testing::StatusIs;
using ::mm::testing::Subprocess;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

TEST_F(InstallerE2eTest, ALocalFileIsProbedHashedMovedAndRegistered) {
  const fs::path source = dir_.path() / "incoming" / "detail.safetensors";
  testing::WriteLoraSd1(source);
  const std::string hash = Blake3(source);

  ASSERT_OK_AND_ASSIGN(v1::InstallJob job, Install(source.string()));
  ASSERT_EQ(job.state(), v1::INSTALL_STATE_COMPLETED)
      << job.error().type() << ": " << job.error().message();
  EXPECT_THAT(Events(job), ElementsAre("started", "complete"));
  EXPECT_EQ(job.source_type(), "path");
  const v1::Model& model = job.config_out();
  EXPECT_EQ(model.key(), job.key());
  EXPECT_EQ(model.type(), "lora");
  EXPECT_EQ(model.base(), "sd-1");
  EXPECT_EQ(model.hash(), hash);
  EXPECT_EQ(model.path(), job.key() + "/detail.safetensors");
  EXPECT_TRUE(fs::exists(models_ / job.key() / "detail.safetensors"));
  EXPECT_FALSE(fs::exists(source));  // moved, not copied
  ASSERT_EQ(Records().size(), 1u);
  EXPECT_EQ(Records()[0].key(), job.key());
}

TEST_F(InstallerE2eTest, MetricsShowJobsByStateAndRpcs) {
  ASSERT_OK(RestartInstaller({"--metrics-listen", "127.0.0.1:0"}));
  std::string address = testing::LoggedMetricsAddress(installer_.log);
  ASSERT_THAT(address, ::testing::StartsWith("127.0.0.1:"))
      << testing::ReadFile(installer_.log);

  const fs::path source = dir_.path() / "incoming" / "detail.safetensors";
  testing::WriteLoraSd1(source);
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job, Install(source.string()));
  ASSERT_EQ(job.state(), v1::INSTALL_STATE_COMPLETED);

  ASSERT_OK_AND_ASSIGN(
      auto scrape, testing::HttpGet(address, "/metrics", absl::Seconds(20)));
  EXPECT_EQ(scrape.status, 200);
  EXPECT_THAT(scrape.body, HasSubstr("mm_jobs{state=\"completed\"} 1\n"));
  EXPECT_THAT(scrape.body, HasSubstr("mm_jobs{state=\"waiting\"} 0\n"));
  EXPECT_THAT(scrape.body, HasSubstr("mm_job_queue_depth 0\n"));
  EXPECT_THAT(scrape.body,
              HasSubstr("mm_rpc_requests_total{method=\"modelmanager.v1."
                        "Installer/CreateInstall\",code=\"OK\"} 1\n"));
  // The job store's database counts its failures in the same registry.
  EXPECT_THAT(scrape.body, HasSubstr("# TYPE mm_db_errors_total counter\n"));
}

TEST_F(InstallerE2eTest, InPlaceLeavesTheFileWhereItIs) {
  const fs::path source = dir_.path() / "elsewhere" / "sd15.safetensors";
  testing::WriteSd1Checkpoint(source);
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job,
                       Install(source.string(), /*inplace=*/true));
  ASSERT_EQ(job.state(), v1::INSTALL_STATE_COMPLETED) << job.error().message();
  EXPECT_EQ(job.config_out().path(), source.string());
  EXPECT_EQ(job.config_out().type(), "main");
  EXPECT_TRUE(fs::exists(source));
  EXPECT_THAT(ModelsEntries(), IsEmpty());
}

TEST_F(InstallerE2eTest, AUrlIsDownloadedIntoATemporaryFolderThenPlaced) {
  web_->SetFile("/files/lora.safetensors",
                {.body = testing::LoraSd1Bytes(), .etag = "\"v1\""});
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job,
                       Install(web_->Url("/files/lora.safetensors")));
  ASSERT_EQ(job.state(), v1::INSTALL_STATE_COMPLETED)
      << job.error().type() << ": " << job.error().message();
  std::vector<std::string> events = Events(job);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.front(), "download_started");
  EXPECT_THAT(std::vector<std::string>(events.end() - 3, events.end()),
              ElementsAre("downloads_complete", "started", "complete"));
  for (size_t i = 1; i + 3 < events.size(); ++i) {
    EXPECT_EQ(events[i], "download_progress");
  }
  EXPECT_EQ(job.config_out().source_type(), "url");
  EXPECT_EQ(job.config_out().path(), job.key() + "/lora.safetensors");
  EXPECT_EQ(ReadFile(models_ / job.key() / "lora.safetensors"),
            testing::LoraSd1Bytes());
  // The temporary folder is gone.
  EXPECT_THAT(ModelsEntries(), ElementsAre(job.key()));
}

TEST_F(InstallerE2eTest,
       AHuggingFaceRepoIsOneDownloadAndTheCdnNeverSeesTheToken) {
  hub_->AddRepo(testing::SdxlDiffusersRepo());
  ASSERT_OK_AND_ASSIGN(v1::InstallPlan plan, Plan("fixture/sdxl-base:fp16"));
  EXPECT_EQ(plan.commit(), hub_->CommitOf("fixture/sdxl-base"));
  for (const v1::PlannedFile& file : plan.files()) {
    EXPECT_THAT(file.path(), Not(HasSubstr("sd_xl_base_1.0")));
    if (absl::EndsWith(file.path(), ".safetensors")) {
      EXPECT_THAT(file.path(), HasSubstr(".fp16."));
      EXPECT_EQ(file.sha256().size(), 64u) << file.path();
    }
  }
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job, Install("fixture/sdxl-base:fp16",
                                                   false, "hf_secret_token"));
  ASSERT_EQ(job.state(), v1::INSTALL_STATE_COMPLETED)
      << job.error().type() << ": " << job.error().message();
  EXPECT_EQ(job.config_out().type(), "main");
  EXPECT_EQ(job.config_out().format(), "diffusers");
  EXPECT_EQ(job.config_out().base(), "sdxl");
  EXPECT_EQ(job.config_out().path(), job.key());
  EXPECT_EQ(job.config_out().source(), "fixture/sdxl-base:fp16");
  EXPECT_EQ(job.config_out().source_type(), "hf_repo_id");
  EXPECT_TRUE(job.config_out().has_source_api_response());
  EXPECT_TRUE(fs::exists(models_ / job.key() / "model_index.json"));
  EXPECT_THAT(ModelsEntries(), ElementsAre(job.key()));
  EXPECT_FALSE(hub_->CdnSawAuthorization());
  EXPECT_THAT(hub_->TokensFor(FakeHfHub::ModelInfoPath("fixture/sdxl-base")),
              Contains("hf_secret_token"));
}

TEST_F(InstallerE2eTest, AVariantMissingAsFilesComesFromItsBranch) {
  hub_->AddRepo(testing::VaeWithFp16BranchRepo());
  ASSERT_OK_AND_ASSIGN(v1::InstallPlan plan, Plan("fixture/sd-vae:fp16"));
  EXPECT_EQ(plan.revision(), "fp16");
  EXPECT_EQ(plan.commit(), hub_->CommitOf("fixture/sd-vae", "fp16"));
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job, Install("fixture/sd-vae:fp16"));
  ASSERT_EQ(job.state(), v1::INSTALL_STATE_COMPLETED) << job.error().message();
  EXPECT_EQ(job.config_out().type(), "vae");
}

TEST_F(InstallerE2eTest, ASubfolderOfARepoIsInstalledAsItsOwnModel) {
  hub_->AddRepo(testing::SdxlDiffusersRepo());
  ASSERT_OK_AND_ASSIGN(v1::InstallPlan plan, Plan("fixture/sdxl-base::vae"));
  for (const v1::PlannedFile& file : plan.files()) {
    EXPECT_TRUE(absl::StartsWith(file.path(), "sdxl-base_vae/")) << file.path();
  }
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job, Install("fixture/sdxl-base::vae"));
  ASSERT_EQ(job.state(), v1::INSTALL_STATE_COMPLETED)
      << job.error().type() << ": " << job.error().message();
  EXPECT_EQ(job.config_out().type(), "vae");
  EXPECT_EQ(job.config_out().base(), "sdxl");
  EXPECT_TRUE(fs::exists(models_ / job.key() / "config.json"));
  std::vector<std::string> events = Events(job);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.front(), "download_started");
  EXPECT_THAT(std::vector<std::string>(events.end() - 3, events.end()),
              ElementsAre("downloads_complete", "started", "complete"));
}

TEST_F(InstallerE2eTest, AGatedRepoNeedsAToken) {
  hub_->AddRepo(testing::GatedVaeRepo("good-token"));
  EXPECT_THAT(Plan("fixture/gated-vae"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("needs an access token")));
  EXPECT_THAT(Plan("fixture/gated-vae", "bad-token"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("refused the access token")));
  ASSERT_OK_AND_ASSIGN(v1::InstallJob failed, Install("fixture/gated-vae"));
  EXPECT_EQ(failed.state(), v1::INSTALL_STATE_ERROR);
  EXPECT_EQ(failed.error().code(), "PERMISSION_DENIED");
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job,
                       Install("fixture/gated-vae", false, "good-token"));
  ASSERT_EQ(job.state(), v1::INSTALL_STATE_COMPLETED) << job.error().message();
  EXPECT_FALSE(hub_->CdnSawAuthorization());
  EXPECT_THAT(
      Plan("fixture/no-such-repo"),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("fixture/no-such-repo")));
}

TEST_F(InstallerE2eTest, AHubListingATraversalNameIsRefused) {
  hub_->AddRepo(testing::HostileNameRepo());
  EXPECT_THAT(
      Plan("fixture/hostile"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("../../x")));
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job, Install("fixture/hostile"));
  EXPECT_EQ(job.state(), v1::INSTALL_STATE_ERROR);
  EXPECT_THAT(job.error().message(), HasSubstr("../../x"));
  EXPECT_THAT(ModelsEntries(), IsEmpty());
  EXPECT_THAT(Records(), IsEmpty());
}

TEST_F(InstallerE2eTest, TheSameModelTwiceEndsInAlreadyExistsAndLeavesNothing) {
  const fs::path first = dir_.path() / "a" / "lora.safetensors";
  testing::WriteLoraSd1(first);
  ASSERT_OK_AND_ASSIGN(v1::InstallJob installed, Install(first.string()));
  ASSERT_EQ(installed.state(), v1::INSTALL_STATE_COMPLETED);

  web_->SetFile("/again.safetensors", {.body = testing::LoraSd1Bytes()});
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job,
                       Install(web_->Url("/again.safetensors")));
  EXPECT_EQ(job.state(), v1::INSTALL_STATE_ERROR);
  EXPECT_EQ(job.error().code(), "ALREADY_EXISTS");
  EXPECT_THAT(job.error().message(), HasSubstr(installed.key()));
  EXPECT_THAT(ModelsEntries(), ElementsAre(installed.key()));
  EXPECT_EQ(Records().size(), 1u);
}

TEST_F(InstallerE2eTest, ASourceWithALiveJobReturnsThatJob) {
  const std::string body = testing::LoraSd1Bytes();
  web_->SetFile("/live/lora.safetensors", {.body = body});
  web_->SetBehavior(
      "/live/lora.safetensors",
      {.bytes_per_second = static_cast<int64_t>(body.size() / 2)});
  ASSERT_OK_AND_ASSIGN(v1::InstallJob first,
                       Create(web_->Url("/live/lora.safetensors")));
  ASSERT_OK_AND_ASSIGN(v1::InstallJob second,
                       Create(web_->Url("/live/lora.safetensors")));
  EXPECT_EQ(second.id(), first.id());
  ASSERT_OK_AND_ASSIGN(v1::InstallJob done, Wait(first.id()));
  ASSERT_EQ(done.state(), v1::INSTALL_STATE_COMPLETED)
      << done.error().message();
  // Once it is finished, the same source is a new job (and a duplicate).
  ASSERT_OK_AND_ASSIGN(v1::InstallJob third,
                       Install(web_->Url("/live/lora.safetensors")));
  EXPECT_NE(third.id(), first.id());
  EXPECT_EQ(third.error().code(), "ALREADY_EXISTS");
}

TEST_F(InstallerE2eTest, BadSourcesAreRefusedOrFailWithNothingLeft) {
  EXPECT_THAT(Create("not a source"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unsupported model source")));
  EXPECT_THAT(Create((dir_.path() / "missing.safetensors").string()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
  EXPECT_THAT(
      Create(dir_.path().string(), false, "", "[1]"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("config_json")));

  // Not a model: ERROR, nothing registered, the file left where it was.
  const fs::path junk = dir_.path() / "junk.safetensors";
  testing::WriteNonModelSafetensors(junk);
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job, Install(junk.string()));
  EXPECT_EQ(job.state(), v1::INSTALL_STATE_ERROR);
  EXPECT_EQ(job.error().type(), "InvalidModelConfig");
  EXPECT_TRUE(fs::exists(junk));

  // A hostile pickle: refused, nothing run.
  const fs::path marker = dir_.path() / "pwned";
  const fs::path pickle = dir_.path() / "evil.ckpt";
  testing::WriteHostilePickleCheckpoint(pickle, marker.string());
  ASSERT_OK_AND_ASSIGN(v1::InstallJob evil, Install(pickle.string()));
  EXPECT_EQ(evil.state(), v1::INSTALL_STATE_ERROR);
  EXPECT_FALSE(fs::exists(marker));

  // An HTML page where a model was expected: the downloader refuses it by
  // its content type; served as bytes, the probe refuses it.
  web_->SetFile("/login", {.body = testing::HtmlPageBytes(),
                           .content_type = "text/html"});
  ASSERT_OK_AND_ASSIGN(v1::InstallJob html, Install(web_->Url("/login")));
  EXPECT_EQ(html.state(), v1::INSTALL_STATE_ERROR);
  EXPECT_EQ(html.error().type(), "UnexpectedContentType");
  web_->SetFile("/model.safetensors", {.body = testing::HtmlPageBytes()});
  ASSERT_OK_AND_ASSIGN(v1::InstallJob page,
                       Install(web_->Url("/model.safetensors")));
  EXPECT_EQ(page.state(), v1::INSTALL_STATE_ERROR);
  EXPECT_EQ(page.error().type(), "InvalidModelConfig");

  EXPECT_THAT(Records(), IsEmpty());
  EXPECT_THAT(ModelsEntries(), IsEmpty());
}

TEST_F(InstallerE2eTest, MmInstallWaitsAndPrintsTheRecordAsConfigJson) {
  const fs::path source = dir_.path() / "cli" / "detail.safetensors";
  testing::WriteLoraSd1(source);
  const std::map<std::string, std::string> env = {
      {"MM_INSTALLER_ADDR", installer_.address},
      {"MM_HOME", (dir_.path() / "home").string()}};
  const fs::path out = dir_.path() / "mm-install.out";
  ASSERT_OK_AND_ASSIGN(
      auto mm, Subprocess::Start({MM_BIN, "install", source.string(), "--set",
                                  "name=My detail", "--wait", "--json"},
                                 out, env));
  EXPECT_THAT(mm->Wait(absl::Seconds(60)), mm::testing::IsOkAndHolds(0))
      << ReadFile(out);
  const nlohmann::json job =
      nlohmann::json::parse(ReadFile(out), nullptr, false);
  ASSERT_TRUE(job.is_object()) << ReadFile(out);
  EXPECT_EQ(job["state"], "INSTALL_STATE_COMPLETED");
  EXPECT_EQ(job["config_out"]["name"], "My detail");
  EXPECT_EQ(job["config_out"]["type"], "lora");

  // A failing install exits non-zero with the job's error.
  const fs::path junk = dir_.path() / "cli" / "junk.safetensors";
  testing::WriteNonModelSafetensors(junk);
  const fs::path err = dir_.path() / "mm-junk.out";
  ASSERT_OK_AND_ASSIGN(
      auto failing,
      Subprocess::Start({MM_BIN, "install", junk.string(), "--wait"}, err,
                        env));
  EXPECT_THAT(failing->Wait(absl::Seconds(60)), mm::testing::IsOkAndHolds(1));
  EXPECT_THAT(ReadFile(err), HasSubstr("InvalidModelConfig"));

  // models rm --delete-files goes through the installer.
  const fs::path rm = dir_.path() / "mm-rm.out";
  ASSERT_OK_AND_ASSIGN(
      auto remove,
      Subprocess::Start({MM_BIN, "models", "rm", job["key"].get<std::string>(),
                         "--delete-files"},
                        rm, env));
  EXPECT_THAT(remove->Wait(absl::Seconds(60)), mm::testing::IsOkAndHolds(0))
      << ReadFile(rm);
  EXPECT_THAT(ModelsEntries(), IsEmpty());
}

}  // namespace
}  // namespace mm::e2e
