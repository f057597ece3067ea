// The `mm` command: see cli/cli.h and docs/cli.md.
#include <iostream>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "common/config.h"

int main(int argc, char** argv) {
  mm::cli::CliIo io;
  io.in = &std::cin;
  io.out = &std::cout;
  io.err = &std::cerr;
  io.env = mm::ProcessEnvironment();
  io.self_exe = mm::cli::SelfExecutablePath(argc > 0 ? argv[0] : nullptr);
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  return mm::cli::RunCli(args, io);
}
