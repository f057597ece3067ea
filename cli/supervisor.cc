#include "cli/supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/output.h"
#include "common/status.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace mm::cli {
namespace {

namespace fs = std::filesystem;

constexpr size_t kLogTailLines = 20;
// How often start-up polls the health of a starting service.
constexpr absl::Duration kHealthPollInterval = absl::Milliseconds(100);

std::string ErrnoText(int error) { return std::strerror(error); }

timespec DurationToTimespec(absl::Duration duration) {
  if (duration < absl::ZeroDuration()) duration = absl::ZeroDuration();
  return absl::ToTimespec(duration);
}

bool IsExecutableFile(const fs::path& path) {
  std::error_code error;
  return fs::is_regular_file(path, error) && access(path.c_str(), X_OK) == 0;
}

// "exit status 3" or "signal 9 (Killed)".
std::string WaitStatusText(int status) {
  if (WIFEXITED(status))
    return absl::StrCat("exit status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("signal ", WTERMSIG(status), " (",
                        strsignal(WTERMSIG(status)), ")");
  }
  return absl::StrCat("wait status ", status);
}

std::string DurationText(absl::Duration duration) {
  return absl::FormatDuration(absl::Trunc(duration, absl::Milliseconds(100)));
}

sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

sigset_t ChildSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  return set;
}

sigset_t SupervisorSignals() {
  sigset_t set = StopSignals();
  sigaddset(&set, SIGCHLD);
  return set;
}

absl::Status WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("write: ", ErrnoText(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

std::string ReadAll(int fd) {
  std::string data;
  char buffer[4096];
  while (true) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buffer, static_cast<size_t>(n));
  }
  return data;
}

// A channel for start-up health polls: its own subchannel pool and short
// reconnect backoff, so a socket that appears a moment after the first
// attempt is tried again within 100-500 ms, not gRPC's default seconds.
std::shared_ptr<grpc::Channel> StartupHealthChannel(const fs::path& socket) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  return grpc::CreateCustomChannel(absl::StrCat("unix:", socket.string()),
                                   grpc::InsecureChannelCredentials(), args);
}

// Holds the exclusive flock on mm-up.pid for the supervisor's lifetime; the
// kernel drops it if the process dies, so a stale file never blocks.
class PidFileLock {
 public:
  static absl::StatusOr<std::unique_ptr<PidFileLock>> Acquire(
      const StateLayout& layout) {
    fs::path path = layout.PidFile();
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot open ", path.string(), ": ", ErrnoText(errno),
                       "; check the state directory's permissions"));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int error = errno;
      close(fd);
      if (error == EWOULDBLOCK) {
        std::optional<pid_t> pid = RunningSupervisor(layout.dir);
        return absl::FailedPreconditionError(
            absl::StrCat("mm up is already running (pid ", pid.value_or(0),
                         ") with state directory ", layout.dir.string(),
                         "; stop it with `mm down` or use another --home"));
      }
      return absl::InternalError(
          absl::StrCat("cannot lock ", path.string(), ": ", ErrnoText(error)));
    }
    std::string pid = absl::StrCat(getpid(), "\n");
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
      int error = errno;
      close(fd);
      return absl::InternalError(
          absl::StrCat("cannot write ", path.string(), ": ", ErrnoText(error)));
    }
    return std::unique_ptr<PidFileLock>(new PidFileLock(fd, path));
  }

  ~PidFileLock() {
    // Unlink while still holding the lock, so nobody reads our stale pid.
    unlink(path_.c_str());
    close(fd_);
  }

  PidFileLock(const PidFileLock&) = delete;
  PidFileLock& operator=(const PidFileLock&) = delete;

 private:
  PidFileLock(int fd, fs::path path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  fs::path path_;
};

struct Child {
  ServiceInfo info;
  fs::path executable;
  pid_t pid = -1;
  absl::Time started;
  // Size of the log before this start, so failures show only its lines.
  uint64_t log_offset = 0;
  RestartBackoff backoff;
  std::optional<absl::Time> restart_at;
};

