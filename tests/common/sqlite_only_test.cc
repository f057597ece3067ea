// Database::OpenSqlite, linked with mm_sql_sqlite alone: this executable
// builds without libpq, as the `mm` command does (common/CMakeLists.txt).
#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/metrics/registry.h"
#include "common/sql/database.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::sql {
namespace {

using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::testing::HasSubstr;

TEST(OpenSqliteTest, CreatesTheFileAndKeepsWhatIsWritten) {
  TempDir dir;
  const std::filesystem::path file = dir.path() / "state.db";
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> db,
                         Database::OpenSqlite(file.string()));
    EXPECT_EQ(db->dialect(), Dialect::kSqlite);
    ASSERT_OK(db->Execute("CREATE TABLE t (name TEXT NOT NULL)"));
    ASSERT_OK(db->Execute("INSERT INTO t (name) VALUES (?)", {"kept"}));
  }
  EXPECT_TRUE(std::filesystem::exists(file));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> again,
                       Database::OpenSqlite(file.string()));
  ASSERT_OK_AND_ASSIGN(Result rows, again->Execute("SELECT name FROM t"));
  ASSERT_EQ(rows.rows.size(), 1u);
  EXPECT_EQ(rows.rows[0].Text(0), "kept");
}

TEST(OpenSqliteTest, MemoryDatabase) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> db,
                       Database::OpenSqlite(":memory:"));
  ASSERT_OK_AND_ASSIGN(Result rows, db->Execute("SELECT 1 + 2"));
  ASSERT_EQ(rows.rows.size(), 1u);
  EXPECT_EQ(rows.rows[0].Int(0), 3);
}

TEST(OpenSqliteTest, RefusesAnEmptyPathAndBadOptions) {
  EXPECT_THAT(Database::OpenSqlite(""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no SQLite file named")));
  Options options;
  options.pool_size = 0;
  EXPECT_THAT(
      Database::OpenSqlite(":memory:", options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pool_size")));
}

TEST(OpenSqliteTest, AFolderThatDoesNotExistIsAClearError) {
  TempDir dir;
  const std::filesystem::path file = dir.path() / "missing" / "state.db";
  EXPECT_THAT(Database::OpenSqlite(file.string()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       ::testing::AllOf(HasSubstr("opening SQLite database " +
                                                  file.string()),
                                        HasSubstr("its directory exist"))));
}

TEST(OpenSqliteTest, CountsFailedCallsInTheRegistry) {
  metrics::Registry registry;
  Options options;
  options.metrics = &registry;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Database> db,
                       Database::OpenSqlite(":memory:", options));
  EXPECT_THAT(
      db->Execute("SELECT * FROM no_such_table"),
      StatusIs(absl::StatusCode::kInternal, HasSubstr("no_such_table")));
  EXPECT_THAT(registry.Render(),
              HasSubstr("mm_db_errors_total{code=\"INTERNAL\"} 1"));
}

}  // namespace
}  // namespace mm::sql
