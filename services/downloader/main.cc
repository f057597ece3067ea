// mm-downloader: the download queue service. See docs/downloader.md.
#include <iostream>

#include "common/config.h"
#include "common/logging.h"
#include "common/server.h"
#include "services/downloader/downloader_server.h"

namespace {

namespace dl = mm::downloader;

int Run(int argc, char** argv) {
  mm::BlockShutdownSignals();
  mm::SetLogComponent("downloader");
  std::vector<mm::OptionSpec> specs =
      mm::ServerOptionSpecs("unix:downloader.sock");
  for (mm::OptionSpec& spec : dl::DownloaderOptionSpecs()) {
    specs.push_back(std::move(spec));
  }
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
  absl::StatusOr<mm::ServerOptions> server_options =
      mm::ServerOptionsFromConfig(*config);
  absl::StatusOr<dl::DownloaderOptions> options =
      server_options.ok() ? dl::DownloaderOptionsFromConfig(*config)
                          : server_options.status();
  if (!options.ok()) {
    std::cerr << "mm-downloader: " << options.status().message() << "\n";
    return 2;
  }
  // One registry for the server's rpc metrics and the downloader's own.
  auto registry = std::make_shared<mm::metrics::Registry>();
  server_options->metrics = registry;
  options->metrics = registry.get();
  absl::StatusOr<std::unique_ptr<dl::Downloader>> downloader =
      dl::Downloader::Create(*options);
  if (!downloader.ok()) {
    MM_LOG(ERROR) << downloader.status();
    return 1;
  }
  absl::StatusOr<std::unique_ptr<mm::ServiceHost>> host =
      mm::ServiceHost::Start(*server_options, {&(*downloader)->service()},
                             {dl::kDownloaderServiceName});
  if (!host.ok()) {
    MM_LOG(ERROR) << host.status();
    return 1;
  }
  dl::Downloader* raw = downloader->get();
  raw->Start();
  (*host)->AddShutdownHook([raw] { raw->Stop(); });
  (*host)->MonitorHealth([raw] { return raw->store().Ping(); },
                         options->health_interval);
  return (*host)->RunUntilSignal();
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