// Runs the children of one `mm up`. Single-threaded: every signal it cares
// about is blocked and taken with sigtimedwait, so there are no handlers.
class Supervisor {
 public:
  Supervisor(const SupervisorOptions& options, std::vector<Child> children,
             std::ostream& out)
      : options_(options),
        layout_(options.state_dir),
        children_(std::move(children)),
        out_(out) {}

  // Starts everything, calls `ready` with the summary once all are
  // SERVING, then supervises until a stop signal.
  absl::Status Run(const std::function<void(const std::string&)>& ready) {
    ASSIGN_OR_RETURN(std::unique_ptr<PidFileLock> lock,
                     PidFileLock::Acquire(layout_));
    for (Child& child : children_) {
      absl::Status started = Start(child);
      if (!started.ok()) {
        StopAll();
        if (stop_requested_) return absl::OkStatus();
        return started;
      }
    }
    ready(Summary());
    while (!stop_requested_) {
      absl::Duration wait = absl::Hours(1);
      absl::Time now = absl::Now();
      for (const Child& child : children_) {
        if (child.restart_at) wait = std::min(wait, *child.restart_at - now);
      }
      sigset_t signals = SupervisorSignals();
      timespec timeout = DurationToTimespec(wait);
      int signal = sigtimedwait(&signals, nullptr, &timeout);
      if (signal == SIGCHLD) {
        ReapExited();
      } else if (signal > 0) {
        Report(absl::StrCat("received ", strsignal(signal), "; stopping"));
        stop_requested_ = true;
      }
      if (!stop_requested_) RestartDue();
    }
    StopAll();
    Report("stopped");
    return absl::OkStatus();
  }

 private:
  void Report(const std::string& line) {
    out_ << "mm up: " << line << std::endl;
  }

  std::vector<std::string> ChildArgv(const Child& child) const {
    std::vector<std::string> argv = {
        child.executable.string(), "--listen",
        absl::StrCat("unix:", layout_.Socket(child.info.name).string())};
    if (child.info.name == "records") {
      argv.push_back("--db");
      argv.push_back(
          absl::StrCat("sqlite:", layout_.Database("records").string()));
    }
    // RunUp's PrepareStateDir has created the models dir by now.
    if (child.info.name == "downloader") {
      argv.push_back("--download-root");
      argv.push_back(layout_.ModelsDir().string());
      argv.push_back("--db");
      argv.push_back(
          absl::StrCat("sqlite:", layout_.Database("downloader").string()));
    }
    if (child.info.name == "installer") {
      for (const char* service : {"records", "downloader"}) {
        argv.push_back(absl::StrCat("--", service));
        argv.push_back(absl::StrCat("unix:", layout_.Socket(service).string()));
      }
      argv.push_back("--models-dir");
      argv.push_back(layout_.ModelsDir().string());
      argv.push_back("--db");
      argv.push_back(
          absl::StrCat("sqlite:", layout_.Database("installer").string()));
      if (!options_.hf_endpoint.empty()) {
        argv.push_back("--hf-endpoint");
        argv.push_back(options_.hf_endpoint);
      }
    }
    if (options_.allow_private_urls &&
        (child.info.name == "downloader" || child.info.name == "installer")) {
      argv.push_back("--allow-private-urls");
    }
    if (child.info.name == "loader") {
      argv.insert(
          argv.end(),
          {"--records",
           absl::StrCat("unix:", layout_.Socket("records").string()),
           "--models-dir", layout_.ModelsDir().string(), "--shm-name-log",
           (layout_.dir / "loader-shm.list").string()});
    }
    return argv;
  }

