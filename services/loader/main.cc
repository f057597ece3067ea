// mm-loader: the loader service. See docs/loader.md.
#include <grp.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/client.h"
#include "common/config.h"
#include "common/logging.h"
#include "common/server.h"
#include "services/loader/byte_size.h"
#include "services/loader/device.h"
#include "services/loader/loader_metrics.h"
#include "services/loader/loader_service.h"
#include "services/loader/model_loader.h"
#include "services/loader/record_source.h"
#include "services/loader/record_watcher.h"
#include "services/loader/shm_region.h"

namespace {

int Fail(const std::string& message) {
  std::cerr << "mm-loader: " << message << "\n";
  return 2;
}

int Run(int argc, char** argv) {
  mm::BlockShutdownSignals();
  mm::SetLogComponent("loader");
  std::vector<mm::OptionSpec> specs = mm::ServerOptionSpecs("unix:loader.sock");
  specs.push_back(
      {"records", "unix:records.sock", "Address of the records service"});
  specs.push_back(
      {"records-token-file", "", "Bearer token file for the records service"});
  specs.push_back({"records-tls-ca", "",
                   "PEM CA bundle to verify the records service (TLS)"});
  specs.push_back(
      {"models-dir", "models", "Where relative record paths are resolved"});
  specs.push_back({"ram-cache", "",
                   "RAM tier budget (e.g. 16GiB); default: half of RAM minus "
                   "2 GiB, between 4 and 32 GiB"});
  specs.push_back(
      {"vram-cache", "", "VRAM tier budget; default: free VRAM minus 3 GiB"});
  specs.push_back({"device", "0", "CUDA device ordinal of the VRAM tier"});
  specs.push_back({"shm-group", "",
                   "Group allowed to map loaded models read-only (mode 0640); "
                   "default: owner only (0600)"});
  specs.push_back({"shm-name-log", "loader-shm.list",
                   "File recording this loader's shared-memory names; the "
                   "next start removes what a killed run left"});
  specs.push_back({"keep-alive", "0s",
                   "Drop models unused this long (0s: keep until evicted)"});
  specs.push_back({"read-threads", "4", "Reading threads per load"});
  absl::StatusOr<mm::Config> config = mm::Config::Load(specs, argc, argv);
  if (!config.ok()) return Fail(std::string(config.status().message()));
  if (config->help_requested()) {
    std::cout << "usage: mm-loader [flags]\n\n" << mm::Config::Usage(specs);
    return 0;
  }
  absl::StatusOr<mm::ServerOptions> options =
      mm::ServerOptionsFromConfig(*config);
  if (!options.ok()) return Fail(std::string(options.status().message()));
  absl::StatusOr<absl::Duration> keep_alive = config->GetDuration("keep-alive");
  if (!keep_alive.ok()) return Fail(std::string(keep_alive.status().message()));
  absl::StatusOr<int64_t> threads = config->GetInt("read-threads");
  if (!threads.ok() || *threads < 1 || *threads > 256) {
    return Fail("--read-threads: a number from 1 to 256");
  }
  uint64_t budget;
  if (config->GetString("ram-cache").empty()) {
    uint64_t total_ram = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) *
                         static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    budget = mm::loader::DefaultRamBudget(total_ram);
  } else {
    absl::StatusOr<uint64_t> parsed =
        mm::loader::ParseByteSize(config->GetString("ram-cache"));
    if (!parsed.ok() || *parsed == 0) {
      return Fail(absl::StrCat(
          "--ram-cache: ",
          parsed.ok() ? "must be more than 0" : parsed.status().message()));
    }
    budget = *parsed;
  }
  std::optional<gid_t> group;
  if (std::string name = config->GetString("shm-group"); !name.empty()) {
    struct group* entry = ::getgrnam(name.c_str());
    if (entry == nullptr) {
      return Fail(absl::StrCat("--shm-group: no group named '", name, "'"));
    }
    group = entry->gr_gid;
  }
  // The VRAM tier, when this build and this node have a CUDA device.
  absl::StatusOr<int64_t> ordinal = config->GetInt("device");
  if (!ordinal.ok() || *ordinal < 0) return Fail("--device: a CUDA ordinal");
  absl::StatusOr<std::unique_ptr<mm::loader::Device>> device =
      mm::loader::OpenCudaDevice(static_cast<int>(*ordinal));
  uint64_t vram_budget = 0;
  if (device.ok()) {
    if (!config->GetString("vram-cache").empty()) {
      absl::StatusOr<uint64_t> parsed =
          mm::loader::ParseByteSize(config->GetString("vram-cache"));
      if (!parsed.ok()) {
        return Fail(absl::StrCat("--vram-cache: ", parsed.status().message()));
      }
      vram_budget = *parsed;
    } else {
      constexpr uint64_t kReserve = 3ull << 30;
      absl::StatusOr<uint64_t> free_bytes = (*device)->FreeBytes();
      vram_budget = free_bytes.ok() && *free_bytes > kReserve
                        ? *free_bytes - kReserve
                        : 0;
    }
    MM_LOG(INFO) << "VRAM tier on CUDA device " << *ordinal << ", budget "
                 << vram_budget << " bytes";
  } else {
    MM_LOG(INFO) << "no VRAM tier: " << device.status().message();
  }
  int removed = 0;
  absl::StatusOr<std::unique_ptr<mm::loader::ShmNameLog>> name_log =
      mm::loader::ShmNameLog::Open(config->GetString("shm-name-log"), &removed);
  if (!name_log.ok()) {
    MM_LOG(ERROR) << name_log.status();
    return 1;
  }
  mm::ClientOptions records_options;
  records_options.token_file = config->GetString("records-token-file");
  records_options.tls_ca = config->GetString("records-tls-ca");
  absl::StatusOr<std::unique_ptr<mm::loader::RecordsServiceSource>> records =
      mm::loader::RecordsServiceSource::Create(config->GetString("records"),
                                               records_options);
  if (!records.ok()) {
    MM_LOG(ERROR) << records.status();
    return 1;
  }
  mm::loader::ModelLoader loader(
      {.models_dir = std::filesystem::absolute(config->GetString("models-dir")),
       .ram_budget_bytes = budget,
       .shm_group = group,
       .shm_name_log = name_log->get(),
       .keep_alive = *keep_alive,
       .read_threads = static_cast<int>(*threads),
       .records = records->get(),
       .device = device.ok() ? device->get() : nullptr,
       .vram_unavailable = device.ok() ? absl::OkStatus() : device.status(),
       .vram_budget_bytes = vram_budget});
  // One registry for the server's rpc metrics and the cache's.
  auto registry = std::make_shared<mm::metrics::Registry>();
  options->metrics = registry;
  mm::metrics::ScopedCollector cache_metrics =
      mm::loader::ExportLoaderMetrics(&loader, registry.get());
  absl::StatusOr<std::shared_ptr<grpc::Channel>> watch_channel =
      mm::MakeChannel(config->GetString("records"), records_options);
  if (!watch_channel.ok()) {
    MM_LOG(ERROR) << watch_channel.status();
    return 1;
  }
  // Drops cache entries of deleted records, and of records whose path or
  // hash changed, as the records service reports them.
  mm::loader::RecordWatcher watcher(*watch_channel, &loader);
  watcher.Start();
  mm::loader::LoaderService service(&loader);
  absl::StatusOr<std::unique_ptr<mm::ServiceHost>> host =
      mm::ServiceHost::Start(*options, {&service},
                             {mm::loader::kLoaderServiceName});
  if (!host.ok()) {
    MM_LOG(ERROR) << host.status();
    return 1;
  }
  MM_LOG(INFO) << "RAM cache budget " << budget << " bytes; removed " << removed
               << " shared-memory object(s) of a previous run";
  (*host)->AddShutdownHook([&service, &watcher] {
    watcher.Stop();
    service.Shutdown();
  });
  // Serving does not wait for the records service: a Load while it is down
  // fails with UNAVAILABLE, and cached models stay usable.
  (*host)->SetServing(true);
  return (*host)->RunUntilSignal();
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
