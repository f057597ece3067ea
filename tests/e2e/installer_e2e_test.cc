// End to end: the real mm-records, mm-downloader and mm-installer
// executables on loopback, with a fake Hugging Face hub (and its CDN on
// 127.0.0.2) and a loopback HTTP server for URL sources. Every source kind
// is installed, with spec §8's event sequences; bad inputs end in ERROR with
// nothing registered and nothing left in the models folder; the installer
// killed with SIGKILL mid-install finishes the same install after a restart.
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "model/hashing.h"
#include "modelmanager/v1/installer.grpc.pb.h"
#include "modelmanager/v1/records.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/testing/child_service.h"
#include "tests/testing/fake_hf_hub.h"
#include "tests/testing/http_get.h"
#include "tests/testing/http_test_server.h"
#include "tests/testing/install_fixtures.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/postgres_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace mm {
namespace {

namespace v1 = modelmanager::v1;
namespace fs = std::filesystem;
using ::mm::testing::FakeHfHub;
using ::mm::testing::HttpTestServer;
using ::mm::testing::ReadFile;
using ::mm::testing::StatusIs;
using ::mm::testing::Subprocess;
using ::mm::testing::TempDir;
using ::mm::testing::WaitForChildServing;
using ::mm::testing::WriteFile;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr absl::Duration kStartTimeout = absl::Seconds(60);
constexpr absl::Duration kInstallTimeout = absl::Seconds(60);

std::shared_ptr<grpc::Channel> FastChannel(const std::string& address) {
  // A socket appears a moment after the start: reconnect quickly.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   args);
}

template <typename Request>
void SetDeadline(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

// One service process with its channel.
struct Child {
  std::string address;
  fs::path log;
  std::unique_ptr<Subprocess> process;
  std::shared_ptr<grpc::Channel> channel;
};

absl::StatusOr<Child> StartChild(
    const fs::path& dir, const std::string& name, std::vector<std::string> argv,
    const std::string& service,
    const std::map<std::string, std::string>& env = {}) {
  Child child;
  child.address = "unix:" + (dir / (name + ".sock")).string();
  child.log = dir / (name + ".log");
  argv.insert(argv.begin() + 1, {"--listen", child.address});
  ASSIGN_OR_RETURN(child.process, Subprocess::Start(argv, child.log, env));
  child.channel = FastChannel(child.address);
  RETURN_IF_ERROR(WaitForChildServing(*child.process, *child.channel, service,
                                      child.log, kStartTimeout));
  return child;
}

// records + downloader + installer on one models folder, the hub and a
// plain HTTP server for URL sources.
class InstallerE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    models_ = dir_.path() / "models";
    fs::create_directories(models_);
    ASSERT_OK_AND_ASSIGN(hub_, FakeHfHub::Start());
    ASSERT_OK_AND_ASSIGN(web_, HttpTestServer::Start());
    ASSERT_OK_AND_ASSIGN(
        records_,
        StartChild(dir_.path(), "records",
                   {MM_RECORDS_BIN, "--db",
                    "sqlite:" + (dir_.path() / "records.db").string()},
                   "modelmanager.v1.ModelRecords"));
    ASSERT_OK_AND_ASSIGN(
        downloader_,
        StartChild(dir_.path(), "downloader",
                   {MM_DOWNLOADER_BIN, "--db",
                    "sqlite:" + (dir_.path() / "downloads.db").string(),
                    "--download-root", models_.string(), "--allow-private-urls",
                    "--retry-delay", "50ms", "--stall-timeout", "5s"},
                   "modelmanager.v1.Downloader"));
    ASSERT_OK(StartInstaller());
    records_stub_ = v1::ModelRecords::NewStub(records_.channel);
  }