  // The inherited environment with our settings on top. Services read
  // MM_<OPTION> for every option they have and ignore the rest, so this is
  // how the services that are not yet written get their configuration.
  std::vector<std::string> ChildEnvironment(const Child& child) const {
    std::map<std::string, std::string> ours = {
        {"MM_LISTEN",
         absl::StrCat("unix:", layout_.Socket(child.info.name).string())},
        {"MM_DB",
         absl::StrCat("sqlite:", layout_.Database(child.info.name).string())},
        {"MM_MODELS_DIR", layout_.ModelsDir().string()},
        {"MM_HOME", layout_.dir.string()},
    };
    for (const ServiceInfo& service : KnownServices()) {
      std::string upper = service.name;
      for (char& c : upper) c = static_cast<char>(std::toupper(c));
      ours[absl::StrCat("MM_", upper, "_ADDR")] =
          absl::StrCat("unix:", layout_.Socket(service.name).string());
    }
    // The supervisor checks health over plain unix sockets, so TLS settings
    // meant for some other server must not leak into ours.
    const std::set<std::string> dropped = {"MM_TLS_CERT", "MM_TLS_KEY",
                                           "MM_TLS_CLIENT_CA"};
    std::vector<std::string> env;
    for (char** entry = environ; entry != nullptr && *entry != nullptr;
         ++entry) {
      std::string text = *entry;
      std::string name = text.substr(0, text.find('='));
      if (ours.count(name) == 0 && dropped.count(name) == 0) {
        env.push_back(std::move(text));
      }
    }
    for (const auto& [name, value] : ours) {
      env.push_back(absl::StrCat(name, "=", value));
    }
    return env;
  }

