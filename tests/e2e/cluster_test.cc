// End to end: a cluster on loopback, with faults. As real processes on TCP
// with TLS and bearer tokens: 2 mm-records, 3 mm-downloader, 2 mm-installer
// and 1 mm-loader over one PostgreSQL, with a loopback file server for URL
// sources and the fake Hugging Face hub. Twenty installs (URL, hub and local
// sources) are started at once; while they run, one records, one
// downloader and one installer replica are killed with SIGKILL, PostgreSQL
// is restarted, and the loader is killed after a first load and restarted.
// Then every install has completed exactly once, the records and the models
// folder agree, the loader serves a model installed through another
// replica, and neither the bearer token nor the hub token is in any log or
// any table. The installer and the loader reach the replicas through one
// "ipv4:A,B" target (round-robin, common/client.h).
//
// When the build found them (tests/CMakeLists.txt), the Node.js and Python
// examples then install a model through the same cluster with TLS and the
// token, which makes "clients in any language" a tested fact.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/client.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "modelmanager/v1/installer.grpc.pb.h"
#include "modelmanager/v1/loader.grpc.pb.h"
#include "modelmanager/v1/records.grpc.pb.h"
#include "tests/testing/child_service.h"
#include "tests/testing/fake_hf_hub.h"
#include "tests/testing/http_test_server.h"
#include "tests/testing/model_fixtures.h"
#include "tests/testing/postgres_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace mm {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::modelmanager::v1;
using ::mm::testing::FakeHfHub;
using ::mm::testing::HttpTestServer;
using ::mm::testing::PostgresCluster;
using ::mm::testing::ReadFile;
using ::mm::testing::Subprocess;
using ::mm::testing::TempDir;
using ::mm::testing::WriteFile;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

// Each wait's own bound; the whole test stays far below them (about 15 s in
// the default build), and the sum of what can pass is under 90 s with
// ThreadSanitizer.
constexpr absl::Duration kStartTimeout = absl::Seconds(30);
constexpr absl::Duration kCallTimeout = absl::Seconds(10);
constexpr absl::Duration kAllInstallsTimeout = absl::Seconds(60);

// The leases of the downloaders' and installers' jobs: a killed replica's
// jobs are taken over this long after its last renewal. Longer than the
// PostgreSQL restart (about a second), so that a replica that cannot reach
// the database meanwhile keeps its jobs instead of handing them over. (A
// downloader that cannot renew a lease stops the job a quarter of the lease
// before it ends, so a shorter lease would cost restarts, not two replicas
// writing one file; tests/downloader/engine_lease_test.cc.)
constexpr char kLease[] = "5s";

constexpr int kInstalls = 20;
// Sources 0-7 are URLs (0-3 sent slowly, so that the faults find them
// running), 8-13 hub repos (8 and 9 slow on the CDN), 14-19 local files.
constexpr int kFirstHub = 8;
constexpr int kFirstLocal = 14;
constexpr int kSlowUrls = 4;
constexpr int kSlowHub = 2;
// A model is about 6 KiB: the slow ones take about 3 s.
constexpr int64_t kSlowBytesPerSecond = 2048;

constexpr char kBearerToken[] = "mm-cluster-bearer-5f0c1e7a9b2d";
constexpr char kHubToken[] = "hf_cluster_hub_token_8e41d2c3";

