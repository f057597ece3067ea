// The installer's end-to-end harness: the real mm-records, mm-downloader
// and mm-installer executables on loopback (unix sockets in a temporary
// folder), one models folder, a fake Hugging Face hub (its CDN on
// 127.0.0.2) and a loopback HTTP server for URL sources, with the rpcs the
// tests call. Shared by installer_*_e2e_test.cc, one file a theme:
//
// - installer_sources_e2e_test.cc: every source kind, spec §8's events,
//   bad input, the `mm install` CLI;
// - installer_crash_e2e_test.cc: kill -9 at each step, dependencies that
//   restart, replicas on PostgreSQL, start-up clean-up;
// - installer_models_e2e_test.cc: DeleteModel, SyncModels,
//   DownloadAndCache.
#ifndef MM_TESTS_E2E_INSTALLER_HARNESS_H_
#define MM_TESTS_E2E_INSTALLER_HARNESS_H_

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "modelmanager/v1/installer.grpc.pb.h"
#include "modelmanager/v1/records.grpc.pb.h"
#include "tests/testing/fake_hf_hub.h"
#include "tests/testing/http_test_server.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace mm::e2e {

// How long a service may take to serve, and an install to end.
inline constexpr absl::Duration kStartTimeout = absl::Seconds(60);
inline constexpr absl::Duration kInstallTimeout = absl::Seconds(60);

// Sets `context`'s deadline `timeout` from now.
void SetDeadline(grpc::ClientContext& context, absl::Duration timeout);

// One service process with its channel.
struct Child {
  std::string address;
  std::filesystem::path log;
  std::unique_ptr<testing::Subprocess> process;
  std::shared_ptr<grpc::Channel> channel;
};

// Starts argv (argv[0] the executable) listening on <dir>/<name>.sock,
// logging to <dir>/<name>.log, and waits until it serves `service`.
absl::StatusOr<Child> StartChild(
    const std::filesystem::path& dir, const std::string& name,
    std::vector<std::string> argv, const std::string& service,
    const std::map<std::string, std::string>& env = {});

// Ends `child` with `signal` and waits for it.
absl::Status StopChild(Child& child, int signal);

// Follows the job until `done(job)` holds (or 60 s pass).
absl::StatusOr<modelmanager::v1::InstallJob> WatchUntil(
    modelmanager::v1::Installer::Stub& stub, const std::string& id,
    const std::function<bool(const modelmanager::v1::InstallJob&)>& done);

// The event types of the job, in order.
std::vector<std::string> Events(const modelmanager::v1::InstallJob& job);

// records + downloader + installer on one models folder, the hub and a
// plain HTTP server for URL sources; every service's database is SQLite in
// the test's folder.
class InstallerE2eTest : public ::testing::Test {
 protected:
  void SetUp() override;

  // (Re)starts each service on its database of this test.
  absl::Status StartRecords();
  absl::Status StartDownloader();
  // The installer, with `extra` flags after the defaults (a flag given
  // again replaces its default, e.g. --db) and `env` added to its
  // environment.
  absl::Status StartInstaller(
      std::vector<std::string> extra = {},
      const std::map<std::string, std::string>& env = {});
  // Stops the installer (SIGTERM) and starts it again with `extra` and
  // `env`.
  absl::Status RestartInstaller(
      std::vector<std::string> extra = {},
      const std::map<std::string, std::string>& env = {});
  // mm-installer's command line on this test's services, with `extra`.
  std::vector<std::string> InstallerArgv(
      const std::vector<std::string>& extra) const;

  absl::StatusOr<modelmanager::v1::InstallJob> Create(
      const std::string& source, bool inplace = false,
      const std::string& token = "", const std::string& config_json = "",
      const std::string& request_id = "");
  absl::StatusOr<modelmanager::v1::InstallJob> Wait(const std::string& id);
  // Create, then Wait.
  absl::StatusOr<modelmanager::v1::InstallJob> Install(
      const std::string& source, bool inplace = false,
      const std::string& token = "");
  absl::StatusOr<modelmanager::v1::InstallPlan> Plan(
      const std::string& source, const std::string& token = "");
  // Every record (a failure fails the test and reads as none).
  std::vector<modelmanager::v1::Model> Records();
  // What the models folder holds at its top level, sorted.
  std::vector<std::string> ModelsEntries();
  // The file's BLAKE3 hash as the installer computes it by default.
  static std::string Blake3(const std::filesystem::path& path);

  testing::TempDir dir_;
  std::filesystem::path models_;
  std::unique_ptr<testing::FakeHfHub> hub_;
  std::unique_ptr<testing::HttpTestServer> web_;
  Child records_;
  Child downloader_;
  Child installer_;
  std::unique_ptr<modelmanager::v1::Installer::Stub> stub_;
  std::unique_ptr<modelmanager::v1::ModelRecords::Stub> records_stub_;
};

}  // namespace mm::e2e

#endif  // MM_TESTS_E2E_INSTALLER_HARNESS_H_