  absl::Status Spawn(Child& child) {
    fs::path log = layout_.Log(child.info.name);
    int log_fd =
        open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log_fd < 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          "cannot open log ", log.string(), ": ", ErrnoText(errno)));
    }
    off_t end = lseek(log_fd, 0, SEEK_END);
    child.log_offset = end > 0 ? static_cast<uint64_t>(end) : 0;
    (void)WriteAll(
        log_fd, absl::StrCat("--- mm up: starting ", child.info.executable,
                             " at ", absl::FormatTime(absl::Now()), " ---\n"));
    // A socket left by a crashed run would make the bind fail; we hold the
    // state directory's lock, so nobody else owns it.
    unlink(layout_.Socket(child.info.name).c_str());

    std::vector<std::string> argv_text = ChildArgv(child);
    std::vector<std::string> env_text = ChildEnvironment(child);
    std::vector<char*> argv;
    for (std::string& arg : argv_text) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (std::string& entry : env_text) envp.push_back(entry.data());
    envp.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, log_fd, 1);
    posix_spawn_file_actions_adddup2(&actions, log_fd, 2);
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    // Own process group: a terminal's Ctrl-C reaches only the supervisor,
    // which then stops the children in order.
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP |
                                              POSIX_SPAWN_SETSIGMASK |
                                              POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attributes, 0);
    sigset_t empty;
    sigemptyset(&empty);
    posix_spawnattr_setsigmask(&attributes, &empty);
    sigset_t defaults = SupervisorSignals();
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setsigdefault(&attributes, &defaults);
    pid_t pid = -1;
    int error = posix_spawn(&pid, child.executable.c_str(), &actions,
                            &attributes, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    close(log_fd);
    if (error != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot start ", child.executable.string(), ": ", ErrnoText(error)));
    }
    child.pid = pid;
    child.started = absl::Now();
    return absl::OkStatus();
  }

  std::string LogTail(const Child& child) const {
    fs::path log = layout_.Log(child.info.name);
    return absl::StrCat("last lines of ", log.string(), ":\n",
                        TailOfFile(log, kLogTailLines, child.log_offset));
  }

  // Polls health until SERVING, the child exits, the deadline passes, or a
  // stop signal arrives (CANCELLED; stop_requested_ is then set).
  absl::Status WaitServing(Child& child) {
    absl::Time deadline = absl::Now() + options_.startup_deadline;
    fs::path socket = layout_.Socket(child.info.name);
    std::shared_ptr<grpc::Channel> channel;
    absl::Status last = absl::UnavailableError("its socket did not appear");
    while (true) {
      int status = 0;
      if (waitpid(child.pid, &status, WNOHANG) == child.pid) {
        child.pid = -1;
        return absl::UnavailableError(absl::StrCat(
            child.info.executable, " exited with ", WaitStatusText(status),
            " while starting; ", LogTail(child)));
      }
      std::error_code error;
      if (fs::exists(socket, error)) {
        if (channel == nullptr) channel = StartupHealthChannel(socket);
        last = CheckHealth(*channel, "", absl::Seconds(1));
        if (last.ok()) return absl::OkStatus();
      }
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            child.info.executable, " did not report SERVING within ",
            absl::FormatDuration(options_.startup_deadline), " (",
            last.message(), "); ", LogTail(child)));
      }
      sigset_t stop = StopSignals();
      timespec poll = DurationToTimespec(kHealthPollInterval);
      int signal = sigtimedwait(&stop, nullptr, &poll);
      if (signal > 0) {
        Report(absl::StrCat("received ", strsignal(signal), "; stopping"));
        stop_requested_ = true;
        return absl::CancelledError("stopped by a signal");
      }
    }
  }

  absl::Status Start(Child& child) {
    RETURN_IF_ERROR(Spawn(child));
    absl::Status serving = WaitServing(child);
    if (!serving.ok()) {
      Kill(child);
      return serving;
    }
    return absl::OkStatus();
  }

  // SIGKILL to the child's group and reap it.
  void Kill(Child& child) {
    if (child.pid <= 0) return;
    kill(-child.pid, SIGKILL);
    int status = 0;
    while (waitpid(child.pid, &status, 0) < 0 && errno == EINTR) {
    }
    child.pid = -1;
  }

  void ReapExited() {
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      for (Child& child : children_) {
        if (child.pid != pid) continue;
        child.pid = -1;
        absl::Duration uptime = absl::Now() - child.started;
        absl::Duration delay = child.backoff.NextDelay(uptime);
        child.restart_at = absl::Now() + delay;
        Report(absl::StrCat(child.info.name, " (pid ", pid, ") exited with ",
                            WaitStatusText(status), " after ",
                            DurationText(uptime), "; restarting in ",
                            DurationText(delay), " (log ",
                            layout_.Log(child.info.name).string(), ")"));
      }
    }
  }

  void RestartDue() {
    for (Child& child : children_) {
      if (!child.restart_at || *child.restart_at > absl::Now()) continue;
      child.restart_at.reset();
      absl::Status started = Start(child);
      if (stop_requested_) return;
      if (started.ok()) {
        Report(absl::StrCat(child.info.name, " restarted (pid ", child.pid,
                            "), SERVING"));
        continue;
      }
      absl::Duration delay = child.backoff.NextDelay(absl::ZeroDuration());
      child.restart_at = absl::Now() + delay;
      Report(absl::StrCat("restarting ", child.info.name,
                          " failed: ", started.message(),
                          "\nmm up: trying again in ", DurationText(delay)));
    }
  }

  void StopAll() {
    for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
      if (it->pid > 0) kill(-it->pid, SIGTERM);
    }
    absl::Time deadline = absl::Now() + options_.stop_grace;
    while (true) {
      bool alive = false;
      for (Child& child : children_) {
        if (child.pid <= 0) continue;
        int status = 0;
        if (waitpid(child.pid, &status, WNOHANG) == child.pid) {
          child.pid = -1;
        } else {
          alive = true;
        }
      }
      if (!alive) return;
      absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) break;
      sigset_t chld = ChildSignal();
      timespec wait =
          DurationToTimespec(std::min(left, absl::Milliseconds(200)));
      sigtimedwait(&chld, nullptr, &wait);
    }
    for (Child& child : children_) {
      if (child.pid <= 0) continue;
      Report(absl::StrCat(
          child.info.name, " (pid ", child.pid, ") did not stop within ",
          absl::FormatDuration(options_.stop_grace), "; killing it"));
      Kill(child);
    }
  }

  std::string Summary() const {
    std::ostringstream text;
    text << "mm up: state directory " << layout_.dir.string() << "\n";
    TextTable table({"SERVICE", "STATUS", "ADDRESS", "PID", "LOG"});
    for (const Child& child : children_) {
      table.AddRow(
          {child.info.name, "SERVING",
           absl::StrCat("unix:", layout_.Socket(child.info.name).string()),
           absl::StrCat(child.pid), layout_.Log(child.info.name).string()});
    }
    table.Print(text);
    text << "database: sqlite:" << layout_.Database("records").string()
         << "\nmodels:   " << layout_.ModelsDir().string() << "\n";
    for (const ServiceInfo& service : options_.services) {
      bool started = std::any_of(
          children_.begin(), children_.end(),
          [&](const Child& c) { return c.info.name == service.name; });
      if (!started) {
        text << service.executable
             << ": not started: " << service.missing_reason << "\n";
      }
    }
    return text.str();
  }

  const SupervisorOptions& options_;
  StateLayout layout_;
  std::vector<Child> children_;
  std::ostream& out_;
  bool stop_requested_ = false;
};

