// One mm-downloader, assembled: its options (from flags, or set by a test),
// and the parts wired together (job store, token provider, transfer loop,
// engine, manager, rpc service). main.cc and the test harness both build
// the downloader here, so the SQLite restart policy and the replica id are
// decided in one place.
//
//   ASSIGN_OR_RETURN(DownloaderOptions options,
//                    DownloaderOptionsFromConfig(config));
//   ASSIGN_OR_RETURN(auto downloader, Downloader::Create(options));
//   ... register &downloader->service() with a server ...
//   downloader->Start();
//   ...
//   downloader->Stop();  // before the server drains
//
// Thread-safety: Start and Stop from one thread; the parts are thread-safe.
#ifndef MM_SERVICES_DOWNLOADER_DOWNLOADER_SERVER_H_
#define MM_SERVICES_DOWNLOADER_DOWNLOADER_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/http/transfer_loop.h"
#include "common/jobs/job_metrics.h"
#include "common/metrics/registry.h"
#include "services/downloader/download_manager.h"
#include "services/downloader/downloader_service.h"
#include "services/downloader/engine.h"
#include "services/downloader/job_store.h"
#include "services/downloader/tokens.h"

namespace mm::downloader {

struct DownloaderOptions {
  // Job store: sqlite:PATH, PATH.db or postgresql://...
  std::string db = "sqlite:downloader.db";
  // Directories downloads may be written under; at least one.
  std::vector<std::string> download_roots;
  // The engine's knobs; its address_policy is made by Create from the
  // two fields below.
  EngineOptions engine;
  bool allow_private_urls = false;
  std::vector<std::string> allow_cidrs;
  // REGEX=env:VAR or REGEX=file:PATH (tokens.h).
  std::vector<std::string> token_rules;
  int64_t max_bytes_per_second = 0;  // 0 = no limit
  int max_host_connections = 32;     // 0 = no limit
  // How often the database is checked for the health status.
  absl::Duration health_interval = absl::Seconds(2);
  // Names this process in leases; empty = a new random id per start.
  std::string replica_id;
  // Lease times and stamps; must outlive the downloader.
  Clock* clock = RealClock();
  // Where the downloader's metrics go (docs/operations.md): job counts,
  // bytes received and their rate, active transfers. Null: none. Must
  // outlive the downloader.
  metrics::Registry* metrics = nullptr;
};

// mm-downloader's flags (besides the server's own, ServerOptionSpecs).
std::vector<OptionSpec> DownloaderOptionSpecs();
// INVALID_ARGUMENT naming the flag for a bad value.
absl::StatusOr<DownloaderOptions> DownloaderOptionsFromConfig(
    const Config& config);

class Downloader {
 public:
  // Opens the store and makes every part; nothing runs until Start.
  // With SQLite, leases the previous process held are expired (one process
  // owns a SQLite queue: whatever the last one was running is ours to
  // resume).
  static absl::StatusOr<std::unique_ptr<Downloader>> Create(
      DownloaderOptions options);
  ~Downloader();

  // Starts the engine's workers.
  void Start();
  // Ends Waits and Watches and stops the workers (progress saved, leases
  // released); the service keeps answering other rpcs. Idempotent.
  void Stop();
  // Stops only the workers (a test of what a shutdown leaves behind).
  void StopEngine() { engine_->Stop(); }

  const DownloaderOptions& options() const { return options_; }
  JobStore& store() { return *store_; }
  DownloadManager& manager() { return *manager_; }
  DownloaderService& service() { return *service_; }

 private:
  Downloader() = default;

  DownloaderOptions options_;
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<TokenProvider> tokens_;
  std::unique_ptr<http::TransferLoop> loop_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<DownloadManager> manager_;
  std::unique_ptr<DownloaderService> service_;
  // Read the store and the loop at scrape time: destroyed (first) in
  // ~Downloader before them.
  std::unique_ptr<jobs::JobMetrics> job_metrics_;
  metrics::ScopedCollector transfer_collector_;
};

}  // namespace mm::downloader

#endif  // MM_SERVICES_DOWNLOADER_DOWNLOADER_SERVER_H_
