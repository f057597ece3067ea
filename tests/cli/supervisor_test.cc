#include "cli/supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::cli {
namespace {

namespace fs = std::filesystem;
using ::mm::testing::IsOk;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// When the supervisor under test starts this binary as "mm-records" (through
// a symlink), it is a fake records service: a real gRPC server with health
// on the given unix socket, SERVING at once, stopping on SIGTERM.
int RunFakeRecordsService(const std::vector<std::string>& args) {
  BlockShutdownSignals();
  ServerOptions options;
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--listen") options.listen = args[i + 1];
  }
  options.shutdown_grace = absl::Seconds(1);
  absl::StatusOr<std::unique_ptr<ServiceHost>> host =
      ServiceHost::Start(options, {}, {"modelmanager.v1.ModelRecords"});
  if (!host.ok()) {
    std::cerr << "fake records: " << host.status() << std::endl;
    return 1;
  }
  (*host)->SetServing(true);
  std::cout << "fake records serving on " << options.listen << std::endl;
  return (*host)->RunUntilSignal();
}

[[maybe_unused]] const bool kIsFakeService = [] {
  std::ifstream file("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  std::string arg;
  while (std::getline(file, arg, '\0')) args.push_back(arg);
  if (args.empty() || fs::path(args[0]).filename() != "mm-records") {
    return false;
  }
  std::_Exit(RunFakeRecordsService(args));
}();

// Just the records service: the fake bin folders hold no other executable.
std::vector<ServiceInfo> RecordsOnly() { return {*FindService("records")}; }

EnvLookup FakeEnv(std::map<std::string, std::string> values) {
  return [values = std::move(values)](
             const std::string& name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

void WriteScript(const fs::path& path, const std::string& body) {
  mm::testing::WriteFile(path, "#!/bin/sh\n" + body);
  chmod(path.c_str(), 0755);
}

// Waits (bounded) until `path` contains `text`.
bool WaitForText(const fs::path& path, const std::string& text,
                 absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (mm::testing::ReadFile(path).find(text) != std::string::npos) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

TEST(RestartBackoffTest, DoublesUpToMaxAndResetsAfterAStableRun) {
  RestartBackoff backoff(absl::Seconds(1), absl::Seconds(30),
                         absl::Seconds(60));
  std::vector<absl::Duration> delays;
  for (int i = 0; i < 7; ++i) {
    delays.push_back(backoff.NextDelay(absl::Seconds(2)));
  }
  EXPECT_THAT(delays,
              ElementsAre(absl::Seconds(1), absl::Seconds(2), absl::Seconds(4),
                          absl::Seconds(8), absl::Seconds(16),
                          absl::Seconds(30), absl::Seconds(30)));
  EXPECT_EQ(backoff.NextDelay(absl::Seconds(60)), absl::Seconds(1));
  EXPECT_EQ(backoff.NextDelay(absl::Seconds(1)), absl::Seconds(2));
}

TEST(StateLayoutTest, Paths) {
  StateLayout layout("/s");
  EXPECT_EQ(layout.Socket("records"), "/s/records.sock");
  EXPECT_EQ(layout.Database("records"), "/s/records.db");
  EXPECT_EQ(layout.Log("loader"), "/s/logs/loader.log");
  EXPECT_EQ(layout.ModelsDir(), "/s/models");
  EXPECT_EQ(layout.PidFile(), "/s/mm-up.pid");
}

TEST(FindServiceExecutableTest, CandidatesInOrder) {
  const ServiceInfo& records = *FindService("records");
  EXPECT_THAT(ServiceExecutableCandidates(records, "/build/cli/mm",
                                          FakeEnv({{"MM_BIN_DIR", "/opt/b"}})),
              ElementsAre("/opt/b/mm-records", "/build/cli/mm-records",
                          "/build/services/records/mm-records"));
}

TEST(FindServiceExecutableTest, FindsTheBuildTreeLayout) {
  TempDir temp;
  fs::path exe = temp.path() / "services" / "records" / "mm-records";
  WriteScript(exe, "exit 0\n");
  std::optional<fs::path> found = FindServiceExecutable(
      *FindService("records"), temp.path() / "cli" / "mm", FakeEnv({}));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(*found, exe);
  EXPECT_FALSE(FindServiceExecutable(*FindService("loader"),
                                     temp.path() / "cli" / "mm", FakeEnv({}))
                   .has_value());
}

TEST(FindServiceExecutableTest, IgnoresFilesThatAreNotExecutable) {
  TempDir temp;
  mm::testing::WriteFile(temp.path() / "mm-records", "not executable");
  EXPECT_FALSE(FindServiceExecutable(*FindService("records"),
                                     temp.path() / "mm", FakeEnv({}))
                   .has_value());
}

TEST(RunningSupervisorTest, FollowsTheLockNotTheFile) {
  TempDir temp;
  EXPECT_FALSE(RunningSupervisor(temp.path()).has_value());
  mm::testing::WriteFile(temp.path() / "mm-up.pid", "12345\n");
  // A stale file without a lock holder is not a running supervisor.
  EXPECT_FALSE(RunningSupervisor(temp.path()).has_value());
  int fd = open((temp.path() / "mm-up.pid").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(flock(fd, LOCK_EX | LOCK_NB), 0);
  EXPECT_EQ(RunningSupervisor(temp.path()), std::optional<pid_t>(12345));
  close(fd);
  EXPECT_FALSE(RunningSupervisor(temp.path()).has_value());
}

TEST(TailOfFileTest, LastLinesFromOffset) {
  TempDir temp;
  fs::path file = temp.path() / "log";
  mm::testing::WriteFile(file, "one\ntwo\nthree\nfour\n");
  EXPECT_EQ(TailOfFile(file, 2), "three\nfour\n");
  EXPECT_EQ(TailOfFile(file, 10, 8), "three\nfour\n");
  EXPECT_EQ(TailOfFile(temp.path() / "missing", 3), "");
}

TEST(RunUpTest, ServiceThatExitsDuringStartupFailsWithItsLog) {
  TempDir temp;
  WriteScript(temp.path() / "bin" / "mm-records",
              "echo \"records: cannot open database $MM_DB\" >&2\nexit 3\n");
  SupervisorOptions options;
  options.state_dir = temp.path() / "state";
  options.env = FakeEnv({{"MM_BIN_DIR", (temp.path() / "bin").string()}});
  options.services = RecordsOnly();
  std::ostringstream out;
  absl::Status status = RunUp(options, out);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("exited with exit status 3")));
  EXPECT_THAT(
      status.message(),
      HasSubstr(absl::StrCat("cannot open database sqlite:",
                             (options.state_dir / "records.db").string())));
  EXPECT_FALSE(RunningSupervisor(options.state_dir).has_value());
  EXPECT_FALSE(fs::exists(options.state_dir / "mm-up.pid"));
  struct stat info;
  ASSERT_EQ(stat(options.state_dir.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700u);
}

TEST(RunUpTest, ServiceThatNeverServesTimesOut) {
  TempDir temp;
  WriteScript(temp.path() / "bin" / "mm-records",
              "echo starting\nexec sleep 60\n");
  SupervisorOptions options;
  options.state_dir = temp.path() / "state";
  options.env = FakeEnv({{"MM_BIN_DIR", (temp.path() / "bin").string()}});
  options.services = RecordsOnly();
  options.startup_deadline = absl::Milliseconds(500);
  std::ostringstream out;
  absl::Status status = RunUp(options, out);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDeadlineExceeded,
                               HasSubstr("did not report SERVING within")));
  EXPECT_THAT(status.message(), HasSubstr("starting"));
}

TEST(RunUpTest, ServiceThisBuildMakesButThatIsMissingIsAnError) {
  TempDir temp;
  WriteScript(temp.path() / "bin" / "mm-records", "exec sleep 60\n");
  SupervisorOptions options;
  options.state_dir = temp.path() / "state";
  options.env = FakeEnv({{"MM_BIN_DIR", (temp.path() / "bin").string()}});
  options.self_exe = temp.path() / "elsewhere" / "mm";
  options.services = RecordsOnly();
  options.services.push_back(*FindService("downloader"));
  options.services.back().missing_reason.clear();
  std::ostringstream out;
  EXPECT_THAT(RunUp(options, out),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("mm-downloader not found (looked at " +
                                 (temp.path() / "bin").string())));
  EXPECT_FALSE(RunningSupervisor(options.state_dir).has_value());
}

TEST(KnownServicesTest, EveryServiceIsEitherBuiltOrSaysWhyNot) {
  // This build makes records, downloader and loader.
  EXPECT_EQ(FindService("records")->missing_reason, "");
  EXPECT_EQ(FindService("downloader")->missing_reason, "");
  EXPECT_EQ(FindService("loader")->missing_reason, "");
  for (const ServiceInfo& service : KnownServices()) {
    EXPECT_TRUE(service.missing_reason.empty() ||
                service.missing_reason.size() > 10)
        << service.name;
  }
}

// Stops a detached supervisor left behind by a failed assertion.
struct DownOnExit {
  fs::path state_dir;
  ~DownOnExit() {
    std::ostringstream ignored;
    (void)RunDown(state_dir, ignored, absl::Seconds(30));
  }
};

TEST(RunUpTest, DetachedSupervisorServesRestartsAndStops) {
  TempDir temp;
  fs::path bin = temp.path() / "bin";
  fs::create_directories(bin);
  fs::create_symlink(fs::read_symlink("/proc/self/exe"), bin / "mm-records");
  SupervisorOptions options;
  options.state_dir = temp.path() / "state";
  options.env = FakeEnv({{"MM_BIN_DIR", bin.string()}});
  options.services = RecordsOnly();
  // A service this build does not make is named with its reason, once.
  options.services.push_back({"loader", "mm-loader", "modelmanager.v1.Loader",
                              "built without CUDA (MM_WITH_CUDA=OFF)"});
  options.detach = true;
  options.stop_grace = absl::Seconds(5);
  DownOnExit down{options.state_dir};

  std::ostringstream out;
  ASSERT_THAT(RunUp(options, out), IsOk());
  std::string summary = out.str();
  EXPECT_THAT(summary, HasSubstr("running in the background"));
  EXPECT_THAT(summary, HasSubstr("mm-loader: not started: built without CUDA "
                                 "(MM_WITH_CUDA=OFF)\n"));
  std::smatch match;
  ASSERT_TRUE(std::regex_search(
      summary, match, std::regex("records +SERVING +unix:\\S+ +([0-9]+)")))
      << summary;
  pid_t child = std::stoi(match[1]);
  std::optional<pid_t> supervisor = RunningSupervisor(options.state_dir);
  ASSERT_TRUE(supervisor.has_value());
  EXPECT_GT(*supervisor, 0);

  // A second supervisor on the same directory is refused, naming the pid.
  SupervisorOptions second = options;
  second.detach = false;
  std::ostringstream ignored;
  EXPECT_THAT(RunUp(second, ignored),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("pid ", *supervisor))));

  GlobalOptions global;
  global.state_dir = options.state_dir;
  global.addresses["records"] = {
      absl::StrCat("unix:", (options.state_dir / "records.sock").string()),
      true};
  std::ostringstream status_out;
  EXPECT_THAT(RunStatus(global, status_out), IsOk());
  EXPECT_THAT(status_out.str(), HasSubstr("SERVING"));

  // A crashed service is restarted and the restart reported.
  ASSERT_EQ(kill(child, SIGKILL), 0);
  fs::path log = options.state_dir / "logs" / "mm-up.log";
  EXPECT_TRUE(WaitForText(log, "records restarted", absl::Seconds(30)))
      << mm::testing::ReadFile(log);
  EXPECT_THAT(mm::testing::ReadFile(log), HasSubstr("signal 9"));

  std::ostringstream down_out;
  EXPECT_THAT(RunDown(options.state_dir, down_out), IsOk());
  EXPECT_THAT(down_out.str(), HasSubstr("Stopped."));
  EXPECT_FALSE(RunningSupervisor(options.state_dir).has_value());
  EXPECT_FALSE(fs::exists(options.state_dir / "mm-up.pid"));
  // The daemon was forked from this process: reap it.
  EXPECT_EQ(waitpid(*supervisor, nullptr, 0), *supervisor);
  EXPECT_THAT(mm::testing::ReadFile(log), HasSubstr("mm up: stopped"));
  std::ostringstream after;
  EXPECT_THAT(RunStatus(global, after),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("records is not running")));
}

}  // namespace
}  // namespace mm::cli
