#include "services/installer/installer_server.h"

#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/client.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/secret_file.h"
#include "common/sql/database.h"
#include "common/status.h"

namespace mm::installer {

std::vector<OptionSpec> InstallerOptionSpecs() {
  std::vector<OptionSpec> specs = ServerOptionSpecs("unix:installer.sock");
  specs.push_back({"db", "sqlite:installer.db",
                   "Install job store: sqlite:PATH or postgresql://... "
                   "(replicas share one PostgreSQL)"});
  specs.push_back({"records", "",
                   "Address of the records service (required); replicas as "
                   "ipv4:HOST:PORT,HOST:PORT (round-robin)"});
  specs.push_back({"downloader", "",
                   "Address of the downloader (required); replicas as "
                   "ipv4:HOST:PORT,HOST:PORT (round-robin)"});
  specs.push_back(
      {"service-token-file", "",
       "Bearer token file for calls to records and the downloader"});
  specs.push_back({"service-tls-ca", "",
                   "PEM CA bundle to verify records and the downloader: "
                   "call them over TLS"});
  specs.push_back({"models-dir", "", "The models folder (required)"});
  specs.push_back({"hf-endpoint", "",
                   "Hugging Face endpoint (default: HF_ENDPOINT, else "
                   "https://huggingface.co)"});
  specs.push_back(
      {"token-file", "",
       "Hugging Face token sent to the hub when a request has none"});
  specs.push_back({"allow-private-urls", "false",
                   "Accept URL sources on private and loopback addresses",
                   /*is_bool=*/true});
  specs.push_back({"hash-algo", "blake3_single",
                   "Hash of installed models: blake3_single, blake3_multi, "
                   "sha256, ... (spec §5)"});
  specs.push_back({"download-cache-size", "21474836480",
                   "Bytes kept in models/.download_cache (0 = unbounded)"});
  specs.push_back({"scan-on-startup", "false",
                   "Register model files found in the models folder without "
                   "a record at start-up",
                   /*is_bool=*/true});
  specs.push_back({"max-parallel", "4", "Install jobs worked on at once"});
  specs.push_back({"lease", "30s",
                   "Lease on a job a worker holds; another replica resumes "
                   "it after this long without renewal"});
  return specs;
}

absl::StatusOr<InstallerOptions> InstallerOptionsFromConfig(
    const Config& config) {
  InstallerOptions options;
  ASSIGN_OR_RETURN(options.server, ServerOptionsFromConfig(config));
  options.db = config.GetString("db");
  options.records_address = config.GetString("records");
  options.downloader_address = config.GetString("downloader");
  options.service_token_file = config.GetString("service-token-file");
  options.service_tls_ca = config.GetString("service-tls-ca");
  const std::string models = config.GetString("models-dir");
  for (const auto& [flag, value] : {std::pair<const char*, const std::string*>{
                                        "records", &options.records_address},
                                    {"downloader", &options.downloader_address},
                                    {"models-dir", &models}}) {
    if (value->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, " is required"));
    }
  }
  std::error_code error;
  options.worker.models_dir = std::filesystem::absolute(models, error);
  options.hub.endpoint = model::HfEndpointFromEnvironment();
  if (const std::string endpoint = config.GetString("hf-endpoint");
      !endpoint.empty()) {
    std::string base = endpoint;
    while (!base.empty() && base.back() == '/') base.pop_back();
    options.hub.endpoint.base = base;
  }
  if (const std::string file = config.GetString("token-file"); !file.empty()) {
    ASSIGN_OR_RETURN(options.hub.default_token, ReadTokenFile(file));
  }
  ASSIGN_OR_RETURN(options.allow_private_urls,
                   config.GetBool("allow-private-urls"));
  ASSIGN_OR_RETURN(options.worker.hash.algorithm,
                   model::ParseHashAlgorithm(config.GetString("hash-algo")));
  // blake3_single and blake3_multi write the same digest (spec §5); an
  // install hashes with every core, as b3sum does.
  if (options.worker.hash.algorithm == model::HashAlgorithm::kBlake3Single) {
    options.worker.hash.algorithm = model::HashAlgorithm::kBlake3Multi;
  }
  ASSIGN_OR_RETURN(options.download_cache_bytes,
                   config.GetInt("download-cache-size"));
  ASSIGN_OR_RETURN(options.scan_on_startup, config.GetBool("scan-on-startup"));
  ASSIGN_OR_RETURN(int64_t parallel, config.GetInt("max-parallel"));
  if (parallel < 1) {
    return absl::InvalidArgumentError("--max-parallel must be at least 1");
  }
  options.worker.max_parallel = static_cast<int>(parallel);
  ASSIGN_OR_RETURN(options.worker.lease, config.GetDuration("lease"));
  return options;
}

