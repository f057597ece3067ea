// The `mm` command: see cli/cli.h and docs/cli.md.
#include <grpc/grpc.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "common/config.h"

int main(int argc, char** argv) {
  // gRPC stays initialised until the process ends. Otherwise the last
  // channel's destruction, at the end of every command, shuts gRPC down and
  // joins its threads: about 4 ms of each `mm` call, for nothing.
  grpc_init();
  mm::cli::CliIo io;
  io.in = &std::cin;
  io.out = &std::cout;
  io.err = &std::cerr;
  io.env = mm::ProcessEnvironment();
  io.self_exe = mm::cli::SelfExecutablePath(argc > 0 ? argv[0] : nullptr);
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  const int code = mm::cli::RunCli(args, io);
  // The command has finished and written everything; what is left are
  // gRPC's idle threads. Exiting without static destructors keeps those
  // threads from running into torn-down globals.
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  std::_Exit(code);
}