absl::StatusOr<std::vector<Child>> FindChildren(
    const SupervisorOptions& options) {
  std::vector<Child> children;
  for (const ServiceInfo& service : options.services) {
    std::optional<fs::path> executable =
        FindServiceExecutable(service, options.self_exe, options.env);
    if (!executable) {
      // Not made by this build: Summary() says why.
      if (!service.missing_reason.empty()) continue;
      std::vector<std::string> looked;
      for (const fs::path& candidate : ServiceExecutableCandidates(
               service, options.self_exe, options.env)) {
        looked.push_back(candidate.string());
      }
      return absl::NotFoundError(absl::StrCat(
          service.executable, " not found (looked at ",
          absl::StrJoin(looked, ", "),
          "); build it, or set MM_BIN_DIR to the folder holding it"));
    }
    Child child;
    child.info = service;
    child.executable = *executable;
    children.push_back(std::move(child));
  }
  return children;
}

absl::Status PrepareStateDir(const StateLayout& layout) {
  RETURN_IF_ERROR(EnsureStateDir(layout.dir));
  RETURN_IF_ERROR(EnsureStateDir(layout.dir / "logs"));
  std::error_code error;
  fs::create_directories(layout.ModelsDir(), error);
  if (error) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot create ", layout.ModelsDir().string(), ": ", error.message()));
  }
  return absl::OkStatus();
}

void BlockSupervisorSignals() {
  sigset_t signals = SupervisorSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

// The detached supervisor tells the waiting foreground how start-up went
// over a pipe: "ok\n<summary>" or "error <code>\n<message>".
absl::Status RunDetached(const SupervisorOptions& options,
                         std::vector<Child> children, std::ostream& out) {
  StateLayout layout(options.state_dir);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", ErrnoText(errno)));
  }
  out.flush();
  std::cout.flush();
  std::cerr.flush();
  pid_t pid = fork();
  if (pid < 0) {
    int error = errno;
    close(fds[0]);
    close(fds[1]);
    return absl::InternalError(absl::StrCat("fork: ", ErrnoText(error)));
  }
  if (pid == 0) {
    close(fds[0]);
    setsid();
    fs::path log = layout.Log("mm-up");
    int log_fd = open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0600);
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    if (log_fd >= 0) {
      dup2(log_fd, 1);
      dup2(log_fd, 2);
    }
    if (log_fd > 2) close(log_fd);
    if (null_fd > 2) close(null_fd);
    BlockSupervisorSignals();
    int report_fd = fds[1];
    Supervisor supervisor(options, std::move(children), std::cout);
    absl::Status status = supervisor.Run([&](const std::string& summary) {
      std::cout << summary << std::flush;
      (void)WriteAll(report_fd, absl::StrCat("ok\n", summary));
      close(report_fd);
      report_fd = -1;
    });
    if (report_fd >= 0) {
      (void)WriteAll(report_fd,
                     absl::StrCat("error ", static_cast<int>(status.code()),
                                  "\n", status.message()));
      close(report_fd);
    }
    if (!status.ok()) std::cout << "mm up: " << status << std::endl;
    std::cout.flush();
    _exit(status.ok() ? 0 : 1);
  }
  close(fds[1]);
  std::string report = ReadAll(fds[0]);
  close(fds[0]);
  fs::path log = layout.Log("mm-up");
  if (!absl::StartsWith(report, "ok\n")) {
    // The daemon exits right after reporting a failure; reap it.
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (absl::StartsWith(report, "ok\n")) {
    out << report.substr(3) << "mm up: running in the background (pid " << pid
        << "); stop it with `mm down`; its log: " << log.string() << "\n";
    return absl::OkStatus();
  }
  if (absl::StartsWith(report, "error ")) {
    size_t newline = report.find('\n');
    int code = 0;
    if (newline != std::string::npos &&
        absl::SimpleAtoi(report.substr(6, newline - 6), &code) && code != 0) {
      return absl::Status(static_cast<absl::StatusCode>(code),
                          report.substr(newline + 1));
    }
  }
  return absl::UnavailableError(absl::StrCat(
      "the background supervisor exited while starting; last lines of ",
      log.string(), ":\n", TailOfFile(log, kLogTailLines)));
}

}  // namespace

