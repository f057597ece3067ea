// The one list of `mm` command groups. A new group (a new service's
// commands) is one file declaring its CommandGroup (command.h) and one line
// here; parsing, help, address resolution and error reporting come with it.
#include "cli/command.h"
#include "cli/downloads_commands.h"
#include "cli/installer_commands.h"
#include "cli/loader_commands.h"
#include "cli/local_commands.h"
#include "cli/models_commands.h"
#include "cli/system_commands.h"

namespace mm::cli {

const std::vector<CommandGroup>& CommandGroups() {
  // In the order of the top-level usage.
  static const auto* const kGroups = new std::vector<CommandGroup>{
      SystemCommands(),    ModelsCommands(), DownloadsCommands(),
      InstallerCommands(), LoaderCommands(), LocalCommands(),
  };
  return *kGroups;
}

}  // namespace mm::cli