  absl::Status StartInstaller(
      std::vector<std::string> extra = {},
      const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> argv = {
        MM_INSTALLER_BIN,
        "--db",
        "sqlite:" + (dir_.path() / "installs.db").string(),
        "--records",
        records_.address,
        "--downloader",
        downloader_.address,
        "--models-dir",
        models_.string(),
        "--hf-endpoint",
        hub_->endpoint(),
        "--allow-private-urls",
        "--lease",
        "3s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSIGN_OR_RETURN(installer_, StartChild(dir_.path(), "installer", argv,
                                            "modelmanager.v1.Installer", env));
    stub_ = v1::Installer::NewStub(installer_.channel);
    return absl::OkStatus();
  }

  absl::StatusOr<v1::InstallJob> Create(const std::string& source,
                                        bool inplace = false,
                                        const std::string& token = "",
                                        const std::string& config_json = "",
                                        const std::string& request_id = "") {
    grpc::ClientContext context;
    SetDeadline<int>(context, absl::Seconds(30));
    v1::CreateInstallRequest request;
    request.set_source(source);
    request.set_inplace(inplace);
    request.set_access_token(token);
    request.set_config_json(config_json);
    request.set_request_id(request_id);
    v1::InstallJob job;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub_->CreateInstall(&context, request, &job)));
    return job;
  }

  absl::StatusOr<v1::InstallJob> Wait(const std::string& id) {
    grpc::ClientContext context;
    SetDeadline<int>(context, kInstallTimeout);
    v1::InstallJobRequest request;
    request.set_id(id);
    v1::InstallJob job;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub_->WaitInstall(&context, request, &job)));
    return job;
  }

  absl::StatusOr<v1::InstallJob> Install(const std::string& source,
                                         bool inplace = false,
                                         const std::string& token = "") {
    ASSIGN_OR_RETURN(v1::InstallJob job, Create(source, inplace, token));
    return Wait(job.id());
  }

  absl::StatusOr<v1::InstallPlan> Plan(const std::string& source,
                                       const std::string& token = "") {
    grpc::ClientContext context;
    SetDeadline<int>(context, absl::Seconds(30));
    v1::PlanInstallRequest request;
    request.set_source(source);
    request.set_access_token(token);
    v1::InstallPlan plan;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub_->PlanInstall(&context, request, &plan)));
    return plan;
  }

  std::vector<v1::Model> Records() {
    grpc::ClientContext context;
    SetDeadline<int>(context, absl::Seconds(30));
    v1::ListModelsRequest request;
    v1::ListModelsResponse response;
    grpc::Status status =
        records_stub_->ListModels(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.models().begin(), response.models().end()};
  }

  static std::vector<std::string> Events(const v1::InstallJob& job) {
    std::vector<std::string> events;
    for (const v1::InstallEvent& event : job.events()) {
      events.push_back(event.type());
    }
    return events;
  }

  // What the models folder holds at its top level.
  std::vector<std::string> ModelsEntries() {
    std::vector<std::string> names;
    for (const fs::directory_entry& entry : fs::directory_iterator(models_)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string Blake3(const fs::path& path) {
    absl::StatusOr<std::string> hash = model::HashPath(path, {});
    return hash.ok() ? *hash : hash.status().ToString();
  }

  TempDir dir_;
  fs::path models_;
  std::unique_ptr<FakeHfHub> hub_;
  std::unique_ptr<HttpTestServer> web_;
  Child records_;
  Child downloader_;
  Child installer_;
  std::unique_ptr<v1::Installer::Stub> stub_;
  std::unique_ptr<v1::ModelRecords::Stub> records_stub_;
};

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
  installer_.process->Signal(SIGTERM);
  ASSERT_OK(installer_.process->Wait(absl::Seconds(30)).status());
  ASSERT_OK(StartInstaller({"--metrics-listen", "127.0.0.1:0"}));
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
  for (int i = 0; i < 600; ++i) {
    grpc::ClientContext context;
    SetDeadline<int>(context, absl::Seconds(10));
    v1::GetInstallRequest request;
    request.set_id(job.id());
    v1::InstallJob now;
    ASSERT_TRUE(stub_->GetInstall(&context, request, &now).ok());
    if (now.bytes() > 0) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  installer_.process->Signal(SIGKILL);
  ASSERT_OK(installer_.process->Wait(absl::Seconds(10)).status());
  web_->SetBehavior("/slow.safetensors", {});
  ASSERT_OK(StartInstaller());
  ASSERT_OK_AND_ASSIGN(v1::InstallJob done, Wait(job.id()));
  ASSERT_EQ(done.state(), v1::INSTALL_STATE_COMPLETED)
      << done.error().type() << ": " << done.error().message();
  EXPECT_EQ(Records().size(), 1u);
  EXPECT_THAT(ModelsEntries(), ElementsAre(done.key()));
}

TEST_F(InstallerE2eTest, DeleteRemovesFilesInsideTheModelsFolderOnlyWhenAsked) {
  auto remove =
      [&](const std::string& key, bool files,
          bool always) -> absl::StatusOr<v1::DeleteInstalledModelResponse> {
    grpc::ClientContext context;
    SetDeadline<int>(context, absl::Seconds(30));
    v1::DeleteInstalledModelRequest request;
    request.set_key(key);
    request.set_delete_files(files);
    request.set_unconditionally(always);
    v1::DeleteInstalledModelResponse response;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub_->DeleteModel(&context, request, &response)));
    return response;
  };
  const fs::path a = dir_.path() / "a.safetensors";
  testing::WriteLoraSd1(a);
  ASSERT_OK_AND_ASSIGN(v1::InstallJob inside, Install(a.string()));
  const fs::path outside = dir_.path() / "keep" / "sd15.safetensors";
  testing::WriteSd1Checkpoint(outside);
  ASSERT_OK_AND_ASSIGN(v1::InstallJob in_place,
                       Install(outside.string(), /*inplace=*/true));
  ASSERT_EQ(in_place.state(), v1::INSTALL_STATE_COMPLETED);

  // delete: the record and models/<key>/.
  ASSERT_OK_AND_ASSIGN(auto removed, remove(inside.key(), true, false));
  EXPECT_THAT(removed.removed_paths(),
              ElementsAre((models_ / inside.key()).string()));
  EXPECT_FALSE(fs::exists(models_ / inside.key()));
  // delete of a file outside the models folder: only the record.
  ASSERT_OK_AND_ASSIGN(removed, remove(in_place.key(), true, false));
  EXPECT_THAT(removed.removed_paths(), IsEmpty());
  EXPECT_TRUE(fs::exists(outside));
  EXPECT_THAT(Records(), IsEmpty());
  EXPECT_THAT(remove(in_place.key(), true, false),
              StatusIs(absl::StatusCode::kNotFound));
  // unconditionally: the files wherever they are.
  ASSERT_OK_AND_ASSIGN(v1::InstallJob again,
                       Install(outside.string(), /*inplace=*/true));
  ASSERT_OK_AND_ASSIGN(removed, remove(again.key(), false, true));
  EXPECT_THAT(removed.removed_paths(), ElementsAre(outside.string()));
  EXPECT_FALSE(fs::exists(outside));
}

