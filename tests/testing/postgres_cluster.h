// A throwaway PostgreSQL server for tests: initdb into a fresh temporary
// directory, then postgres listening only on a unix socket in that
// directory (no TCP port, so parallel tests never collide). Settings favour
// start-up speed over durability (fsync off).
//
// When the process runs as root (CI), initdb refuses to run, so the server
// is run as the `postgres` system user and the directory is given to it.
// Without PostgreSQL server binaries Start() fails with FAILED_PRECONDITION;
// tests then skip on a developer's machine, and fail where PostgreSQL is
// required (CI=true or MM_REQUIRE_POSTGRES=1, as scripts/test.sh sets), so
// the replica, lease and NOTIFY tests can never vanish unnoticed:
//
//   absl::StatusOr<std::unique_ptr<PostgresCluster>> cluster =
//       PostgresCluster::Start();
//   if (!cluster.ok()) MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(cluster.status());
//   auto db = sql::Database::Open((*cluster)->url());
//
// Thread-safety: not thread-safe; drive it from the test's main thread.
// Stop()/Restart() are for outage tests; the destructor stops the server
// and removes the directory.
#ifndef MM_TESTS_TESTING_POSTGRES_CLUSTER_H_
#define MM_TESTS_TESTING_POSTGRES_CLUSTER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mm::testing {

class PostgresCluster {
 public:
  // Creates and starts a new cluster. FAILED_PRECONDITION when no server
  // binaries are installed (or MM_POSTGRES_BIN points nowhere), INTERNAL
  // with the tail of the server log when initdb or start-up fails.
  static absl::StatusOr<std::unique_ptr<PostgresCluster>> Start();

  ~PostgresCluster();
  PostgresCluster(const PostgresCluster&) = delete;
  PostgresCluster& operator=(const PostgresCluster&) = delete;

  // libpq URI of the `postgres` database as superuser `postgres`, e.g.
  // "postgresql:///postgres?host=/tmp/mm-pg-Ab12Cd&port=5432&user=postgres".
  std::string url() const { return UrlFor("postgres"); }
  // The same for database `name`.
  std::string UrlFor(std::string_view name) const;
  const std::string& directory() const { return directory_; }
  bool running() const { return running_; }

  // Creates database `name` ([a-z0-9_]+) and returns its URL.
  absl::StatusOr<std::string> CreateDatabase(std::string_view name);

  // Stops the server (fast shutdown: clients are disconnected).
  absl::Status Stop();
  // Starts it again on the same data (after Stop()).
  absl::Status Restart();

 private:
  PostgresCluster(std::string bin_dir, std::string directory);

  // Runs bin_dir/program with `args` as the server's user, output appended
  // to the cluster's log; INTERNAL with the log's tail on failure.
  absl::Status RunTool(const std::string& program,
                       const std::vector<std::string>& args) const;

  std::string bin_dir_;
  std::string directory_;  // holds data/, the socket and server.log
  bool running_ = false;
};

// One cluster shared by every test of a binary, started by the first test
// that asks (so tests of other backends in the same binary, run alone, do
// not pay for it) and stopped by StopSharedPostgresCluster, e.g. from a
// fixture's TearDownTestSuite. Returns nullptr with `error` set when the
// cluster cannot start; a failed start is not retried. Not thread-safe:
// call from the test thread.
PostgresCluster* SharedPostgresCluster(std::string* error);
void StopSharedPostgresCluster();

// True when a test run must not go on without PostgreSQL: the environment
// has CI=true or MM_REQUIRE_POSTGRES=1.
bool PostgresRequired();

}  // namespace mm::testing

// Ends the current test (or SetUp) because no PostgreSQL cluster could be
// started, with `why` (anything streamable) in the message: a failure where
// PostgresRequired(), else a skip.
#define MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(why)                      \
  do {                                                             \
    if (::mm::testing::PostgresRequired()) {                       \
      GTEST_FAIL() << "PostgreSQL is required here (CI=true or "   \
                      "MM_REQUIRE_POSTGRES=1) but did not start: " \
                   << (why);                                       \
    }                                                              \
    GTEST_SKIP() << "no PostgreSQL: " << (why);                    \
  } while (false)

#endif  // MM_TESTS_TESTING_POSTGRES_CLUSTER_H_
