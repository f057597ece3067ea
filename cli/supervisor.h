// `mm up`, `mm down`, `mm status`: run the whole system on one machine.
//
// `mm up` starts every service this build makes (cli/build_services.h:
// mm-records, mm-downloader and mm-loader today; mm-installer once it
// exists, and it says in one line why one is not started), each in its own
// process group on a unix socket in the state directory with SQLite files
// beside it, waits until each reports SERVING, and supervises them: a child
// that dies is restarted with exponential backoff; SIGINT/SIGTERM stop them
// all (SIGTERM, then SIGKILL after a grace period). One supervisor per state
// directory, enforced by an flock on `mm-up.pid`, which holds its pid.
//
// State directory layout:
//   records.sock, downloader.sock, ...   service sockets
//   records.db, downloader.db, ...       SQLite databases
//   models/                              the models volume
//   loader-shm.list                      mm-loader's shared-memory names
//                                        (removed at its next start)
//   logs/<service>.log, logs/mm-up.log   service and (detached) supervisor
//                                        output, appended
//   mm-up.pid                            the supervisor's pid (locked)
//
//   SupervisorOptions options;
//   options.state_dir = "/home/me/.local/state/modelmanager";
//   options.self_exe = SelfExecutablePath(argv[0]);
//   absl::Status status = RunUp(options, std::cout);
//
// Thread-safety: RunUp takes over the process's SIGINT, SIGTERM, SIGHUP and
// SIGCHLD handling (it blocks them and waits for them synchronously); call
// it from main's thread before any other thread exists. The other functions
// are reentrant.
#ifndef MM_CLI_SUPERVISOR_H_
#define MM_CLI_SUPERVISOR_H_

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/cli.h"
#include "common/config.h"

namespace mm::cli {

// The paths of a state directory.
struct StateLayout {
  explicit StateLayout(std::filesystem::path dir) : dir(std::move(dir)) {}
  std::filesystem::path Socket(const std::string& service) const {
    return dir / (service + ".sock");
  }
  std::filesystem::path Database(const std::string& service) const {
    return dir / (service + ".db");
  }
  std::filesystem::path Log(const std::string& name) const {
    return dir / "logs" / (name + ".log");
  }
  std::filesystem::path ModelsDir() const { return dir / "models"; }
  std::filesystem::path PidFile() const { return dir / "mm-up.pid"; }

  std::filesystem::path dir;
};

// Where service executables are looked for, in order: $MM_BIN_DIR, the
// directory of `self_exe`, and (for the build tree)
// <that directory>/../services/<service>/.
std::vector<std::filesystem::path> ServiceExecutableCandidates(
    const ServiceInfo& service, const std::filesystem::path& self_exe,
    const EnvLookup& env);
// The first candidate that is an executable file, or nullopt.
std::optional<std::filesystem::path> FindServiceExecutable(
    const ServiceInfo& service, const std::filesystem::path& self_exe,
    const EnvLookup& env);

// Restart delays: `initial`, doubling up to `max`; back to `initial` when
// the child had stayed up at least `reset_after`.
class RestartBackoff {
 public:
  RestartBackoff(absl::Duration initial = absl::Seconds(1),
                 absl::Duration max = absl::Seconds(30),
                 absl::Duration reset_after = absl::Seconds(60))
      : initial_(initial), max_(max), reset_after_(reset_after) {}
  // The delay before restarting a child that ran for `uptime`.
  absl::Duration NextDelay(absl::Duration uptime);

 private:
  absl::Duration initial_;
  absl::Duration max_;
  absl::Duration reset_after_;
  // The delay the next restart uses, unless reset.
  absl::Duration next_ = absl::ZeroDuration();
};

// The pid of the `mm up` running on `state_dir` (whose lock on mm-up.pid is
// held), or nullopt when none runs. The pid is 0 when the supervisor holds
// the lock but has not written its pid yet.
std::optional<pid_t> RunningSupervisor(const std::filesystem::path& state_dir);

// The last `max_lines` lines of a file at or after byte `from`; empty when
// unreadable.
std::string TailOfFile(const std::filesystem::path& path, size_t max_lines,
                       uint64_t from = 0);

struct SupervisorOptions {
  // Created with mode 0700 if missing.
  std::filesystem::path state_dir;
  // The `mm` binary: services are looked up beside it.
  std::filesystem::path self_exe;
  // Environment: MM_BIN_DIR; also passed on to the services.
  EnvLookup env;
  // The services, in start order. Each one this build makes must be found
  // and must start (NOT_FOUND otherwise); one it does not make
  // (missing_reason set) is reported with its reason and not started.
  std::vector<ServiceInfo> services = KnownServices();
  // How long each service may take to report SERVING.
  absl::Duration startup_deadline = absl::Seconds(30);
  // How long children get after SIGTERM before SIGKILL.
  absl::Duration stop_grace = absl::Seconds(15);
  // Daemonize: the call returns once everything is SERVING (or failed),
  // leaving the supervisor running in the background.
  bool detach = false;
  // Passed to the installer (--hf-endpoint; empty: its default), and to
  // the downloader and the installer (--allow-private-urls: URLs on
  // loopback and private addresses, e.g. a hub mirror or a test server).
  std::string hf_endpoint;
  bool allow_private_urls = false;
};

// `mm up`. In the foreground, returns after a signal stopped everything
// (OK) or when start-up failed. Reports progress and restarts on `out`.
absl::Status RunUp(const SupervisorOptions& options, std::ostream& out);

// `mm down`: SIGTERM to the supervisor, then waits (at most `wait`) until
// it is gone. OK with a note when none runs.
absl::Status RunDown(const std::filesystem::path& state_dir, std::ostream& out,
                     absl::Duration wait = absl::Seconds(60));

// `mm status`: the supervisor, then each service's health and address (the
// records service always; the others when their address was given or their
// socket exists). FAILED_PRECONDITION when a listed service is not SERVING.
absl::Status RunStatus(const GlobalOptions& options, std::ostream& out);

}  // namespace mm::cli

#endif  // MM_CLI_SUPERVISOR_H_
