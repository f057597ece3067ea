// `mm up`, `mm down` and `mm status`: the system on this machine (the
// supervisor in cli/supervisor.h does the work).
#ifndef MM_CLI_SYSTEM_COMMANDS_H_
#define MM_CLI_SYSTEM_COMMANDS_H_

#include "cli/command.h"

namespace mm::cli {

CommandGroup SystemCommands();

}  // namespace mm::cli

#endif  // MM_CLI_SYSTEM_COMMANDS_H_
