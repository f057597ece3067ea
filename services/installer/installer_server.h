// The installer as a running server, assembled once for main.cc and for the
// tests: options from the configuration (flags, YAML, MM_* environment),
// the job store, the hub client, the worker, the manager and the gRPC host.
//
//   ASSIGN_OR_RETURN(Config config, Config::Load(InstallerOptionSpecs(), argc,
//   argv)); ASSIGN_OR_RETURN(InstallerOptions options,
//   InstallerOptionsFromConfig(config)); ASSIGN_OR_RETURN(auto server,
//   InstallerServer::Start(std::move(options))); return
//   server->host().RunUntilSignal();
#ifndef MM_SERVICES_INSTALLER_INSTALLER_SERVER_H_
#define MM_SERVICES_INSTALLER_INSTALLER_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/http/transfer_loop.h"
#include "common/jobs/job_metrics.h"
#include "common/server.h"
#include "services/installer/download_cache.h"
#include "services/installer/hub_client.h"
#include "services/installer/install_manager.h"
#include "services/installer/install_store.h"
#include "services/installer/install_worker.h"
#include "services/installer/installer_service.h"
#include "services/installer/service_clients.h"
#include "services/installer/source_resolver.h"

namespace mm::installer {

struct InstallerOptions {
  ServerOptions server;
  // Job store URL: sqlite:PATH (one process) or postgresql://... (replicas).
  std::string db = "sqlite:installer.db";
  std::string records_address;
  std::string downloader_address;
  // Token file for calls to records and the downloader (their
  // --auth-token-file).
  std::string service_token_file;
  // CA bundle for those calls: TLS when set.
  std::string service_tls_ca;
  WorkerOptions worker;
  HubOptions hub;
  bool allow_private_urls = false;
  int64_t download_cache_bytes = int64_t{20} << 30;
  bool scan_on_startup = false;
};

std::vector<OptionSpec> InstallerOptionSpecs();
// INVALID_ARGUMENT naming the flag for a bad value or a missing required one.
absl::StatusOr<InstallerOptions> InstallerOptionsFromConfig(
    const Config& config);

class InstallerServer {
 public:
  // Opens the store (expiring the leases of a previous embedded process),
  // removes abandoned temporary folders, starts the worker and the host.
  static absl::StatusOr<std::unique_ptr<InstallerServer>> Start(
      InstallerOptions options, Clock* clock = RealClock());
  ~InstallerServer();

  ServiceHost& host() { return *host_; }
  InstallManager& manager() { return *manager_; }
  InstallStore& store() { return *store_; }

 private:
  InstallerServer() = default;

  InstallerOptions options_;
  std::unique_ptr<InstallStore> store_;
  std::unique_ptr<http::TransferLoop> loop_;
  std::unique_ptr<HubClient> hub_;
  std::unique_ptr<SourceResolver> resolver_;
  std::unique_ptr<RecordsClient> records_;
  std::unique_ptr<DownloaderClient> downloader_;
  TokenCache tokens_;
  std::unique_ptr<InstallWorker> worker_;
  std::unique_ptr<InstallManager> manager_;
  std::unique_ptr<DownloadCache> cache_;
  std::unique_ptr<InstallerService> service_;
  std::unique_ptr<ServiceHost> host_;
  // Reads store_ at scrape time; declared last so it goes first.
  std::unique_ptr<jobs::JobMetrics> job_metrics_;
};

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_INSTALLER_SERVER_H_
