// Tests that run one suite on both SQL backends (a SQLite file and a
// database in the binary's shared PostgreSQL cluster, postgres_cluster.h):
//
//   class StoreTest : public ::testing::TestWithParam<SqlBackend> {
//     void SetUp() override {
//       std::string no_cluster;
//       url_ = FreshDatabaseUrl(GetParam(), dir_.path(), &no_cluster);
//       if (url_.empty()) MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(no_cluster);
//     }
//   };
//   INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, AllSqlBackends(),
//                            SqlBackendName);
//
// The shared cluster is stopped after the binary's last test.
#ifndef MM_TESTS_TESTING_SQL_BACKEND_H_
#define MM_TESTS_TESTING_SQL_BACKEND_H_

#include <filesystem>
#include <ostream>
#include <string>

#include "gtest/gtest.h"

namespace mm::testing {

enum class SqlBackend { kSqlite, kPostgres };

// So a failing case names its backend instead of printing bytes.
void PrintTo(SqlBackend backend, std::ostream* os);
// "Sqlite" or "Postgres", for INSTANTIATE_TEST_SUITE_P's names.
std::string SqlBackendName(const ::testing::TestParamInfo<SqlBackend>& info);
inline auto AllSqlBackends() {
  return ::testing::Values(SqlBackend::kSqlite, SqlBackend::kPostgres);
}

// The URL of a fresh, empty database: a new SQLite file under `dir`, or a
// new database in the shared PostgreSQL cluster. "" with `no_cluster` set
// when the cluster cannot start.
std::string FreshDatabaseUrl(SqlBackend backend,
                             const std::filesystem::path& dir,
                             std::string* no_cluster);

}  // namespace mm::testing

#endif  // MM_TESTS_TESTING_SQL_BACKEND_H_
