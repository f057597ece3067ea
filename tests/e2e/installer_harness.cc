#include "tests/e2e/installer_harness.h"

#include <signal.h>

#include <algorithm>
#include <utility>

#include "common/grpc_status.h"
#include "common/status.h"
#include "model/hashing.h"
#include "tests/testing/child_service.h"
#include "tests/testing/status_matchers.h"

namespace mm::e2e {
namespace {

namespace v1 = ::modelmanager::v1;
namespace fs = std::filesystem;

std::shared_ptr<grpc::Channel> FastChannel(const std::string& address) {
  // A socket appears a moment after the start: reconnect quickly.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   args);
}

}  // namespace

void SetDeadline(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

absl::StatusOr<Child> StartChild(
    const fs::path& dir, const std::string& name, std::vector<std::string> argv,
    const std::string& service, const std::map<std::string, std::string>& env) {
  Child child;
  child.address = "unix:" + (dir / (name + ".sock")).string();
  child.log = dir / (name + ".log");
  argv.insert(argv.begin() + 1, {"--listen", child.address});
  ASSIGN_OR_RETURN(child.process,
                   testing::Subprocess::Start(argv, child.log, env));
  child.channel = FastChannel(child.address);
  RETURN_IF_ERROR(testing::WaitForChildServing(
      *child.process, *child.channel, service, child.log, kStartTimeout));
  return child;
}

absl::Status StopChild(Child& child, int signal) {
  child.process->Signal(signal);
  return child.process->Wait(absl::Seconds(30)).status();
}

absl::StatusOr<v1::InstallJob> WatchUntil(
    v1::Installer::Stub& stub, const std::string& id,
    const std::function<bool(const v1::InstallJob&)>& done) {
  grpc::ClientContext context;
  SetDeadline(context, absl::Seconds(60));
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

std::vector<std::string> Events(const v1::InstallJob& job) {
  std::vector<std::string> events;
  for (const v1::InstallEvent& event : job.events()) {
    events.push_back(event.type());
  }
  return events;
}

void InstallerE2eTest::SetUp() {
  models_ = dir_.path() / "models";
  fs::create_directories(models_);
  ASSERT_OK_AND_ASSIGN(hub_, testing::FakeHfHub::Start());
  ASSERT_OK_AND_ASSIGN(web_, testing::HttpTestServer::Start());
  ASSERT_OK(StartRecords());
  ASSERT_OK(StartDownloader());
  ASSERT_OK(StartInstaller());
}

absl::Status InstallerE2eTest::StartRecords() {
  ASSIGN_OR_RETURN(
      records_, StartChild(dir_.path(), "records",
                           {MM_RECORDS_BIN, "--db",
                            "sqlite:" + (dir_.path() / "records.db").string()},
                           "modelmanager.v1.ModelRecords"));
  records_stub_ = v1::ModelRecords::NewStub(records_.channel);
  return absl::OkStatus();
}

absl::Status InstallerE2eTest::StartDownloader() {
  ASSIGN_OR_RETURN(
      downloader_,
      StartChild(dir_.path(), "downloader",
                 {MM_DOWNLOADER_BIN, "--db",
                  "sqlite:" + (dir_.path() / "downloads.db").string(),
                  "--download-root", models_.string(), "--allow-private-urls",
                  "--retry-delay", "50ms", "--stall-timeout", "5s"},
                 "modelmanager.v1.Downloader"));
  return absl::OkStatus();
}

std::vector<std::string> InstallerE2eTest::InstallerArgv(
    const std::vector<std::string>& extra) const {
  // A short lease, so a job of a killed replica is taken over quickly.
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
  return argv;
}

absl::Status InstallerE2eTest::StartInstaller(
    std::vector<std::string> extra,
    const std::map<std::string, std::string>& env) {
  ASSIGN_OR_RETURN(installer_,
                   StartChild(dir_.path(), "installer", InstallerArgv(extra),
                              "modelmanager.v1.Installer", env));
  stub_ = v1::Installer::NewStub(installer_.channel);
  return absl::OkStatus();
}

absl::Status InstallerE2eTest::RestartInstaller(
    std::vector<std::string> extra,
    const std::map<std::string, std::string>& env) {
  RETURN_IF_ERROR(StopChild(installer_, SIGTERM));
  return StartInstaller(std::move(extra), env);
}

absl::StatusOr<v1::InstallJob> InstallerE2eTest::Create(
    const std::string& source, bool inplace, const std::string& token,
    const std::string& config_json, const std::string& request_id) {
  grpc::ClientContext context;
  SetDeadline(context, absl::Seconds(30));
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

absl::StatusOr<v1::InstallJob> InstallerE2eTest::Wait(const std::string& id) {
  grpc::ClientContext context;
  SetDeadline(context, kInstallTimeout);
  v1::InstallJobRequest request;
  request.set_id(id);
  v1::InstallJob job;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->WaitInstall(&context, request, &job)));
  return job;
}

absl::StatusOr<v1::InstallJob> InstallerE2eTest::Install(
    const std::string& source, bool inplace, const std::string& token) {
  ASSIGN_OR_RETURN(v1::InstallJob job, Create(source, inplace, token));
  return Wait(job.id());
}

absl::StatusOr<v1::InstallPlan> InstallerE2eTest::Plan(
    const std::string& source, const std::string& token) {
  grpc::ClientContext context;
  SetDeadline(context, absl::Seconds(30));
  v1::PlanInstallRequest request;
  request.set_source(source);
  request.set_access_token(token);
  v1::InstallPlan plan;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->PlanInstall(&context, request, &plan)));
  return plan;
}

std::vector<v1::Model> InstallerE2eTest::Records() {
  grpc::ClientContext context;
  SetDeadline(context, absl::Seconds(30));
  v1::ListModelsRequest request;
  v1::ListModelsResponse response;
  grpc::Status status = records_stub_->ListModels(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return {response.models().begin(), response.models().end()};
}

std::vector<std::string> InstallerE2eTest::ModelsEntries() {
  std::vector<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(models_)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string InstallerE2eTest::Blake3(const fs::path& path) {
  absl::StatusOr<std::string> hash = model::HashPath(path, {});
  return hash.ok() ? *hash : hash.status().ToString();
}

}  // namespace mm::e2e
