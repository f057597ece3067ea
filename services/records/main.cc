// mm-records: the records service. See docs/records.md.
#include <iostream>

#include "common/config.h"
#include "common/logging.h"
#include "common/server.h"
#include "common/sql/database.h"
#include "services/records/model_registry.h"
#include "services/records/record_store.h"
#include "services/records/records_service.h"

namespace {

int Run(int argc, char** argv) {
  mm::BlockShutdownSignals();
  mm::SetLogComponent("records");
  std::vector<mm::OptionSpec> specs =
      mm::ServerOptionSpecs("unix:records.sock");
  specs.push_back({"db", "sqlite:records.db",
                   "Record store: sqlite:PATH, PATH.db, postgresql://..., or "
                   "PATH.yaml"});
  specs.push_back({"health-interval", "2s",
                   "How often the database is checked for the health status"});
  absl::StatusOr<mm::Config> config = mm::Config::Load(specs, argc, argv);
  if (!config.ok()) {
    std::cerr << "mm-records: " << config.status().message() << "\n";
    return 2;
  }
  if (config->help_requested()) {
    std::cout << "usage: mm-records [flags]\n\n" << mm::Config::Usage(specs);
    return 0;
  }
  absl::StatusOr<mm::ServerOptions> options =
      mm::ServerOptionsFromConfig(*config);
  absl::StatusOr<absl::Duration> interval =
      config->GetDuration("health-interval");
  if (!options.ok() || !interval.ok()) {
    std::cerr << "mm-records: "
              << (options.ok() ? interval.status() : options.status()).message()
              << "\n";
    return 2;
  }
  std::string db = config->GetString("db");
  // One registry for the server's rpc metrics and the database's errors.
  auto metrics = std::make_shared<mm::metrics::Registry>();
  options->metrics = metrics;
  absl::StatusOr<std::unique_ptr<mm::records::RecordStore>> store =
      mm::records::OpenRecordStore(db, metrics.get());
  if (!store.ok()) {
    MM_LOG(ERROR) << "cannot open record store " << mm::sql::RedactUrl(db)
                  << ": " << store.status();
    return 1;
  }
  MM_LOG(INFO) << "record store " << (*store)->backend() << " at "
               << mm::sql::RedactUrl(db) << " (schema "
               << (*store)->schema_version() << ")";
  mm::records::ModelRegistry registry(store->get());
  mm::records::RecordsService service(&registry);
  absl::StatusOr<std::unique_ptr<mm::ServiceHost>> host =
      mm::ServiceHost::Start(*options, {&service},
                             {mm::records::kRecordsServiceName});
  if (!host.ok()) {
    MM_LOG(ERROR) << host.status();
    return 1;
  }
  (*host)->AddShutdownHook([&service] { service.Shutdown(); });
  mm::records::RecordStore* raw_store = store->get();
  (*host)->MonitorHealth([raw_store] { return raw_store->Ping(); }, *interval);
  return (*host)->RunUntilSignal();
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
