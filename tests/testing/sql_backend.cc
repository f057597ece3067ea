#include "tests/testing/sql_backend.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "tests/testing/postgres_cluster.h"

namespace mm::testing {
namespace {

// Stops the shared cluster after the last suite, so every suite of the
// binary (parameterised or PostgreSQL-only) shares one.
class SharedPostgresClusterEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { StopSharedPostgresCluster(); }
};
::testing::Environment* const kSharedPostgresClusterEnvironment =
    ::testing::AddGlobalTestEnvironment(new SharedPostgresClusterEnvironment);

}  // namespace

void PrintTo(SqlBackend backend, std::ostream* os) {
  *os << (backend == SqlBackend::kSqlite ? "Sqlite" : "Postgres");
}

std::string SqlBackendName(const ::testing::TestParamInfo<SqlBackend>& info) {
  return info.param == SqlBackend::kSqlite ? "Sqlite" : "Postgres";
}

std::string FreshDatabaseUrl(SqlBackend backend,
                             const std::filesystem::path& dir,
                             std::string* no_cluster) {
  static std::atomic<int> counter{0};
  int n = counter++;
  if (backend == SqlBackend::kSqlite) {
    return absl::StrCat("sqlite:",
                        (dir / absl::StrCat("db", n, ".db")).string());
  }
  PostgresCluster* cluster = SharedPostgresCluster(no_cluster);
  if (cluster == nullptr) return "";
  absl::StatusOr<std::string> url =
      cluster->CreateDatabase(absl::StrCat("test_", n));
  if (!url.ok()) {
    *no_cluster = url.status().ToString();
    return "";
  }
  return *url;
}

}  // namespace mm::testing