// A free TCP port on 127.0.0.1. The services are given fixed ports (not 0)
// because a killed replica comes back on the address its peers were given.
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (fd < 0 ||
      ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    if (fd >= 0) ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

// The embedding tensor of model `index`: random, so that every model has
// its own hash (the same bytes twice would be ALREADY_EXISTS).
std::string TensorData(int index) {
  std::mt19937 random(1000 + index);
  std::string data(2 * 768 * 4, '\0');
  for (char& c : data) c = static_cast<char>(random() & 0x3f);
  return data;
}

// A textual-inversion embedding for sd-1 (emb_params [2, 768]).
std::string ModelBytes(int index) {
  return testing::SafetensorsBytes({{.name = "emb_params",
                                     .dtype = "F32",
                                     .shape = {2, 768},
                                     .data = TensorData(index)}});
}

// One replica: its fixed address, its log (appended to across restarts)
// and, while it runs, its process.
struct Replica {
  std::string name;
  std::string health_name;
  std::vector<std::string> argv;  // without the server flags
  int port = 0;
  fs::path log;
  std::unique_ptr<Subprocess> process;

  std::string address() const { return absl::StrCat("127.0.0.1:", port); }
};

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<PostgresCluster>> postgres =
        PostgresCluster::Start();
    if (!postgres.ok()) MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(postgres.status());
    postgres_ = *std::move(postgres);
    ASSERT_OK_AND_ASSIGN(records_db_, postgres_->CreateDatabase("records"));
    ASSERT_OK_AND_ASSIGN(downloads_db_, postgres_->CreateDatabase("downloads"));
    ASSERT_OK_AND_ASSIGN(installs_db_, postgres_->CreateDatabase("installs"));

    // One self-signed certificate for localhost and 127.0.0.1 serves every
    // replica and is the clients' CA; made with the openssl command so the
    // repository carries no key material.
    cert_ = dir_.path() / "tls" / "server.pem";
    key_ = dir_.path() / "tls" / "server.key";
    fs::create_directories(cert_.parent_path());
    ASSERT_OK_AND_ASSIGN(
        testing::CommandResult openssl,
        testing::RunCommand(
            {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048",
             "-nodes", "-keyout", key_.string(), "-out", cert_.string(),
             "-days", "1", "-subj", "/CN=localhost", "-addext",
             "subjectAltName=DNS:localhost,IP:127.0.0.1"},
            absl::Seconds(30)));
    ASSERT_EQ(openssl.exit_code, 0) << openssl.err;
    token_file_ = dir_.path() / "secrets" / "token";
    hub_token_file_ = dir_.path() / "secrets" / "hf-token";
    WriteFile(token_file_, absl::StrCat(kBearerToken, "\n"));
    WriteFile(hub_token_file_, absl::StrCat(kHubToken, "\n"));
    client_options_.tls_ca = cert_.string();
    client_options_.token_file = token_file_.string();

    models_ = dir_.path() / "models";
    fs::create_directories(models_);
    ASSERT_OK_AND_ASSIGN(hub_, FakeHfHub::Start());
    ASSERT_OK_AND_ASSIGN(web_, HttpTestServer::Start());

    for (int i = 0; i < 2; ++i) {
      records_.push_back(MakeReplica(
          absl::StrCat("records-", i), "modelmanager.v1.ModelRecords",
          {MM_RECORDS_BIN, "--db", records_db_, "--health-interval", "500ms"}));
    }
    for (int i = 0; i < 3; ++i) {
      downloaders_.push_back(MakeReplica(
          absl::StrCat("downloader-", i), "modelmanager.v1.Downloader",
          {MM_DOWNLOADER_BIN, "--db", downloads_db_, "--download-root",
           models_.string(), "--allow-private-urls", "--retry-delay", "50ms",
           "--max-retry-delay", "500ms", "--max-attempts", "30",
           "--stall-timeout", "5s", "--lease", kLease, "--health-interval",
           "500ms"}));
    }
    const std::string records_target = Target(records_);
    for (int i = 0; i < 2; ++i) {
      installers_.push_back(MakeReplica(absl::StrCat("installer-", i),
                                        "modelmanager.v1.Installer",
                                        {MM_INSTALLER_BIN,
                                         "--db",
                                         installs_db_,
                                         "--records",
                                         records_target,
                                         "--downloader",
                                         Target(downloaders_),
                                         "--service-token-file",
                                         token_file_.string(),
                                         "--service-tls-ca",
                                         cert_.string(),
                                         "--models-dir",
                                         models_.string(),
                                         "--hf-endpoint",
                                         hub_->endpoint(),
                                         "--token-file",
                                         hub_token_file_.string(),
                                         "--allow-private-urls",
                                         "--lease",
                                         kLease}));
    }
    loader_ = MakeReplica(
        "loader", "modelmanager.v1.Loader",
        {MM_LOADER_BIN, "--records", records_target, "--records-token-file",
         token_file_.string(), "--records-tls-ca", cert_.string(),
         "--models-dir", models_.string(), "--ram-cache", "64MiB",
         "--shm-name-log", (dir_.path() / "loader-shm.list").string(),
         "--shutdown-grace", "5s"});

    // Every process first, then the waits: they start side by side.
    std::vector<Replica*> all = {&loader_};
    for (auto* group : {&records_, &downloaders_, &installers_}) {
      for (Replica& replica : *group) all.push_back(&replica);
    }
    for (Replica* replica : all) ASSERT_OK(Launch(*replica));
    for (Replica* replica : all) ASSERT_OK(AwaitServing(*replica));

    ASSERT_OK_AND_ASSIGN(installer_channel_,
                         MakeChannel(Target(installers_), client_options_));
    installer_ = v1::Installer::NewStub(installer_channel_);
    ASSERT_OK_AND_ASSIGN(records_channel_,
                         MakeChannel(records_target, client_options_));
    records_stub_ = v1::ModelRecords::NewStub(records_channel_);
    ASSERT_OK(ConnectLoader());
  }

  // The loader ends with SIGTERM so that it unlinks its shared memory (the
  // Subprocess destructor's SIGKILL would leave it in /dev/shm).
  void TearDown() override {
    if (HasFailure()) {
      // What each replica said (a ThreadSanitizer report ends a replica
      // with its report in its log), for the failure's diagnosis.
      std::vector<Replica*> all = {&loader_};
      for (auto* group : {&records_, &downloaders_, &installers_}) {
        for (Replica& replica : *group) all.push_back(&replica);
      }
      for (Replica* replica : all) {
        const std::string log =
            fs::exists(replica->log) ? ReadFile(replica->log) : "";
        std::cerr << "---- " << replica->name << " ("
                  << (replica->process != nullptr && replica->process->Running()
                          ? "running"
                          : "not running")
                  << "), last 6000 bytes of its log:\n"
                  << log.substr(log.size() > 6000 ? log.size() - 6000 : 0)
                  << "\n";
      }
    }
    loader_stub_.reset();
    loader_channel_.reset();
    if (loader_.process != nullptr && loader_.process->Running()) {
      loader_.process->Signal(SIGTERM);
      EXPECT_OK(loader_.process->Wait(absl::Seconds(30)).status());
    }
  }

  Replica MakeReplica(std::string name, std::string health_name,
                      std::vector<std::string> argv) {
    Replica replica;
    replica.name = std::move(name);
    replica.health_name = std::move(health_name);
    replica.argv = std::move(argv);
    replica.port = FreePort();
    replica.log = dir_.path() / "logs" / (replica.name + ".log");
    return replica;
  }

  // gRPC's target for several replicas: "ipv4:HOST:PORT,HOST:PORT".
  static std::string Target(const std::vector<Replica>& replicas) {
    std::vector<std::string> addresses;
    for (const Replica& replica : replicas) {
      addresses.push_back(replica.address());
    }
    return "ipv4:" + absl::StrJoin(addresses, ",");
  }

  absl::Status Launch(Replica& replica) {
    if (replica.port == 0) return absl::InternalError("no free port");
    std::vector<std::string> argv = replica.argv;
    argv.insert(argv.begin() + 1, {"--listen", replica.address(), "--tls-cert",
                                   cert_.string(), "--tls-key", key_.string(),
                                   "--auth-token-file", token_file_.string()});
    fs::create_directories(replica.log.parent_path());
    ASSIGN_OR_RETURN(replica.process, Subprocess::Start(argv, replica.log));
    return absl::OkStatus();
  }

  absl::Status AwaitServing(Replica& replica) {
    // Health is exempt from the token, but the channel carries it anyway:
    // the same channel a client would use.
    ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                     MakeChannel(replica.address(), client_options_));
    return testing::WaitForChildServing(*replica.process, *channel,
                                        replica.health_name, replica.log,
                                        kStartTimeout);
  }

  // The replica whose log names one of `needles` (the one at work on a
  // slow source, so that killing it interrupts something); the first one
  // when none does. The logs are the only outside view of which replica
  // holds a job: the services do not report it.
  static Replica& Busy(std::vector<Replica>& replicas,
                       const std::vector<std::string>& needles) {
    for (Replica& replica : replicas) {
      const std::string log = ReadFile(replica.log);
      for (const std::string& needle : needles) {
        if (absl::StrContains(log, needle)) return replica;
      }
    }
    return replicas.front();
  }

  static absl::Status Kill(Replica& replica) {
    replica.process->Signal(SIGKILL);
    return replica.process->Wait(absl::Seconds(10)).status();
  }

  absl::Status ConnectLoader() {
    ASSIGN_OR_RETURN(loader_channel_,
                     MakeChannel(loader_.address(), client_options_));
    loader_stub_ = v1::Loader::NewStub(loader_channel_);
    return absl::OkStatus();
  }

  std::string Source(int index) const {
    if (index < kFirstHub) {
      return web_->Url(absl::StrCat("/models/url-", index, ".safetensors"));
    }
    if (index < kFirstLocal) {
      return absl::StrCat("cluster/emb-", index, "::emb-", index,
                          ".safetensors");
    }
    return (dir_.path() / "incoming" /
            absl::StrCat("local-", index, ".safetensors"))
        .string();
  }

  // Puts model `index` where its source says.
  void Publish(int index) {
    const std::string bytes = ModelBytes(index);
    if (index < kFirstHub) {
      const std::string path =
          absl::StrCat("/models/url-", index, ".safetensors");
      web_->SetFile(path,
                    {.body = bytes, .etag = absl::StrCat("\"", index, "\"")});
      if (index < kSlowUrls) {
        web_->SetBehavior(path, {.bytes_per_second = kSlowBytesPerSecond});
      }
    } else if (index < kFirstLocal) {
      hub_->AddRepo(
          {.id = absl::StrCat("cluster/emb-", index),
           .files = {testing::MakeHubFile(
                         absl::StrCat("emb-", index, ".safetensors"), bytes),
                     testing::MakeHubFile("README.md", "# an embedding\n")}});
      if (index < kFirstHub + kSlowHub) {
        hub_->cdn_server().SetBehavior(
            FakeHfHub::CdnPath(bytes),
            {.bytes_per_second = kSlowBytesPerSecond});
      }
    } else {
      WriteFile(Source(index), bytes);
    }
  }

  // CreateInstall, retried while no installer answers (the request id makes
  // a retry of a create that did arrive return the same job).
  absl::StatusOr<v1::InstallJob> Create(int index) {
    v1::CreateInstallRequest request;
    request.set_source(Source(index));
    request.set_request_id(absl::StrCat("cluster-install-", index));
    const absl::Time deadline = absl::Now() + kCallTimeout;
    for (;;) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
      v1::InstallJob job;
      grpc::Status status = installer_->CreateInstall(&context, request, &job);
      if (status.ok()) return job;
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE ||
          absl::Now() > deadline) {
        return FromGrpcStatus(status);
      }
    }
  }

  // Waits for job `id` to finish, until `deadline`. WaitInstall in slices:
  // a slice that ends because its installer was killed or the database is
  // restarting (UNAVAILABLE), or because it ran out (DEADLINE_EXCEEDED), is
  // followed by the next one through whichever installer answers.
  absl::StatusOr<v1::InstallJob> AwaitDone(const std::string& id,
                                           absl::Time deadline) {
    v1::InstallJobRequest request;
    request.set_id(id);
    grpc::Status status;
    while (absl::Now() < deadline) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(
          std::min(deadline, absl::Now() + absl::Seconds(5))));
      v1::InstallJob job;
      status = installer_->WaitInstall(&context, request, &job);
      if (status.ok() && job.done()) return job;
      if (!status.ok() &&
          status.error_code() != grpc::StatusCode::UNAVAILABLE &&
          status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
        return FromGrpcStatus(status);
      }
    }
    return absl::DeadlineExceededError(absl::StrCat(
        "install ", id, " not done in time; last: ", GrpcStatusLine(status)));
  }

  // Runs `call(context)` until it is not UNAVAILABLE or kCallTimeout has
  // passed: a client of a cluster retries a call that met a replica going
  // away (or a connection closed under it). Only for calls that are safe to
  // repeat.
  template <typename Call>
  static absl::Status Retrying(Call call) {
    const absl::Time deadline = absl::Now() + kCallTimeout;
    for (;;) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(deadline));
      grpc::Status status = call(context);
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE ||
          absl::Now() >= deadline) {
        return FromGrpcStatus(status);
      }
    }
  }

  absl::StatusOr<std::vector<v1::InstallJob>> ListInstalls() {
    v1::ListInstallsRequest request;
    request.set_page_size(1000);
    v1::ListInstallsResponse response;
    RETURN_IF_ERROR(Retrying([&](grpc::ClientContext& context) {
      return installer_->ListInstalls(&context, request, &response);
    }));
    return std::vector<v1::InstallJob>(response.jobs().begin(),
                                       response.jobs().end());
  }

  absl::StatusOr<std::vector<v1::Model>> ListModels() {
    v1::ListModelsRequest request;
    request.set_page_size(1000);
    v1::ListModelsResponse response;
    RETURN_IF_ERROR(Retrying([&](grpc::ClientContext& context) {
      return records_stub_->ListModels(&context, request, &response);
    }));
    return std::vector<v1::Model>(response.models().begin(),
                                  response.models().end());
  }

  absl::StatusOr<v1::SyncModelsResponse> Sync() {
    v1::SyncModelsRequest request;
    v1::SyncModelsResponse response;
    RETURN_IF_ERROR(Retrying([&](grpc::ClientContext& context) {
      return installer_->SyncModels(&context, request, &response);
    }));
    return response;
  }

  // Loads `key`, maps its shared memory and returns the bytes of its
  // emb_params tensor; the lease ends when the stream is cancelled here.
  absl::StatusOr<std::string> LoadTensor(const std::string& key) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
    v1::LoadRequest request;
    request.set_key(key);
    std::unique_ptr<grpc::ClientReader<v1::LoadResponse>> reader =
        loader_stub_->Load(&context, request);
    v1::LoadResponse response;
    std::optional<v1::ModelHandle> handle;
    while (reader->Read(&response)) {
      if (response.has_handle()) {
        handle = response.handle();
        break;
      }
    }
    if (!handle) return FromGrpcStatus(reader->Finish());
    std::string data;
    int fd = ::shm_open(handle->shm_name().c_str(), O_RDONLY, 0);
    if (fd >= 0 && handle->tensors_size() == 1) {
      void* base =
          ::mmap(nullptr, handle->total_bytes(), PROT_READ, MAP_SHARED, fd, 0);
      if (base != MAP_FAILED) {
        data.assign(
            static_cast<const char*>(base) + handle->tensors(0).offset(),
            handle->tensors(0).byte_size());
        ::munmap(base, handle->total_bytes());
      }
    }
    if (fd >= 0) ::close(fd);
    context.TryCancel();
    while (reader->Read(&response)) {
    }
    reader->Finish();
    if (data.empty()) {
      return absl::InternalError(absl::StrCat("cannot map ", handle->shm_name(),
                                              " (", handle->tensors_size(),
                                              " tensors)"));
    }
    return data;
  }

  // Runs examples/<language>/install_model.* against the cluster to install
  // model `index` from a URL, and checks what it printed and the record it
  // made. Without the language's runtime or packages it is a failure in a
  // complete run (CI=true, or scripts/test.sh) and a note elsewhere.
  enum class ClientLanguage { kNode, kPython };
  void RunClient(ClientLanguage language, int index) {
    const std::string name =
        language == ClientLanguage::kNode ? "node" : "python";
    std::vector<std::string> argv;
    std::map<std::string, std::string> env;
    std::string missing;
    if (language == ClientLanguage::kNode) {
#ifdef MM_NODE_BIN
      const fs::path example = fs::path(MM_SOURCE_DIR) / "examples" / "node";
      if (fs::exists(example / "node_modules" / "@grpc" / "grpc-js")) {
        argv = {MM_NODE_BIN, (example / "install_model.js").string()};
      } else {
        missing = "examples/node/node_modules (run npm ci there)";
      }
#else
      missing = "node";
#endif
    } else {
#ifdef MM_PYTHON_STUBS_DIR
      argv = {"/usr/bin/python3", (fs::path(MM_SOURCE_DIR) / "examples" /
                                   "python" / "install_model.py")
                                      .string()};
      env["PYTHONPATH"] = MM_PYTHON_STUBS_DIR;
#else
      missing = "grpc_python_plugin or python3-grpcio";
#endif
    }
    if (!missing.empty()) {
      // scripts/test.sh (MM_REQUIRE_POSTGRES=1) and CI want every part run.
      const char* ci = std::getenv("CI");
      const char* complete = std::getenv("MM_REQUIRE_POSTGRES");
      if ((ci != nullptr && std::string(ci) == "true") ||
          (complete != nullptr && std::string(complete) == "1")) {
        ADD_FAILURE() << "the " << name << " client cannot run: no " << missing;
      } else {
        std::cerr << "note: the " << name << " client was not run: no "
                  << missing << "\n";
      }
      return;
    }
    const std::string path =
        absl::StrCat("/models/", name, "-client.safetensors");
    web_->SetFile(path, {.body = ModelBytes(index)});
    const std::string source = web_->Url(path);
    ASSERT_OK_AND_ASSIGN(std::vector<v1::Model> before, ListModels());
    const size_t models_before = before.size();
    const std::vector<std::string> flags = {
        "--installer",  Target(installers_),
        "--records",    Target(records_),
        "--ca",         cert_.string(),
        "--token-file", token_file_.string(),
        "--timeout",    "60"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    if (language == ClientLanguage::kNode) {
      argv.insert(argv.end(), {"--source", source});
    } else {
      argv.push_back(source);
    }
    ASSERT_OK_AND_ASSIGN(testing::CommandResult result,
                         testing::RunCommand(argv, absl::Seconds(90), env));
    // What the client printed goes with the logs the token search reads.
    WriteFile(dir_.path() / "logs" / (name + "-client.out"),
              result.out + result.err);
    ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
    // Its listing came first, before its own install.
    EXPECT_TRUE(
        absl::StartsWith(result.out, absl::StrCat(models_before, " models\n")))
        << result.out;
    EXPECT_THAT(result.out, HasSubstr("event complete")) << result.out;
    EXPECT_THAT(result.out, HasSubstr("INSTALL_STATE_COMPLETED")) << result.out;
    ASSERT_OK_AND_ASSIGN(std::vector<v1::Model> models, ListModels());
    auto made = std::find_if(
        models.begin(), models.end(),
        [&](const v1::Model& model) { return model.source() == source; });
    ASSERT_NE(made, models.end()) << result.out;
    EXPECT_THAT(result.out,
                HasSubstr("installed " + made->key() + " at " + made->path()));
    EXPECT_EQ(ReadFile(models_ / made->path()), ModelBytes(index));
  }

  // The lines of every log that name one of `ids`: what the replicas did
  // with a job, for a failure's message.
  std::string LogLinesNaming(const std::vector<std::string>& ids) const {
    std::string out;
    for (const fs::directory_entry& entry :
         fs::directory_iterator(dir_.path() / "logs")) {
      for (absl::string_view line :
           absl::StrSplit(ReadFile(entry.path()), '\n')) {
        for (const std::string& id : ids) {
          if (!id.empty() && absl::StrContains(line, id)) {
            absl::StrAppend(&out, entry.path().filename().string(), ": ", line,
                            "\n");
            break;
          }
        }
      }
    }
    return out;
  }

  // Every regular file under `root`, relative, sorted.
  static std::vector<std::string> FilesUnder(const fs::path& root) {
    std::vector<std::string> files;
    for (const fs::directory_entry& entry :
         fs::recursive_directory_iterator(root)) {
      if (!entry.is_directory()) {
        files.push_back(fs::relative(entry.path(), root).string());
      }
    }
    std::sort(files.begin(), files.end());
    return files;
  }

  TempDir dir_;
  std::unique_ptr<PostgresCluster> postgres_;
  std::string records_db_;
  std::string downloads_db_;
  std::string installs_db_;
  fs::path cert_;
  fs::path key_;
  fs::path token_file_;
  fs::path hub_token_file_;
  ClientOptions client_options_;
  fs::path models_;
  std::unique_ptr<FakeHfHub> hub_;
  std::unique_ptr<HttpTestServer> web_;
  std::vector<Replica> records_;
  std::vector<Replica> downloaders_;
  std::vector<Replica> installers_;
  Replica loader_;
  std::shared_ptr<grpc::Channel> installer_channel_;
  std::unique_ptr<v1::Installer::Stub> installer_;
  std::shared_ptr<grpc::Channel> records_channel_;
  std::unique_ptr<v1::ModelRecords::Stub> records_stub_;
  std::shared_ptr<grpc::Channel> loader_channel_;
  std::unique_ptr<v1::Loader::Stub> loader_stub_;
};