std::vector<fs::path> ServiceExecutableCandidates(const ServiceInfo& service,
                                                  const fs::path& self_exe,
                                                  const EnvLookup& env) {
  std::vector<fs::path> candidates;
  if (std::optional<std::string> bin_dir = env("MM_BIN_DIR");
      bin_dir && !bin_dir->empty()) {
    candidates.push_back(fs::path(*bin_dir) / service.executable);
  }
  if (!self_exe.empty()) {
    fs::path dir = self_exe.parent_path();
    candidates.push_back(dir / service.executable);
    candidates.push_back(
        (dir / ".." / "services" / service.name / service.executable)
            .lexically_normal());
  }
  return candidates;
}

std::optional<fs::path> FindServiceExecutable(const ServiceInfo& service,
                                              const fs::path& self_exe,
                                              const EnvLookup& env) {
  for (const fs::path& candidate :
       ServiceExecutableCandidates(service, self_exe, env)) {
    if (IsExecutableFile(candidate)) return candidate;
  }
  return std::nullopt;
}

absl::Duration RestartBackoff::NextDelay(absl::Duration uptime) {
  if (next_ == absl::ZeroDuration() || uptime >= reset_after_) {
    next_ = initial_;
  }
  absl::Duration delay = next_;
  next_ = std::min(next_ * 2, max_);
  return delay;
}

std::optional<pid_t> RunningSupervisor(const fs::path& state_dir) {
  fs::path path = StateLayout(state_dir).PidFile();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
    flock(fd, LOCK_UN);
    close(fd);
    return std::nullopt;
  }
  std::string text = ReadAll(fd);
  close(fd);
  int pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &pid)) pid = 0;
  return static_cast<pid_t>(pid);
}

std::string TailOfFile(const fs::path& path, size_t max_lines, uint64_t from) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  // Service logs can be large; the tail is within the last 64 KiB.
  constexpr uint64_t kMaxTailBytes = 64 * 1024;
  in.seekg(0, std::ios::end);
  uint64_t size = static_cast<uint64_t>(in.tellg());
  uint64_t start =
      std::max(from, size > kMaxTailBytes ? size - kMaxTailBytes : uint64_t{0});
  if (start > size) start = size;
  in.seekg(static_cast<std::streamoff>(start));
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  size_t first = lines.size() > max_lines ? lines.size() - max_lines : 0;
  std::string tail;
  for (size_t i = first; i < lines.size(); ++i) {
    absl::StrAppend(&tail, lines[i], "\n");
  }
  return tail;
}

absl::Status RunUp(const SupervisorOptions& options, std::ostream& out) {
  StateLayout layout(options.state_dir);
  RETURN_IF_ERROR(PrepareStateDir(layout));
  if (std::optional<pid_t> pid = RunningSupervisor(layout.dir)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "mm up is already running (pid ", *pid, ") with state directory ",
        layout.dir.string(), "; stop it with `mm down` or use another --home"));
  }
  ASSIGN_OR_RETURN(std::vector<Child> children, FindChildren(options));
  if (options.detach) return RunDetached(options, std::move(children), out);
  // Before any thread exists, so every thread gRPC starts inherits the mask
  // and the signals reach only our sigtimedwait.
  BlockSupervisorSignals();
  Supervisor supervisor(options, std::move(children), out);
  return supervisor.Run([&](const std::string& summary) {
    out << summary << "mm up: running (pid " << getpid()
        << "); press Ctrl-C or run `mm down` to stop" << std::endl;
  });
}

