// mm-downloader: the download queue service. See docs/downloader.md.
#include <iostream>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/http/address_policy.h"
#include "common/http/transfer_loop.h"
#include "common/logging.h"
#include "common/server.h"
#include "common/sql/database.h"
#include "services/downloader/downloader_service.h"
#include "services/downloader/engine.h"
#include "services/downloader/job_store.h"
#include "services/downloader/paths.h"
#include "services/downloader/tokens.h"

namespace {

namespace dl = mm::downloader;

std::vector<mm::OptionSpec> Specs() {
  std::vector<mm::OptionSpec> specs =
      mm::ServerOptionSpecs("unix:downloader.sock");
  specs.push_back({"db", "sqlite:downloader.db",
                   "Job store: sqlite:PATH, PATH.db or postgresql://... "
                   "(replicas share one PostgreSQL queue)"});
  specs.push_back({"download-root", "",
                   "A directory downloads may be written under (repeat for "
                   "several); required"});
  specs.push_back({"max-parallel", "5", "Jobs transferring at once"});
  specs.push_back({"max-parallel-files", "16",
                   "Files of one multi-file job transferring at once"});
  specs.push_back({"segments", "8", "Connections per large file"});
  specs.push_back({"min-segment-size", "16777216",
                   "Smallest segment (bytes) worth its own connection"});
  specs.push_back({"max-host-connections", "32",
                   "Connections to one host at most (0 = no limit)"});
  specs.push_back({"max-bytes-per-second", "0",
                   "Bandwidth limit shared by all transfers (0 = none)"});
  specs.push_back({"stall-timeout", "30s",
                   "A connection without data for this long is retried"});
  specs.push_back(
      {"max-attempts", "6", "Transient failures in a row before a job fails"});
  specs.push_back({"retry-delay", "1s",
                   "First retry delay; doubles per attempt, jittered"});
  specs.push_back({"max-retry-delay", "60s", "Longest retry delay"});
  specs.push_back({"lease", "15s",
                   "Lease on a running job; another replica takes over a "
                   "job whose lease expired"});
  specs.push_back({"allow-private-urls", "false",
                   "Allow URLs that resolve to loopback, private or other "
                   "non-public addresses",
                   /*is_bool=*/true});
  specs.push_back({"allow-cidr", "",
                   "A non-public address range to allow (repeat), e.g. a "
                   "mirror's 10.1.2.0/24"});
  specs.push_back({"token-rule", "",
                   "REGEX=env:VAR or REGEX=file:PATH: the token for URLs "
                   "matching REGEX (repeat; first match wins)"});
  specs.push_back({"sync-files", "true",
                   "fdatasync each finished file before it is renamed into "
                   "place and reported complete (--sync-files=false: faster, "
                   "less safe against machine crashes)",
                   /*is_bool=*/true});
  specs.push_back({"health-interval", "2s",
                   "How often the database is checked for the health status"});
  return specs;
}

std::vector<std::string> NonEmpty(std::vector<std::string> values) {
  std::vector<std::string> out;
  for (std::string& v : values) {
    if (!v.empty()) out.push_back(std::move(v));
  }
  return out;
}

int Run(int argc, char** argv) {
  mm::BlockShutdownSignals();
  mm::SetLogComponent("downloader");
  std::vector<mm::OptionSpec> specs = Specs();
  absl::StatusOr<mm::Config> config = mm::Config::Load(specs, argc, argv);
  if (!config.ok()) {
    std::cerr << "mm-downloader: " << config.status().message() << "\n";
    return 2;
  }
  if (config->help_requested()) {
    std::cout << "usage: mm-downloader --download-root DIR [flags]\n\n"
              << mm::Config::Usage(specs);
    return 0;
  }
  auto usage_error = [](const absl::Status& status) {
    std::cerr << "mm-downloader: " << status.message() << "\n";
    return 2;
  };
  absl::StatusOr<mm::ServerOptions> server_options =
      mm::ServerOptionsFromConfig(*config);
  if (!server_options.ok()) return usage_error(server_options.status());

  dl::EngineOptions engine;
  struct IntFlag {
    const char* name;
    int64_t* out;
  };
  int64_t max_parallel, max_files, segments, min_segment, host_connections,
      bandwidth, attempts;
  for (IntFlag flag : {IntFlag{"max-parallel", &max_parallel},
                       IntFlag{"max-parallel-files", &max_files},
                       IntFlag{"segments", &segments},
                       IntFlag{"min-segment-size", &min_segment},
                       IntFlag{"max-host-connections", &host_connections},
                       IntFlag{"max-bytes-per-second", &bandwidth},
                       IntFlag{"max-attempts", &attempts}}) {
    absl::StatusOr<int64_t> value = config->GetInt(flag.name);
    if (!value.ok()) return usage_error(value.status());
    if (*value < 0) {
      return usage_error(absl::InvalidArgumentError(
          absl::StrCat("--", flag.name, " must not be negative")));
    }
    *flag.out = *value;
  }
  if (max_parallel < 1 || max_files < 1 || segments < 1 || attempts < 1 ||
      min_segment < 1) {
    return usage_error(absl::InvalidArgumentError(
        "--max-parallel, --max-parallel-files, --segments, --max-attempts "
        "and --min-segment-size must be at least 1"));
  }
  engine.max_parallel = static_cast<int>(max_parallel);
  engine.max_parallel_files = static_cast<int>(max_files);
  engine.max_segments = static_cast<int>(segments);
  engine.min_segment_size = min_segment;
  engine.max_attempts = static_cast<int>(attempts);
  struct DurationFlag {
    const char* name;
    absl::Duration* out;
  };
  absl::Duration health_interval;
  for (DurationFlag flag :
       {DurationFlag{"stall-timeout", &engine.stall_timeout},
        DurationFlag{"retry-delay", &engine.retry_base_delay},
        DurationFlag{"max-retry-delay", &engine.retry_max_delay},
        DurationFlag{"lease", &engine.lease},
        DurationFlag{"health-interval", &health_interval}}) {
    absl::StatusOr<absl::Duration> value = config->GetDuration(flag.name);
    if (!value.ok()) return usage_error(value.status());
    *flag.out = *value;
  }
  if (engine.lease < absl::Seconds(1)) {
    return usage_error(
        absl::InvalidArgumentError("--lease must be at least 1s"));
  }

  auto policy = std::make_shared<mm::http::AddressPolicy>();
  absl::StatusOr<bool> allow_private = config->GetBool("allow-private-urls");
  if (!allow_private.ok()) return usage_error(allow_private.status());
  if (*allow_private) policy->AllowAllPrivate();
  absl::StatusOr<bool> sync_files = config->GetBool("sync-files");
  if (!sync_files.ok()) return usage_error(sync_files.status());
  engine.sync_files = *sync_files;
  for (const std::string& cidr : NonEmpty(config->GetList("allow-cidr"))) {
    if (absl::Status s = policy->Allow(cidr); !s.ok()) return usage_error(s);
  }
  engine.address_policy = policy;

  absl::StatusOr<dl::DownloadRoots> roots =
      dl::DownloadRoots::Create(NonEmpty(config->GetList("download-root")));
  if (!roots.ok()) return usage_error(roots.status());
  absl::StatusOr<std::unique_ptr<dl::TokenProvider>> tokens =
      dl::TokenProvider::Create(NonEmpty(config->GetList("token-rule")));
  if (!tokens.ok()) return usage_error(tokens.status());

  std::mt19937_64 random{std::random_device{}()};
  std::string replica_id = absl::StrCat(absl::Hex(random(), absl::kZeroPad16));
  std::string db = config->GetString("db");
  absl::StatusOr<std::unique_ptr<dl::JobStore>> store =
      dl::JobStore::Open(db, replica_id);
  if (!store.ok()) {
    MM_LOG(ERROR) << "cannot open job store " << mm::sql::RedactUrl(db) << ": "
                  << store.status();
    return 1;
  }
  if ((*store)->dialect() == mm::sql::Dialect::kSqlite) {
    // One process owns a SQLite queue: whatever the last one was running
    // is ours to resume now.
    if (absl::Status s = (*store)->ExpireAllLeases(); !s.ok()) {
      MM_LOG(ERROR) << "cannot reset leases: " << s;
      return 1;
    }
  }
  MM_LOG(INFO) << "job store " << mm::sql::DialectName((*store)->dialect())
               << " at " << mm::sql::RedactUrl(db) << "; replica "
               << replica_id;

  mm::http::TransferLoop::Options loop_options;
  loop_options.max_host_connections = static_cast<int>(host_connections);
  loop_options.max_bytes_per_second = bandwidth;
  std::unique_ptr<mm::http::TransferLoop> loop =
      mm::http::TransferLoop::Create(loop_options);
  dl::Engine worker(store->get(), loop.get(), tokens->get(), engine);
  dl::DownloaderService service(store->get(), &worker, tokens->get(),
                                std::move(*roots), policy);
  absl::StatusOr<std::unique_ptr<mm::ServiceHost>> host =
      mm::ServiceHost::Start(*server_options, {&service},
                             {dl::kDownloaderServiceName});
  if (!host.ok()) {
    MM_LOG(ERROR) << host.status();
    return 1;
  }
  worker.Start();
  (*host)->AddShutdownHook([&service, &worker] {
    service.Shutdown();
    worker.Stop();
  });
  dl::JobStore* raw_store = store->get();
  (*host)->MonitorHealth([raw_store] { return raw_store->Ping(); },
                         health_interval);
  return (*host)->RunUntilSignal();
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
