#include "tests/testing/postgres_cluster.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mm::testing {
namespace {

// The socket lives in the cluster's private directory, so a fixed port
// number never collides with another cluster.
constexpr int kPort = 5432;
constexpr char kServerUser[] = "postgres";

// The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl,
// or MM_POSTGRES_BIN when set; empty when none.
std::string FindBinDir() {
  if (const char* env = std::getenv("MM_POSTGRES_BIN"); env && *env) {
    return env;
  }
  std::error_code error;
  std::string best;
  int best_version = -1;
  for (const auto& entry :
       std::filesystem::directory_iterator("/usr/lib/postgresql", error)) {
    int version = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &version)) continue;
    const std::filesystem::path bin = entry.path() / "bin";
    if (version > best_version &&
        std::filesystem::exists(bin / "initdb", error) &&
        std::filesystem::exists(bin / "pg_ctl", error)) {
      best_version = version;
      best = bin.string();
    }
  }
  return best;
}

std::string Tail(const std::string& path, size_t bytes) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  if (text.size() > bytes) text = "..." + text.substr(text.size() - bytes);
  return text;
}

}  // namespace

PostgresCluster::PostgresCluster(std::string bin_dir, std::string directory)
    : bin_dir_(std::move(bin_dir)), directory_(std::move(directory)) {}

