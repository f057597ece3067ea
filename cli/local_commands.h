// The `mm` commands that work on local files with the model library alone,
// no service needed:
//
//   mm probe PATH [--set FIELD=VALUE]... [--hash ALGO] [--allow-unknown]
//                 [--json]
//   mm hash PATH [--algo ALGO]
//   mm scan DIR [--json]
//   mm inspect PATH [--json]
//
// Each Run*Command takes the words after the command name, writes its
// result to `out`, and returns the process exit code: 0 on success, 1 on
// any error, which is reported as exactly one line on `err`:
//   mm probe: INVALID_ARGUMENT: not a recognised model: /x.bin: ...
// `--help` prints the usage to `out` and returns 0.
//
// Stateless; the functions may run concurrently on different streams.
//
//   int main(int argc, char** argv) {
//     std::vector<std::string> args(argv + 2, argv + argc);
//     if (command == "probe") return mm::cli::RunProbeCommand(args, std::cout,
//                                                            std::cerr);
//   }
#ifndef MM_CLI_LOCAL_COMMANDS_H_
#define MM_CLI_LOCAL_COMMANDS_H_

#include <ostream>
#include <string>
#include <vector>

namespace mm::cli {

// Identifies a model file or folder and prints its config: `field: value`
// lines (strings bare, other values as compact JSON), or one JSON object
// with --json. --set applies an override (VALUE is parsed as JSON when it
// parses, else taken as a string); --hash ALGO also computes the content
// hash; --allow-unknown registers unrecognised files as unknown.
int RunProbeCommand(const std::vector<std::string>& args, std::ostream& out,
                    std::ostream& err);

// Prints "<algo>:<hex>" of a file or folder (spec §5). --algo defaults to
// blake3_single.
int RunHashCommand(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err);

// Prints the model candidates under DIR (spec §4.3), one per line, or a
// JSON array with --json.
int RunScanCommand(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err);

// Prints a weights file's tensor table (name, dtype, shape, bytes), its
// non-tensor values and metadata, and the reader's findings; --json prints
// {format, tensors: [{name, dtype, shape, offset, byte_size}], scalars,
// findings}.
int RunInspectCommand(const std::vector<std::string>& args, std::ostream& out,
                      std::ostream& err);

}  // namespace mm::cli

#endif  // MM_CLI_LOCAL_COMMANDS_H_