TEST_F(InstallerE2eTest, SyncReportsMissingFilesAndRegistersOrphansWhenAsked) {
  auto sync =
      [&](bool register_orphans) -> absl::StatusOr<v1::SyncModelsResponse> {
    grpc::ClientContext context;
    SetDeadline<int>(context, absl::Seconds(30));
    v1::SyncModelsRequest request;
    request.set_register_orphans(register_orphans);
    v1::SyncModelsResponse response;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub_->SyncModels(&context, request, &response)));
    return response;
  };
  const fs::path a = dir_.path() / "a.safetensors";
  testing::WriteLoraSd1(a);
  ASSERT_OK_AND_ASSIGN(v1::InstallJob gone, Install(a.string()));
  fs::remove_all(models_ / gone.key());
  testing::WriteSd1Checkpoint(models_ / "dropped" / "sd15.safetensors");

  ASSERT_OK_AND_ASSIGN(v1::SyncModelsResponse report, sync(false));
  EXPECT_THAT(report.missing_keys(), ElementsAre(gone.key()));
  EXPECT_THAT(report.orphan_paths(),
              ElementsAre((models_ / "dropped" / "sd15.safetensors").string()));
  EXPECT_THAT(report.registered_keys(), IsEmpty());
  EXPECT_EQ(Records().size(), 1u);  // missing files never delete a record

  ASSERT_OK_AND_ASSIGN(report, sync(true));
  ASSERT_EQ(report.registered_keys_size(), 1);
  ASSERT_OK_AND_ASSIGN(report, sync(false));
  EXPECT_THAT(report.orphan_paths(), IsEmpty());
  EXPECT_EQ(Records().size(), 2u);
}