absl::Status RunDown(const fs::path& state_dir, std::ostream& out,
                     absl::Duration wait) {
  std::optional<pid_t> pid = RunningSupervisor(state_dir);
  absl::Time deadline = absl::Now() + wait;
  // The lock is taken a moment before the pid is written.
  while (pid && *pid == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
    pid = RunningSupervisor(state_dir);
  }
  if (!pid) {
    out << "mm up is not running (state directory " << state_dir.string()
        << ")\n";
    return absl::OkStatus();
  }
  if (kill(*pid, SIGTERM) != 0 && errno != ESRCH) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot signal mm up (pid ", *pid, "): ", ErrnoText(errno),
                     "; run `mm down` as the user that ran `mm up`"));
  }
  out << "Stopping mm up (pid " << *pid << ")..." << std::endl;
  while (RunningSupervisor(state_dir)) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("mm up (pid ", *pid, ") did not stop within ",
                       absl::FormatDuration(wait), "; see ",
                       StateLayout(state_dir).Log("mm-up").string(),
                       ", or kill it with `kill -9 ", *pid, "`"));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  out << "Stopped." << std::endl;
  return absl::OkStatus();
}

absl::Status RunStatus(const GlobalOptions& options, std::ostream& out) {
  nlohmann::json report = nlohmann::json::object();
  if (!options.state_dir.empty()) {
    std::optional<pid_t> pid = RunningSupervisor(options.state_dir);
    report["state_dir"] = options.state_dir.string();
    report["supervisor_pid"] = pid ? nlohmann::json(*pid) : nlohmann::json();
    if (!options.json) {
      if (pid) {
        out << "mm up: running (pid " << *pid << "), state directory "
            << options.state_dir.string() << "\n";
      } else {
        out << "mm up: not running, state directory "
            << options.state_dir.string() << "\n";
      }
    }
  }
  TextTable table({"SERVICE", "HEALTH", "ADDRESS"});
  nlohmann::json services = nlohmann::json::array();
  std::vector<std::string> down;
  for (const ServiceInfo& service : KnownServices()) {
    auto it = options.addresses.find(service.name);
    if (it == options.addresses.end()) continue;
    const ServiceAddress& address = it->second;
    bool socket_exists = false;
    if (address.from_state_dir) {
      std::error_code error;
      socket_exists = fs::exists(
          StateLayout(options.state_dir).Socket(service.name), error);
      if (!socket_exists && service.name != "records") continue;
    }
    std::string health;
    if (address.from_state_dir && !socket_exists) {
      health = "not running";
    } else {
      absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
          MakeChannel(address.address, options.client);
      absl::Status status = channel.ok()
                                ? CheckHealth(**channel, "", absl::Seconds(3))
                                : channel.status();
      if (status.ok()) {
        health = "SERVING";
      } else if (status.code() == absl::StatusCode::kFailedPrecondition) {
        health = "NOT_SERVING";
      } else if (status.code() == absl::StatusCode::kUnavailable ||
                 status.code() == absl::StatusCode::kDeadlineExceeded) {
        health = "not running";
      } else {
        health =
            absl::StrCat("error: ", absl::StatusCodeToString(status.code()),
                         ": ", status.message());
      }
    }
    if (health != "SERVING")
      down.push_back(absl::StrCat(service.name, " is ", health));
    table.AddRow({service.name, health, address.address});
    services.push_back({{"service", service.name},
                        {"health", health},
                        {"address", address.address}});
  }
  if (options.json) {
    report["services"] = services;
    out << JsonText(report) << "\n";
  } else {
    table.Print(out);
  }
  if (!down.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        absl::StrJoin(down, ", "), "; start the system with `mm up`"));
  }
  return absl::OkStatus();
}

}  // namespace mm::cli
