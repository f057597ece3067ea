// mm-installer: the installer service. See docs/installer.md.
#include <iostream>

#include "common/config.h"
#include "common/logging.h"
#include "common/server.h"
#include "services/installer/installer_server.h"

namespace {

int Run(int argc, char** argv) {
  mm::BlockShutdownSignals();
  mm::SetLogComponent("installer");
  const std::vector<mm::OptionSpec> specs =
      mm::installer::InstallerOptionSpecs();
  absl::StatusOr<mm::Config> config = mm::Config::Load(specs, argc, argv);
  if (!config.ok()) {
    std::cerr << "mm-installer: " << config.status().message() << "\n";
    return 2;
  }
  if (config->help_requested()) {
    std::cout << "usage: mm-installer --records ADDR --downloader ADDR "
                 "--models-dir DIR [flags]\n\n"
              << mm::Config::Usage(specs);
    return 0;
  }
  absl::StatusOr<mm::installer::InstallerOptions> options =
      mm::installer::InstallerOptionsFromConfig(*config);
  if (!options.ok()) {
    std::cerr << "mm-installer: " << options.status().message() << "\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<mm::installer::InstallerServer>> server =
      mm::installer::InstallerServer::Start(*std::move(options));
  if (!server.ok()) {
    MM_LOG(ERROR) << server.status();
    return 1;
  }
  return (*server)->host().RunUntilSignal();
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