TEST_F(InstallerE2eTest,
       DownloadAndCacheFetchesOnceAndEvictsTheLeastRecentlyUsed) {
  auto fetch = [&](const std::string& source)
      -> absl::StatusOr<v1::DownloadAndCacheResponse> {
    grpc::ClientContext context;
    SetDeadline<int>(context, absl::Seconds(60));
    v1::DownloadAndCacheRequest request;
    request.set_source(source);
    v1::DownloadAndCacheResponse response;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub_->DownloadAndCache(&context, request, &response)));
    return response;
  };
  // A cache of 2.5 files of this size.
  const std::string body = testing::LoraSd1Bytes();
  installer_.process->Signal(SIGTERM);
  ASSERT_OK(installer_.process->Wait(absl::Seconds(30)).status());
  ASSERT_OK(StartInstaller(
      {"--download-cache-size", std::to_string(body.size() * 5 / 2)}));
  for (const char* name :
       {"/c/one.safetensors", "/c/two.safetensors", "/c/three.safetensors"}) {
    web_->SetFile(name, {.body = body});
  }
  ASSERT_OK_AND_ASSIGN(auto one, fetch(web_->Url("/c/one.safetensors")));
  EXPECT_FALSE(one.cached());
  EXPECT_EQ(ReadFile(one.path()), body);
  EXPECT_THAT(one.path(), HasSubstr("/.download_cache/"));
  ASSERT_OK_AND_ASSIGN(auto again, fetch(web_->Url("/c/one.safetensors")));
  EXPECT_TRUE(again.cached());
  EXPECT_EQ(again.path(), one.path());
  EXPECT_EQ(web_->RequestsFor("/c/one.safetensors").size(), 1u);

  ASSERT_OK_AND_ASSIGN(auto two, fetch(web_->Url("/c/two.safetensors")));
  // One is used again, so two is the least recently used when three needs
  // room.
  ASSERT_OK(fetch(web_->Url("/c/one.safetensors")).status());
  ASSERT_OK_AND_ASSIGN(auto three, fetch(web_->Url("/c/three.safetensors")));
  EXPECT_TRUE(fs::exists(one.path()));
  EXPECT_FALSE(fs::exists(two.path()));
  EXPECT_TRUE(fs::exists(three.path()));

  // Larger than the whole cache.
  web_->SetFile("/c/huge.safetensors",
                {.body = std::string(body.size() * 3, 'x')});
  EXPECT_THAT(fetch(web_->Url("/c/huge.safetensors")),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("--download-cache-size")));
  EXPECT_TRUE(fs::exists(one.path()));
}

// Follows the job until `done(job)` holds (or 60 s pass).
absl::StatusOr<v1::InstallJob> WatchUntil(
    v1::Installer::Stub& stub, const std::string& id,
    const std::function<bool(const v1::InstallJob&)>& done) {
  grpc::ClientContext context;
  SetDeadline<int>(context, absl::Seconds(60));
  v1::WatchInstallRequest request;
  request.set_id(id);
  auto reader = stub.WatchInstall(&context, request);
  v1::InstallJob job;
  while (reader->Read(&job)) {
    if (done(job)) {
      context.TryCancel();
      reader->Finish();
      return job;
    }
  }
  RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
  return absl::NotFoundError("the watch ended before the condition held");
}

