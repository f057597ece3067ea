// `mm install`, `mm installs ...`, `mm sync`, `mm cache-download`, and the
// file-removing part of `mm models rm`: the installer service's commands
// (docs/installer.md).
//
// Thread-safety: like every command (command.h).
#ifndef MM_CLI_INSTALLER_COMMANDS_H_
#define MM_CLI_INSTALLER_COMMANDS_H_

#include <string>

#include "absl/status/status.h"
#include "cli/command.h"
#include "modelmanager/v1/installer.grpc.pb.h"

namespace mm::cli {

// Runs one installer command (tests, against a fake or a real stub).
absl::Status RunInstallerCommand(
    const ParsedArgs& args, modelmanager::v1::Installer::StubInterface& stub,
    const CommandIo& io);

// `mm models rm KEY --delete-files | --unconditionally`: the record and
// the files, through the installer (the records service alone only drops
// the record).
absl::Status RemoveModelThroughInstaller(const CommandContext& context);

// What a finished install means for the exit status: OK when completed or
// still going; the job's error code and message for ERROR; CANCELLED;
// FAILED_PRECONDITION for a paused job, naming how to resume it.
absl::Status InstallOutcome(const modelmanager::v1::InstallJob& job);

// One job as `field: value` lines, or JSON (the job's protobuf JSON with
// config_out as the reference's config dict).
absl::Status PrintInstallJob(const modelmanager::v1::InstallJob& job, bool json,
                             std::ostream& out);

CommandGroup InstallerCommands();
std::string InstallerUsage();

}  // namespace mm::cli

#endif  // MM_CLI_INSTALLER_COMMANDS_H_
