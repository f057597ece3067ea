// The `mm` commands that work on local files with the model library alone,
// no service needed:
//
//   mm probe PATH [--set FIELD=VALUE]... [--hash ALGO] [--allow-unknown]
//                 [--json]
//   mm hash PATH [--algo ALGO]
//   mm scan DIR [--json]
//   mm inspect PATH [--json]
//
// probe identifies a model file or folder and prints its config: `field:
// value` lines (strings bare, other values as compact JSON), or one JSON
// object with --json. --set applies an override (VALUE is parsed as JSON
// when it parses, else taken as a string); --hash ALGO also computes the
// content hash; --allow-unknown registers unrecognised files as unknown.
// hash prints "<algo>:<hex>" of a file or folder (spec §5; --algo defaults
// to blake3_single). scan prints the model candidates under DIR (spec
// §4.3), one per line, or a JSON array. inspect prints a weights file's
// tensor table (name, dtype, shape, bytes), its non-tensor values and
// metadata, and the reader's findings; --json prints {format, tensors:
// [{name, dtype, shape, offset, byte_size}], scalars, findings}.
//
// They follow command.h: nothing is written unless the command succeeds,
// and an error is RunCli's one line (`mm: NOT_FOUND: ...`).
#ifndef MM_CLI_LOCAL_COMMANDS_H_
#define MM_CLI_LOCAL_COMMANDS_H_

#include "cli/command.h"

namespace mm::cli {

CommandGroup LocalCommands();

}  // namespace mm::cli

#endif  // MM_CLI_LOCAL_COMMANDS_H_