TEST_F(InstallerE2eTest, TheJobWaitsForARecordsServiceThatRestarts) {
  const std::string body = testing::LoraSd1Bytes();
  web_->SetFile("/w/lora.safetensors", {.body = body});
  web_->SetBehavior(
      "/w/lora.safetensors",
      {.bytes_per_second = static_cast<int64_t>(body.size() / 2)});
  records_.process->Signal(SIGKILL);
  ASSERT_OK(records_.process->Wait(absl::Seconds(10)).status());
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
  ASSERT_OK_AND_ASSIGN(
      records_, StartChild(dir_.path(), "records",
                           {MM_RECORDS_BIN, "--db",
                            "sqlite:" + (dir_.path() / "records.db").string()},
                           "modelmanager.v1.ModelRecords"));
  records_stub_ = v1::ModelRecords::NewStub(records_.channel);
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
  installer_.process->Signal(SIGTERM);
  ASSERT_OK(installer_.process->Wait(absl::Seconds(30)).status());
  ASSERT_OK(StartInstaller({"--db", db}));
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
  const std::string socket_name = "installer-b";
  std::vector<std::string> argv = {MM_INSTALLER_BIN,
                                   "--db",
                                   db,
                                   "--records",
                                   records_.address,
                                   "--downloader",
                                   downloader_.address,
                                   "--models-dir",
                                   models_.string(),
                                   "--hf-endpoint",
                                   hub_->endpoint(),
                                   "--allow-private-urls",
                                   "--lease",
                                   "3s"};
  ASSERT_OK_AND_ASSIGN(Child second, StartChild(dir_.path(), socket_name, argv,
                                                "modelmanager.v1.Installer"));
  first.process->Signal(SIGKILL);
  ASSERT_OK(first.process->Wait(absl::Seconds(10)).status());
  stub_ = v1::Installer::NewStub(second.channel);
  ASSERT_OK_AND_ASSIGN(v1::InstallJob done, Wait(job.id()));
  ASSERT_EQ(done.state(), v1::INSTALL_STATE_COMPLETED)
      << done.error().type() << ": " << done.error().message();
  EXPECT_EQ(Records().size(), 1u);
  EXPECT_THAT(ModelsEntries(), ElementsAre(done.key()));
  installer_ = std::move(second);
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

TEST_F(InstallerE2eTest, TheJobWaitsForADownloaderThatRestarts) {
  const std::string body = testing::LoraSd1Bytes();
  web_->SetFile("/d/lora.safetensors", {.body = body});
  downloader_.process->Signal(SIGKILL);
  ASSERT_OK(downloader_.process->Wait(absl::Seconds(10)).status());
  ASSERT_OK_AND_ASSIGN(v1::InstallJob job,
                       Create(web_->Url("/d/lora.safetensors")));
  ASSERT_OK_AND_ASSIGN(
      v1::InstallJob waiting,
      WatchUntil(*stub_, job.id(), [](const v1::InstallJob& j) {
        return absl::StrContains(j.status_message(),
                                 "waiting for the downloader");
      }));
  EXPECT_FALSE(waiting.done());
  ASSERT_OK_AND_ASSIGN(
      downloader_,
      StartChild(dir_.path(), "downloader",
                 {MM_DOWNLOADER_BIN, "--db",
                  "sqlite:" + (dir_.path() / "downloads.db").string(),
                  "--download-root", models_.string(), "--allow-private-urls",
                  "--retry-delay", "50ms", "--stall-timeout", "5s"},
                 "modelmanager.v1.Downloader"));
  ASSERT_OK_AND_ASSIGN(v1::InstallJob done, Wait(job.id()));
  ASSERT_EQ(done.state(), v1::INSTALL_STATE_COMPLETED)
      << done.error().message();
  EXPECT_EQ(Records().size(), 1u);
}

TEST_F(InstallerE2eTest,
       StartUpRemovesAbandonedTemporariesAndCanRegisterOrphans) {
  installer_.process->Signal(SIGTERM);
  ASSERT_OK(installer_.process->Wait(absl::Seconds(30)).status());
  // A temporary folder no job owns, and a model nobody registered.
  WriteFile(models_ / "tmpinstall_gone" / "part.safetensors.downloading", "x");
  testing::WriteLoraSd1(models_ / "dropped" / "lora.safetensors");
  ASSERT_OK(StartInstaller({"--scan-on-startup"}));
  EXPECT_FALSE(fs::exists(models_ / "tmpinstall_gone"));
  // The scan runs as the installer starts serving: follow the records
  // service's change feed (from the start) until the record arrives.
  {
    grpc::ClientContext context;
    SetDeadline<int>(context, absl::Seconds(60));
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
  installer_.process->Signal(SIGTERM);
  ASSERT_OK(installer_.process->Wait(absl::Seconds(30)).status());
  ASSERT_OK(StartInstaller({}, {{"MM_INSTALLER_FAILPOINT", GetParam()}}));
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
  if (created.ok()) EXPECT_EQ(job.id(), created->id());
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
}  // namespace mm