absl::StatusOr<std::unique_ptr<InstallerServer>> InstallerServer::Start(
    InstallerOptions options, Clock* clock) {
  std::unique_ptr<InstallerServer> server(new InstallerServer());
  server->options_ = std::move(options);
  const InstallerOptions& o = server->options_;
  std::error_code error;
  std::filesystem::create_directories(o.worker.models_dir, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the models folder ",
                     o.worker.models_dir.string(), ": ", error.message()));
  }
  const std::string replica_id = NewResourceId().substr(0, 16);
  // One registry for the host's rpc metrics, the job counts and the
  // database's errors.
  ServerOptions server_options = o.server;
  if (server_options.metrics == nullptr) {
    server_options.metrics = std::make_shared<metrics::Registry>();
  }
  ASSIGN_OR_RETURN(
      server->store_,
      OpenInstallStore(o.db, replica_id, clock, server_options.metrics.get()));
  if (server->store_->dialect() == sql::Dialect::kSqlite) {
    // One process owns an embedded store: the previous one is gone.
    RETURN_IF_ERROR(server->store_->ExpireAllLeases());
  }
  MM_LOG(INFO) << "install jobs at " << sql::RedactUrl(o.db) << "; replica "
               << replica_id << "; models at " << o.worker.models_dir.string();

  server->loop_ = http::TransferLoop::Create({});
  server->hub_ = std::make_unique<HubClient>(server->loop_.get(), o.hub);
  auto policy = std::make_shared<http::AddressPolicy>();
  if (o.allow_private_urls) policy->AllowAllPrivate();
  server->resolver_ = std::make_unique<SourceResolver>(
      o.worker.models_dir, server->hub_.get(), policy);
  ClientOptions client;
  client.token_file = o.service_token_file;
  client.tls_ca = o.service_tls_ca;
  ASSIGN_OR_RETURN(auto records_channel,
                   MakeChannel(o.records_address, client));
  ASSIGN_OR_RETURN(auto downloader_channel,
                   MakeChannel(o.downloader_address, client));
  server->records_ = std::make_unique<RecordsClient>(records_channel);
  server->downloader_ = std::make_unique<DownloaderClient>(downloader_channel);

  WorkerDeps deps{server->store_.get(), server->resolver_.get(),
                  server->records_.get(), server->downloader_.get(),
                  &server->tokens_};
  server->worker_ = std::make_unique<InstallWorker>(deps, o.worker);
  server->manager_ =
      std::make_unique<InstallManager>(deps, server->worker_.get(), o.worker);
  server->cache_ = std::make_unique<DownloadCache>(
      o.worker.models_dir, o.download_cache_bytes, server->resolver_.get(),
      server->downloader_.get());
  server->service_ = std::make_unique<InstallerService>(server->manager_.get(),
                                                        server->cache_.get());

  absl::StatusOr<std::vector<std::string>> removed =
      server->manager_->RemoveAbandonedTemporaries();
  if (!removed.ok()) {
    MM_LOG(WARNING) << "cannot clean temporary folders: " << removed.status();
  } else {
    for (const std::string& path : *removed) {
      MM_LOG(INFO) << "removed the abandoned temporary folder " << path;
    }
  }

  std::vector<std::string> states;
  for (InstallState state :
       {InstallState::kWaiting, InstallState::kDownloading,
        InstallState::kDownloadsDone, InstallState::kRunning,
        InstallState::kPaused, InstallState::kCompleted, InstallState::kError,
        InstallState::kCancelled}) {
    states.emplace_back(StateName(state));
  }
  server->job_metrics_ = std::make_unique<jobs::JobMetrics>(
      &server->store_->table(), server_options.metrics.get(), states);
  ASSIGN_OR_RETURN(server->host_,
                   ServiceHost::Start(server_options, {server->service_.get()},
                                      {kInstallerServiceName}));
  InstallerService* service = server->service_.get();
  server->host_->AddShutdownHook([service] { service->Shutdown(); });
  InstallStore* store = server->store_.get();
  server->host_->MonitorHealth([store] { return store->Ping(); },
                               absl::Seconds(2));
  server->worker_->Start();

  // Start-up report (spec §8): missing files are logged; orphans are
  // registered when asked. Records being down is not fatal here.
  absl::StatusOr<SyncResult> sync = server->manager_->Sync(o.scan_on_startup);
  if (!sync.ok()) {
    MM_LOG(WARNING) << "start-up scan skipped: " << sync.status();
  } else {
    MM_LOG(INFO) << "start-up scan: " << sync->missing_keys.size()
                 << " records with missing files, " << sync->orphan_paths.size()
                 << " unregistered model files, "
                 << sync->registered_keys.size() << " registered";
  }
  return server;
}

InstallerServer::~InstallerServer() {
  if (worker_) worker_->Stop();
}

}  // namespace mm::installer