absl::StatusOr<std::unique_ptr<PostgresCluster>> PostgresCluster::Start() {
  std::string bin_dir = FindBinDir();
  if (bin_dir.empty() ||
      !std::filesystem::exists(std::filesystem::path(bin_dir) / "initdb")) {
    return absl::FailedPreconditionError(
        "no PostgreSQL server binaries (initdb, pg_ctl) under "
        "/usr/lib/postgresql/<version>/bin or $MM_POSTGRES_BIN; install the "
        "postgresql package to run the PostgreSQL tests");
  }
  std::string directory = "/tmp/mm-pg-XXXXXX";
  if (::mkdtemp(directory.data()) == nullptr) {
    return absl::InternalError(absl::StrCat(
        "mkdtemp(/tmp/mm-pg-XXXXXX) failed: ", std::strerror(errno)));
  }
  // From here the destructor cleans up.
  auto cluster = std::unique_ptr<PostgresCluster>(
      new PostgresCluster(std::move(bin_dir), directory));
  if (::geteuid() == 0) {
    const passwd* user = ::getpwnam(kServerUser);
    if (user == nullptr) {
      return absl::FailedPreconditionError(
          "running as root, but there is no `postgres` user to run the "
          "server as (initdb refuses root); install the postgresql package "
          "or run the tests as an ordinary user");
    }
    if (::chown(directory.c_str(), user->pw_uid, user->pw_gid) != 0) {
      return absl::InternalError(absl::StrCat(
          "chown ", directory, " to postgres failed: ", std::strerror(errno)));
    }
  }
  const std::string data = directory + "/data";
  if (absl::Status s = cluster->RunTool(
          "initdb", {"-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                     "--locale=C", "--no-sync", "--no-instructions"});
      !s.ok()) {
    return s;
  }
  {
    std::ofstream conf(data + "/postgresql.conf", std::ios::app);
    conf << "\n# mm test cluster: unix socket only, speed over durability\n"
         << "listen_addresses = ''\n"
         << "unix_socket_directories = '" << directory << "'\n"
         << "port = " << kPort << "\n"
         << "max_connections = 100\n"
         << "shared_buffers = 16MB\n"
         << "fsync = off\n"
         << "synchronous_commit = off\n"
         << "full_page_writes = off\n";
    if (!conf) {
      return absl::InternalError(
          absl::StrCat("cannot append to ", data, "/postgresql.conf"));
    }
  }
  if (absl::Status s = cluster->Restart(); !s.ok()) return s;
  return cluster;
}

PostgresCluster::~PostgresCluster() {
  if (running_) {
    absl::Status ignored = RunTool("pg_ctl", {"-D", directory_ + "/data", "-m",
                                              "immediate", "-w", "stop"});
    (void)ignored;
  }
  std::error_code error;
  std::filesystem::remove_all(directory_, error);
}

std::string PostgresCluster::UrlFor(std::string_view name) const {
  return absl::StrCat("postgresql:///", std::string(name), "?host=", directory_,
                      "&port=", kPort, "&user=postgres");
}

absl::StatusOr<std::string> PostgresCluster::CreateDatabase(
    std::string_view name) {
  if (name.empty()) {
    return absl::InvalidArgumentError("CreateDatabase: name is empty");
  }
  for (char c : name) {
    if (!absl::ascii_islower(static_cast<unsigned char>(c)) &&
        !absl::ascii_isdigit(static_cast<unsigned char>(c)) && c != '_') {
      return absl::InvalidArgumentError(
          absl::StrCat("CreateDatabase: name \"", std::string(name),
                       "\" must match [a-z0-9_]+"));
    }
  }
  if (absl::Status s =
          RunTool("createdb", {"-h", directory_, "-p", absl::StrCat(kPort),
                               "-U", "postgres", std::string(name)});
      !s.ok()) {
    return s;
  }
  return UrlFor(name);
}

absl::Status PostgresCluster::Stop() {
  if (!running_) return absl::OkStatus();
  if (absl::Status s = RunTool("pg_ctl", {"-D", directory_ + "/data", "-m",
                                          "fast", "-w", "-t", "60", "stop"});
      !s.ok()) {
    return s;
  }
  running_ = false;
  return absl::OkStatus();
}

absl::Status PostgresCluster::Restart() {
  if (running_) return absl::OkStatus();
  if (absl::Status s = RunTool(
          "pg_ctl", {"-D", directory_ + "/data", "-l",
                     directory_ + "/server.log", "-w", "-t", "60", "start"});
      !s.ok()) {
    return absl::InternalError(absl::StrCat(
        s.message(), "\nserver.log: ", Tail(directory_ + "/server.log", 2000)));
  }
  running_ = true;
  return absl::OkStatus();
}

absl::Status PostgresCluster::RunTool(
    const std::string& program, const std::vector<std::string>& args) const {
  const std::string path = bin_dir_ + "/" + program;
  const std::string log_path = directory_ + "/tools.log";
  std::vector<std::string> argv_storage = {path};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& arg : argv_storage) argv.push_back(arg.data());
  argv.push_back(nullptr);

  // Everything the child needs is prepared here: after fork() in a threaded
  // process only async-signal-safe calls are allowed.
  bool drop_root = false;
  uid_t uid = 0;
  gid_t gid = 0;
  if (::geteuid() == 0) {
    const passwd* user = ::getpwnam(kServerUser);
    if (user == nullptr) {
      return absl::FailedPreconditionError("no `postgres` user to run as");
    }
    drop_root = true;
    uid = user->pw_uid;
    gid = user->pw_gid;
  }
  const int log_fd =
      ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot open ", log_path, ": ", std::strerror(errno)));
  }
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int saved = errno;
    ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(saved)));
  }
  if (pid == 0) {
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    // The server user may not be able to enter the test's working
    // directory; tools complain about that.
    if (::chdir(directory_.c_str()) != 0) ::_exit(126);
    if (drop_root) {
      if (::setgroups(1, &gid) != 0 || ::setgid(gid) != 0 ||
          ::setuid(uid) != 0) {
        ::_exit(125);
      }
    }
    ::execv(path.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(log_fd);
  if (null_fd >= 0) ::close(null_fd);
  int wait_status = 0;
  while (::waitpid(pid, &wait_status, 0) < 0) {
    if (errno != EINTR) {
      return absl::InternalError(
          absl::StrCat("waitpid: ", std::strerror(errno)));
    }
  }
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) {
    return absl::OkStatus();
  }
  std::string how =
      WIFEXITED(wait_status)
          ? absl::StrCat("exited with status ", WEXITSTATUS(wait_status))
          : absl::StrCat("was killed by signal ", WTERMSIG(wait_status));
  return absl::InternalError(
      absl::StrCat(program, " ", how, "; its output:\n", Tail(log_path, 2000)));
}

namespace {
PostgresCluster* shared_cluster = nullptr;
std::string* shared_cluster_error = nullptr;
}  // namespace

PostgresCluster* SharedPostgresCluster(std::string* error) {
  if (shared_cluster == nullptr && shared_cluster_error == nullptr) {
    absl::StatusOr<std::unique_ptr<PostgresCluster>> cluster =
        PostgresCluster::Start();
    if (cluster.ok()) {
      shared_cluster = cluster->release();
    } else {
      shared_cluster_error = new std::string(cluster.status().ToString());
    }
  }
  if (shared_cluster_error != nullptr) *error = *shared_cluster_error;
  return shared_cluster;
}

bool PostgresRequired() {
  const char* ci = std::getenv("CI");
  const char* required = std::getenv("MM_REQUIRE_POSTGRES");
  return (ci != nullptr && std::string_view(ci) == "true") ||
         (required != nullptr && std::string_view(required) == "1");
}

void StopSharedPostgresCluster() {
  delete shared_cluster;
  shared_cluster = nullptr;
}

}  // namespace mm::testing