TEST_F(ClusterTest, TwentyInstallsSurviveKilledReplicasAndAPostgresRestart) {
  const absl::Time started = absl::Now();
  for (int i = 0; i < kInstalls; ++i) Publish(i);
  std::vector<std::string> ids;
  std::map<std::string, int> index_of_source;
  for (int i = 0; i < kInstalls; ++i) {
    ASSERT_OK_AND_ASSIGN(v1::InstallJob job, Create(i));
    ids.push_back(job.id());
    index_of_source[Source(i)] = i;
  }

  // The faults find the slow transfers running: each has begun.
  for (int i = 0; i < kSlowUrls; ++i) {
    ASSERT_TRUE(web_->WaitForRequests(
        absl::StrCat("/models/url-", i, ".safetensors"), 1, kStartTimeout))
        << "URL source " << i << " was never fetched";
  }
  ASSERT_OK_AND_ASSIGN(std::vector<v1::InstallJob> before, ListInstalls());
  const int unfinished = static_cast<int>(
      std::count_if(before.begin(), before.end(),
                    [](const v1::InstallJob& job) { return !job.done(); }));
  EXPECT_GE(unfinished, kSlowUrls) << "the faults came after the installs";
  // The downloader and the installer killed are ones at work on a slow
  // URL (the downloader logs "starts: URL" before its first request, the
  // installer "working from step plan (URL)" before creating the download).
  std::vector<std::string> downloading;
  std::vector<std::string> installing;
  for (int i = 0; i < kSlowUrls; ++i) {
    downloading.push_back("starts: " + Source(i));
    installing.push_back("(" + Source(i) + ")");
  }
  Replica& downloader = Busy(downloaders_, downloading);
  Replica& installer = Busy(installers_, installing);
  EXPECT_THAT(ReadFile(downloader.log), HasSubstr("starts: "));
  EXPECT_THAT(ReadFile(installer.log), HasSubstr("working from step"));
  ASSERT_OK(Kill(downloader));
  ASSERT_OK(Kill(installer));
  ASSERT_OK(Kill(records_[0]));
  ASSERT_OK(postgres_->Stop());
  ASSERT_OK(postgres_->Restart());

  // The loader: a first load, SIGKILL, a restart.
  const int first_local = kFirstLocal;
  ASSERT_OK_AND_ASSIGN(
      v1::InstallJob first,
      AwaitDone(ids[first_local], absl::Now() + kAllInstallsTimeout));
  ASSERT_EQ(first.state(), v1::INSTALL_STATE_COMPLETED)
      << first.error().code() << ": " << first.error().message();
  ASSERT_OK_AND_ASSIGN(std::string loaded, LoadTensor(first.key()));
  EXPECT_EQ(loaded, TensorData(first_local));
  ASSERT_OK(Kill(loader_));
  ASSERT_OK(Launch(loader_));
  ASSERT_OK(AwaitServing(loader_));
  ASSERT_OK(ConnectLoader());

  // Every install completes, exactly once.
  const absl::Time deadline = absl::Now() + kAllInstallsTimeout;
  std::map<std::string, std::string> key_of_source;
  for (int i = 0; i < kInstalls; ++i) {
    ASSERT_OK_AND_ASSIGN(v1::InstallJob job, AwaitDone(ids[i], deadline));
    ASSERT_EQ(job.state(), v1::INSTALL_STATE_COMPLETED)
        << Source(i) << ": " << v1::InstallState_Name(job.state()) << " "
        << job.error().code() << ": " << job.error().message() << " ("
        << job.status_message() << ")\n"
        << job.DebugString() << LogLinesNaming({job.id(), job.download_id()});
    int completes = 0;
    for (const v1::InstallEvent& event : job.events()) {
      if (event.type() == "complete") ++completes;
    }
    EXPECT_EQ(completes, 1) << Source(i);
    EXPECT_FALSE(job.key().empty());
    key_of_source[Source(i)] = job.key();
  }
  ASSERT_OK_AND_ASSIGN(std::vector<v1::InstallJob> jobs, ListInstalls());
  EXPECT_EQ(jobs.size(), static_cast<size_t>(kInstalls));
  for (const v1::InstallJob& job : jobs) {
    EXPECT_EQ(job.state(), v1::INSTALL_STATE_COMPLETED) << job.source();
  }

  // One record per source, each with its own key, its file in the models
  // folder with the source's bytes, and nothing else there.
  ASSERT_OK_AND_ASSIGN(std::vector<v1::Model> models, ListModels());
  ASSERT_EQ(models.size(), static_cast<size_t>(kInstalls));
  std::set<std::string> keys;
  std::vector<std::string> expected_files;
  for (const v1::Model& model : models) {
    keys.insert(model.key());
    auto index = index_of_source.find(model.source());
    ASSERT_NE(index, index_of_source.end()) << model.source();
    EXPECT_EQ(key_of_source[model.source()], model.key());
    EXPECT_FALSE(fs::path(model.path()).is_absolute()) << model.path();
    EXPECT_TRUE(absl::StartsWith(model.path(), model.key() + "/"))
        << model.path();
    EXPECT_EQ(ReadFile(models_ / model.path()), ModelBytes(index->second))
        << model.source();
    expected_files.push_back(model.path());
  }
  EXPECT_EQ(keys.size(), static_cast<size_t>(kInstalls));
  std::vector<std::string> found;
  for (const std::string& file : FilesUnder(models_)) {
    EXPECT_THAT(file, ::testing::Not(HasSubstr("tmpinstall_")));
    // The installer's download cache (models/.download_cache) is no model.
    if (!absl::StartsWith(file, ".")) found.push_back(file);
  }
  EXPECT_THAT(found, UnorderedElementsAreArray(expected_files));
  for (const fs::directory_entry& entry : fs::directory_iterator(models_)) {
    EXPECT_FALSE(
        absl::StartsWith(entry.path().filename().string(), "tmpinstall_"))
        << entry.path();
  }
  ASSERT_OK_AND_ASSIGN(v1::SyncModelsResponse sync, Sync());
  EXPECT_THAT(sync.missing_keys(), IsEmpty());
  EXPECT_THAT(sync.orphan_paths(), IsEmpty());

  // The restarted loader serves a model that an installer replica
  // downloaded (a slow URL, installed across the faults).
  ASSERT_OK_AND_ASSIGN(std::string served,
                       LoadTensor(key_of_source[Source(0)]));
  EXPECT_EQ(served, TensorData(0));

  // The clients in other languages: each lists the models, installs a new
  // URL source through the same targets (one installer and one records
  // replica dead in them) and follows the Watch stream to its end.
  RunClient(ClientLanguage::kNode, 100);
  RunClient(ClientLanguage::kPython, 101);

  // The hub got its token (so the search below means something), its CDN
  // never did.
  EXPECT_THAT(hub_->TokensSeen(), ::testing::Contains(kHubToken));
  EXPECT_FALSE(hub_->CdnSawAuthorization());

  // No token in any log (ours and PostgreSQL's) or in any table.
  std::vector<fs::path> logs;
  for (const fs::directory_entry& entry :
       fs::recursive_directory_iterator(dir_.path() / "logs")) {
    if (entry.is_regular_file()) logs.push_back(entry.path());
  }
  logs.push_back(fs::path(postgres_->directory()) / "server.log");
  for (const fs::path& log : logs) {
    const std::string text = ReadFile(log);
    EXPECT_THAT(text, ::testing::Not(HasSubstr(kBearerToken))) << log;
    EXPECT_THAT(text, ::testing::Not(HasSubstr(kHubToken))) << log;
  }
  for (const std::string& url : {records_db_, downloads_db_, installs_db_}) {
    ASSERT_OK_AND_ASSIGN(
        testing::CommandResult dump,
        testing::RunCommand({"/usr/bin/pg_dump", "--data-only", url},
                            absl::Seconds(30)));
    ASSERT_EQ(dump.exit_code, 0) << dump.err;
    // The dump holds the jobs and records (so an empty dump cannot pass).
    EXPECT_THAT(dump.out, HasSubstr("COPY ")) << url;
    EXPECT_THAT(dump.out, ::testing::Not(HasSubstr(kBearerToken))) << url;
    EXPECT_THAT(dump.out, ::testing::Not(HasSubstr(kHubToken))) << url;
  }
  RecordProperty("seconds",
                 absl::StrCat(absl::ToDoubleSeconds(absl::Now() - started)));
}

}  // namespace
}  // namespace mm
