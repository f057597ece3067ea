#include "services/downloader/downloader_server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/sql/database.h"
#include "common/status.h"
#include "services/downloader/paths.h"

namespace mm::downloader {
namespace {

std::vector<std::string> NonEmpty(std::vector<std::string> values) {
  std::vector<std::string> out;
  for (std::string& v : values) {
    if (!v.empty()) out.push_back(std::move(v));
  }
  return out;
}

// A count flag: INVALID_ARGUMENT when negative or below `min`.
absl::StatusOr<int64_t> Count(const Config& config, const char* name,
                              int64_t min) {
  ASSIGN_OR_RETURN(int64_t value, config.GetInt(name));
  if (value < min) {
    return absl::InvalidArgumentError(
        min == 0 ? absl::StrCat("--", name, " must not be negative")
                 : absl::StrCat("--", name, " must be at least ", min));
  }
  return value;
}

}  // namespace

std::vector<OptionSpec> DownloaderOptionSpecs() {
  return {
      {"db", "sqlite:downloader.db",
       "Job store: sqlite:PATH, PATH.db or postgresql://... "
       "(replicas share one PostgreSQL queue)"},
      {"download-root", "",
       "A directory downloads may be written under (repeat for several); "
       "required"},
      {"max-parallel", "5", "Jobs transferring at once"},
      {"max-parallel-files", "16",
       "Files of one multi-file job transferring at once"},
      {"segments", "8", "Connections per large file"},
      {"min-segment-size", "16777216",
       "Smallest segment (bytes) worth its own connection"},
      {"max-host-connections", "32",
       "Connections to one host at most (0 = no limit)"},
      {"max-bytes-per-second", "0",
       "Bandwidth limit shared by all transfers (0 = none)"},
      {"stall-timeout", "30s",
       "A connection without data for this long is retried"},
      {"max-attempts", "6", "Transient failures in a row before a job fails"},
      {"retry-delay", "1s", "First retry delay; doubles per attempt, jittered"},
      {"max-retry-delay", "60s", "Longest retry delay"},
      {"lease", "15s",
       "Lease on a running job; another replica takes over a job whose "
       "lease expired"},
      {"allow-private-urls", "false",
       "Allow URLs that resolve to loopback, private or other non-public "
       "addresses",
       /*is_bool=*/true},
      {"allow-cidr", "",
       "A non-public address range to allow (repeat), e.g. a mirror's "
       "10.1.2.0/24"},
      {"token-rule", "",
       "REGEX=env:VAR or REGEX=file:PATH: the token for URLs matching REGEX "
       "(repeat; first match wins)"},
      {"sync-files", "true",
       "fdatasync each finished file before it is renamed into place and "
       "reported complete (--sync-files=false: faster, less safe against "
       "machine crashes)",
       /*is_bool=*/true},
      {"health-interval", "2s",
       "How often the database is checked for the health status"},
  };
}

absl::StatusOr<DownloaderOptions> DownloaderOptionsFromConfig(
    const Config& config) {
  DownloaderOptions o;
  o.db = config.GetString("db");
  o.download_roots = NonEmpty(config.GetList("download-root"));
  EngineOptions& engine = o.engine;
  ASSIGN_OR_RETURN(int64_t max_parallel, Count(config, "max-parallel", 1));
  ASSIGN_OR_RETURN(int64_t max_files, Count(config, "max-parallel-files", 1));
  ASSIGN_OR_RETURN(int64_t segments, Count(config, "segments", 1));
  ASSIGN_OR_RETURN(engine.min_segment_size,
                   Count(config, "min-segment-size", 1));
  ASSIGN_OR_RETURN(int64_t attempts, Count(config, "max-attempts", 1));
  ASSIGN_OR_RETURN(int64_t host_connections,
                   Count(config, "max-host-connections", 0));
  ASSIGN_OR_RETURN(o.max_bytes_per_second,
                   Count(config, "max-bytes-per-second", 0));
  engine.max_parallel = static_cast<int>(max_parallel);
  engine.max_parallel_files = static_cast<int>(max_files);
  engine.max_segments = static_cast<int>(segments);
  engine.max_attempts = static_cast<int>(attempts);
  o.max_host_connections = static_cast<int>(host_connections);
  ASSIGN_OR_RETURN(engine.stall_timeout, config.GetDuration("stall-timeout"));
  ASSIGN_OR_RETURN(engine.retry_base_delay, config.GetDuration("retry-delay"));
  ASSIGN_OR_RETURN(engine.retry_max_delay,
                   config.GetDuration("max-retry-delay"));
  ASSIGN_OR_RETURN(engine.lease, config.GetDuration("lease"));
  // A shorter lease could expire between two progress saves of a healthy
  // worker, and another replica would take the job over.
  if (engine.lease < absl::Seconds(1)) {
    return absl::InvalidArgumentError("--lease must be at least 1s");
  }
  ASSIGN_OR_RETURN(o.health_interval, config.GetDuration("health-interval"));
  ASSIGN_OR_RETURN(o.allow_private_urls, config.GetBool("allow-private-urls"));
  ASSIGN_OR_RETURN(engine.sync_files, config.GetBool("sync-files"));
  o.allow_cidrs = NonEmpty(config.GetList("allow-cidr"));
  o.token_rules = NonEmpty(config.GetList("token-rule"));
  // Checked here so a bad root or rule is a usage error, before any
  // database is opened.
  RETURN_IF_ERROR(DownloadRoots::Create(o.download_roots).status());
  RETURN_IF_ERROR(TokenProvider::Create(o.token_rules).status());
  http::AddressPolicy policy;
  for (const std::string& cidr : o.allow_cidrs) {
    RETURN_IF_ERROR(policy.Allow(cidr));
  }
  return o;
}

absl::StatusOr<std::unique_ptr<Downloader>> Downloader::Create(
    DownloaderOptions options) {
  std::unique_ptr<Downloader> d(new Downloader());
  if (options.replica_id.empty()) options.replica_id = NewResourceId();
  auto policy = std::make_shared<http::AddressPolicy>();
  if (options.allow_private_urls) policy->AllowAllPrivate();
  for (const std::string& cidr : options.allow_cidrs) {
    RETURN_IF_ERROR(policy->Allow(cidr));
  }
  options.engine.address_policy = policy;
  ASSIGN_OR_RETURN(DownloadRoots roots,
                   DownloadRoots::Create(options.download_roots));
  ASSIGN_OR_RETURN(d->tokens_, TokenProvider::Create(options.token_rules));
  absl::StatusOr<std::unique_ptr<JobStore>> store = JobStore::Open(
      options.db, options.replica_id, options.clock, options.metrics);
  if (!store.ok()) {
    return absl::Status(
        store.status().code(),
        absl::StrCat("cannot open job store ", sql::RedactUrl(options.db), ": ",
                     store.status().message()));
  }
  d->store_ = *std::move(store);
  if (d->store_->dialect() == sql::Dialect::kSqlite) {
    // One process owns a SQLite queue: whatever the last one was running
    // is ours to resume now.
    RETURN_IF_ERROR(d->store_->ExpireAllLeases());
  }
  MM_LOG(INFO) << "job store " << sql::DialectName(d->store_->dialect())
               << " at " << sql::RedactUrl(options.db) << "; replica "
               << options.replica_id;
  http::TransferLoop::Options loop_options;
  loop_options.max_host_connections = options.max_host_connections;
  loop_options.max_bytes_per_second = options.max_bytes_per_second;
  // Stall detection on the same clock as leases, retries and throttling.
  loop_options.clock = options.clock;
  metrics::Counter* bytes = nullptr;
  if (options.metrics != nullptr) {
    bytes = options.metrics
                ->AddCounter("mm_download_bytes_total",
                             "Body bytes downloaded into files, all jobs")
                ->WithLabels({});
    options.engine.bytes_downloaded = bytes;
  }
  d->loop_ = http::TransferLoop::Create(loop_options);
  d->engine_ = std::make_unique<Engine>(d->store_.get(), d->loop_.get(),
                                        d->tokens_.get(), options.engine);
  Engine* engine = d->engine_.get();
  d->manager_ = std::make_unique<DownloadManager>(
      d->store_.get(), d->tokens_.get(), std::move(roots), policy,
      [engine] { engine->Wake(); });
  d->service_ = std::make_unique<DownloaderService>(d->manager_.get());
  if (options.metrics != nullptr) {
    std::vector<std::string> states;
    for (JobState state :
         {JobState::kWaiting, JobState::kQueued, JobState::kRunning,
          JobState::kPaused, JobState::kSucceeded, JobState::kFailed,
          JobState::kCancelled}) {
      states.emplace_back(StateName(state));
    }
    d->job_metrics_ = std::make_unique<jobs::JobMetrics>(
        &d->store_->job_table(), options.metrics, states);
    metrics::Gauge* rate =
        options.metrics
            ->AddGauge("mm_download_bytes_per_second",
                       "Body bytes received per second, averaged since the "
                       "previous scrape (at least 1 s before)")
            ->WithLabels({});
    metrics::Gauge* active =
        options.metrics
            ->AddGauge("mm_download_active_transfers",
                       "HTTP transfers (segments) running now")
            ->WithLabels({});
    // Collectors run one at a time (Registry), so this state needs no lock.
    struct RateState {
      absl::Time at = absl::InfinitePast();
      double bytes = 0;
    };
    auto last = std::make_shared<RateState>();
    http::TransferLoop* loop = d->loop_.get();
    Clock* clock = options.clock;
    d->transfer_collector_ = metrics::ScopedCollector(
        options.metrics, [last, loop, clock, bytes, rate, active] {
          active->Set(loop->ActiveTransfers());
          absl::Time now = clock->Now();
          double total = bytes->value();
          if (last->at == absl::InfinitePast()) {
            *last = {now, total};
          } else if (now - last->at >= absl::Seconds(1)) {
            rate->Set((total - last->bytes) /
                      absl::ToDoubleSeconds(now - last->at));
            *last = {now, total};
          }
        });
  }
  d->options_ = std::move(options);
  return d;
}

Downloader::~Downloader() {
  transfer_collector_.Reset();
  job_metrics_.reset();
  Stop();
  engine_.reset();
  loop_.reset();
}

void Downloader::Start() { engine_->Start(); }

void Downloader::Stop() {
  // A Create that failed half-way leaves later parts unmade.
  if (manager_ != nullptr) manager_->Shutdown();
  if (engine_ != nullptr) engine_->Stop();
}

}  // namespace mm::downloader
