#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "common/sql/database.h"
#include "common/sql/postgres_database.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/postgres_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace mm::sql {

// Names the backend in test output (found by ADL, so outside the anonymous
// namespace).
void PrintTo(Dialect dialect, std::ostream* out) {
  *out << DialectName(dialect);
}

namespace {

using ::mm::testing::PostgresCluster;
using ::mm::testing::StatusIs;
using ::mm::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// One cluster per test process, started on first use so SQLite-only runs
// never pay for initdb; stopped by the environment before exit.
class SharedCluster : public ::testing::Environment {
 public:
  static absl::StatusOr<PostgresCluster*> Get() {
    if (cluster_ == nullptr && status_.ok()) {
      absl::StatusOr<std::unique_ptr<PostgresCluster>> started =
          PostgresCluster::Start();
      if (started.ok()) {
        cluster_ = std::move(*started);
      } else {
        status_ = started.status();
      }
    }
    if (!status_.ok()) return status_;
    return cluster_.get();
  }
  void TearDown() override { cluster_.reset(); }

 private:
  static inline std::unique_ptr<PostgresCluster> cluster_;
  static inline absl::Status status_;
};
::testing::Environment* const kSharedClusterEnvironment =
    ::testing::AddGlobalTestEnvironment(new SharedCluster);

// Collects Listen callbacks; tests wait on it with a deadline.
class Inbox {
 public:
  std::function<void(std::optional<std::string>)> Callback() {
    return [this](std::optional<std::string> payload) {
      MutexLock lock(&mu_);
      items_.push_back(std::move(payload));
    };
  }
  // True once `item` has arrived (now or within `timeout`).
  bool WaitFor(std::optional<std::string> item, absl::Duration timeout) {
    MutexLock lock(&mu_);
    wanted_ = std::move(item);
    return mu_.AwaitWithTimeout(
        [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return HasWanted(); },
        timeout);
  }

 private:
  bool HasWanted() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& item : items_) {
      if (item == wanted_) return true;
    }
    return false;
  }

  Mutex mu_;
  std::vector<std::optional<std::string>> items_ ABSL_GUARDED_BY(mu_);
  std::optional<std::string> wanted_ ABSL_GUARDED_BY(mu_);
};

std::string Pick(const Database& db, std::string sqlite, std::string postgres) {
  return db.dialect() == Dialect::kSqlite ? sqlite : postgres;
}

class SqlTest : public ::testing::TestWithParam<Dialect> {
 protected:
  void SetUp() override {
    if (GetParam() == Dialect::kSqlite) {
      url_ = "sqlite:" + (dir_.path() / "test.db").string();
    } else {
      absl::StatusOr<PostgresCluster*> cluster = SharedCluster::Get();
      if (!cluster.ok()) MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(cluster.status());
      static int next_database = 0;
      ASSERT_OK_AND_ASSIGN(
          url_, (*cluster)->CreateDatabase(absl::StrCat("t", next_database++)));
    }
    ASSERT_OK_AND_ASSIGN(db_, Database::Open(url_));
    ASSERT_EQ(db_->dialect(), GetParam());
  }

  void CreateTable(const std::string& sqlite, const std::string& postgres) {
    ASSERT_OK(db_->Execute(Pick(*db_, sqlite, postgres)).status());
  }

  int64_t Count(const std::string& table) {
    absl::StatusOr<Result> r = db_->Execute("SELECT COUNT(*) FROM " + table);
    EXPECT_OK(r);
    return r.ok() && !r->rows.empty() ? r->rows[0].Int(0) : -1;
  }

  TempDir dir_;
  std::string url_;
  std::unique_ptr<Database> db_;
};

TEST_P(SqlTest, HostileTextIsStoredLiterally) {
  CreateTable("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT NOT NULL)",
              "CREATE TABLE t (id BIGINT PRIMARY KEY, s TEXT NOT NULL)");
  const std::vector<std::string> texts = {"it's",
                                          "semi;colon",
                                          "'; DROP TABLE t; --",
                                          "\"quoted\"",
                                          "what?",
                                          "$1 $$ $tag$",
                                          "back\\slash",
                                          "/* not a comment */",
                                          "ünïcødé ✓",
                                          ""};
  for (size_t i = 0; i < texts.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(Result r,
                         db_->Execute("INSERT INTO t (id, s) VALUES (?, ?)",
                                      {static_cast<int64_t>(i), texts[i]}));
    EXPECT_EQ(r.affected_rows, 1);
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(
        Result r, db_->Execute("SELECT id, s FROM t WHERE s = ?", {texts[i]}));
    ASSERT_EQ(r.rows.size(), 1u) << texts[i];
    EXPECT_EQ(r.rows[0].Int(0), static_cast<int64_t>(i));
    EXPECT_EQ(r.rows[0].Text(1), texts[i]);
  }
  // A `?` inside a literal or comment is not a placeholder. (PostgreSQL
  // cannot infer the type of a bare `?` in a select list: cast it.)
  ASSERT_OK_AND_ASSIGN(
      Result r,
      db_->Execute("SELECT '?' AS q, CAST(? AS TEXT) AS p -- trailing ?",
                   {std::string("x")}));
  EXPECT_THAT(r.columns, ElementsAre("q", "p"));
  EXPECT_EQ(r.rows[0].Text(0), "?");
  EXPECT_EQ(r.rows[0].Text(1), "x");
  EXPECT_EQ(Count("t"), static_cast<int64_t>(texts.size()));
}

TEST_P(SqlTest, NullsAndTypesRoundTrip) {
  CreateTable(
      "CREATE TABLE v (id INTEGER PRIMARY KEY, i INTEGER, d REAL, s TEXT)",
      "CREATE TABLE v (id BIGINT PRIMARY KEY, i BIGINT, d DOUBLE PRECISION, "
      "s TEXT)");
  const int64_t big = std::numeric_limits<int64_t>::max();
  const int64_t small = std::numeric_limits<int64_t>::min();
  ASSERT_OK(db_->Execute("INSERT INTO v VALUES (?, ?, ?, ?)",
                         {int64_t{1}, big, 0.1, std::string("one")})
                .status());
  ASSERT_OK(db_->Execute("INSERT INTO v VALUES (?, ?, ?, ?)",
                         {int64_t{2}, small, -1.5e300, std::string()})
                .status());
  ASSERT_OK(db_->Execute("INSERT INTO v VALUES (?, ?, ?, ?)",
                         {int64_t{3}, std::monostate(), std::monostate(),
                          std::monostate()})
                .status());
  ASSERT_OK_AND_ASSIGN(Result r,
                       db_->Execute("SELECT i, d, s FROM v ORDER BY id"));
  ASSERT_EQ(r.rows.size(), 3u);
  EXPECT_EQ(r.rows[0].Int(0), big);
  EXPECT_EQ(r.rows[0].Double(1), 0.1);
  EXPECT_EQ(r.rows[0].Text(2), "one");
  EXPECT_EQ(r.rows[1].Int(0), small);
  EXPECT_EQ(r.rows[1].Double(1), -1.5e300);
  EXPECT_FALSE(r.rows[1].IsNull(2));
  EXPECT_EQ(r.rows[1].OptionalText(2), "");
  for (int col = 0; col < 3; ++col) EXPECT_TRUE(r.rows[2].IsNull(col)) << col;
  EXPECT_EQ(r.rows[2].OptionalText(2), std::nullopt);
  EXPECT_TRUE(std::holds_alternative<int64_t>(r.rows[0].value(0)));
  EXPECT_TRUE(std::holds_alternative<double>(r.rows[0].value(1)));
  EXPECT_TRUE(r.rows[0].IsNull(7));  // out of range reads as NULL
}

TEST_P(SqlTest, AffectedRowsCountsChanges) {
  CreateTable("CREATE TABLE c (k INTEGER, n INTEGER)",
              "CREATE TABLE c (k BIGINT, n BIGINT)");
  for (int64_t k : {1, 1, 2}) {
    ASSERT_OK(db_->Execute("INSERT INTO c VALUES (?, 0)", {k}).status());
  }
  ASSERT_OK_AND_ASSIGN(
      Result update,
      db_->Execute("UPDATE c SET n = n + 1 WHERE k = ?", {int64_t{1}}));
  EXPECT_EQ(update.affected_rows, 2);
  ASSERT_OK_AND_ASSIGN(Result select, db_->Execute("SELECT * FROM c"));
  EXPECT_EQ(select.affected_rows, 0);
  ASSERT_OK_AND_ASSIGN(
      Result returning,
      db_->Execute("DELETE FROM c WHERE k = ? RETURNING n", {int64_t{2}}));
  ASSERT_EQ(returning.rows.size(), 1u);
  EXPECT_EQ(returning.rows[0].Int(0), 0);
}

TEST_P(SqlTest, TransactionCommitsAndRollsBack) {
  CreateTable("CREATE TABLE t (s TEXT)", "CREATE TABLE t (s TEXT)");
  EXPECT_OK(db_->Transaction([&](Session& session) -> absl::Status {
    EXPECT_EQ(session.dialect(), GetParam());
    for (const char* s : {"a", "b"}) {
      absl::Status status =
          session.Execute("INSERT INTO t VALUES (?)", {std::string(s)})
              .status();
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }));
  EXPECT_EQ(Count("t"), 2);

  // The body's own error rolls back and is returned unchanged.
  EXPECT_THAT(db_->Transaction([](Session& session) {
    EXPECT_OK(session.Execute("INSERT INTO t VALUES ('c')").status());
    return absl::FailedPreconditionError("changed my mind");
  }),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("changed my mind")));
  EXPECT_EQ(Count("t"), 2);

  // A failed statement rolls back even when the body swallows it.
  EXPECT_THAT(db_->Transaction([](Session& session) {
    EXPECT_OK(session.Execute("INSERT INTO t VALUES ('d')").status());
    EXPECT_FALSE(session.Execute("INSERT INTO missing VALUES (1)").ok());
    return absl::OkStatus();
  }),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("missing")));
  EXPECT_EQ(Count("t"), 2);

  // And the pool still works afterwards.
  EXPECT_OK(db_->Ping());
}

TEST_P(SqlTest, UniqueViolationIsAlreadyExists) {
  CreateTable("CREATE TABLE models (key TEXT PRIMARY KEY, path TEXT UNIQUE)",
              "CREATE TABLE models (key TEXT PRIMARY KEY, path TEXT UNIQUE)");
  ASSERT_OK(db_->Execute("INSERT INTO models VALUES (?, ?)",
                         {std::string("k1"), std::string("/m/a.safetensors")})
                .status());
  EXPECT_THAT(
      db_->Execute("INSERT INTO models VALUES (?, ?)",
                   {std::string("k2"), std::string("/m/a.safetensors")}),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("path")));
  EXPECT_THAT(
      db_->Execute("INSERT INTO models VALUES (?, ?)",
                   {std::string("k1"), std::string("/m/b.safetensors")}),
      StatusIs(absl::StatusCode::kAlreadyExists));
  // ON CONFLICT is the way to tolerate duplicates inside a transaction.
  ASSERT_OK_AND_ASSIGN(
      Result r,
      db_->Execute("INSERT INTO models VALUES (?, ?) ON CONFLICT DO NOTHING",
                   {std::string("k1"), std::string("/m/c")}));
  EXPECT_EQ(r.affected_rows, 0);
}

TEST_P(SqlTest, OtherConstraintViolationsAreNotInternal) {
  CreateTable("CREATE TABLE m (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
              "CREATE TABLE m (id BIGINT PRIMARY KEY, name TEXT NOT NULL)");
  CreateTable("CREATE TABLE tag (m INTEGER NOT NULL REFERENCES m(id), t TEXT)",
              "CREATE TABLE tag (m BIGINT NOT NULL REFERENCES m(id), t TEXT)");
  EXPECT_THAT(db_->Execute("INSERT INTO m VALUES (?, ?)",
                           {int64_t{1}, std::monostate()}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  EXPECT_THAT(db_->Execute("INSERT INTO tag VALUES (?, ?)",
                           {int64_t{42}, std::string("x")}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_P(SqlTest, PlaceholderCountMustMatch) {
  EXPECT_THAT(db_->Execute("SELECT ?, ?", {int64_t{1}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("2 placeholders but 1 parameters")));
}

TEST_P(SqlTest, MigrationsApplyOnceAndAreRecorded) {
  const std::vector<Migration> migrations = {
      {2, "add tags", "CREATE TABLE tags (m TEXT, t TEXT)",
       "CREATE TABLE tags (m TEXT, t TEXT)"},
      {1, "models",
       "CREATE TABLE models (k TEXT PRIMARY KEY); "
       "CREATE INDEX models_k ON models (k);",
       "CREATE TABLE models (k TEXT PRIMARY KEY); "
       "CREATE INDEX models_k ON models (k);"},
  };
  ASSERT_OK(db_->Migrate("records", migrations));
  // Without IF NOT EXISTS these would fail if run twice.
  ASSERT_OK(db_->Migrate("records", migrations));
  ASSERT_OK(db_->Migrate("records", migrations));
  // Another component keeps its own versions.
  ASSERT_OK(
      db_->Migrate("downloader", {{1, "jobs", "CREATE TABLE jobs (id TEXT)",
                                   "CREATE TABLE jobs (id TEXT)"}}));
  ASSERT_OK_AND_ASSIGN(Result r,
                       db_->Execute("SELECT component, version, description, "
                                    "applied_at FROM schema_migrations "
                                    "ORDER BY component, version"));
  ASSERT_EQ(r.rows.size(), 3u);
  EXPECT_EQ(r.rows[0].Text(0), "downloader");
  EXPECT_EQ(r.rows[1].Text(0), "records");
  EXPECT_EQ(r.rows[1].Int(1), 1);
  EXPECT_EQ(r.rows[1].Text(2), "models");
  EXPECT_EQ(r.rows[2].Int(1), 2);
  EXPECT_FALSE(r.rows[2].Text(3).empty());
  EXPECT_OK(db_->Execute("INSERT INTO tags VALUES ('a', 'b')").status());
}

TEST_P(SqlTest, FailingMigrationLeavesNothingApplied) {
  std::vector<Migration> migrations = {
      {1, "ok", "CREATE TABLE a (x INTEGER)", "CREATE TABLE a (x INTEGER)"},
      {2, "broken",
       "CREATE TABLE b (x INTEGER); INSERT INTO no_such_table VALUES (1);",
       "CREATE TABLE b (x INTEGER); INSERT INTO no_such_table VALUES (1);"},
  };
  EXPECT_THAT(db_->Migrate("records", migrations),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("migration records v2 (broken)")));
  ASSERT_OK_AND_ASSIGN(Result r,
                       db_->Execute("SELECT version FROM schema_migrations "
                                    "WHERE component = ?",
                                    {std::string("records")}));
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.rows[0].Int(0), 1);
  // Table b was rolled back with its migration.
  EXPECT_THAT(db_->Execute("SELECT * FROM b"),
              StatusIs(absl::StatusCode::kInternal));
  // Fixing the migration lets it apply.
  migrations[1].sqlite_sql = migrations[1].postgres_sql =
      "CREATE TABLE b (x INTEGER)";
  EXPECT_OK(db_->Migrate("records", migrations));
  EXPECT_EQ(Count("b"), 0);
}

TEST_P(SqlTest, MigrateRejectsBadInputAndNewerSchema) {
  EXPECT_THAT(db_->Migrate("records", {{1, "a", "SELECT 1", "SELECT 1"},
                                       {1, "b", "SELECT 1", "SELECT 1"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("version 1 twice")));
  EXPECT_THAT(
      db_->Migrate("records", {{0, "zero", "SELECT 1", "SELECT 1"}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version 0")));
  EXPECT_THAT(db_->Migrate("records", {{1, "one", "", ""}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("_sql")));
  ASSERT_OK(db_->Migrate("records", {{1, "one", "SELECT 1", "SELECT 1"},
                                     {2, "two", "SELECT 1", "SELECT 1"}}));
  EXPECT_THAT(db_->Migrate("records", {{1, "one", "SELECT 1", "SELECT 1"}}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("at version 2")));
}

TEST_P(SqlTest, ConcurrentIncrementsLoseNoUpdate) {
  CreateTable("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)",
              "CREATE TABLE counter (id BIGINT PRIMARY KEY, n BIGINT)");
  CreateTable("CREATE TABLE seen (n INTEGER PRIMARY KEY)",
              "CREATE TABLE seen (n BIGINT PRIMARY KEY)");
  ASSERT_OK(db_->Execute("INSERT INTO counter VALUES (1, 0)").status());
  constexpr int kThreads = 32;
  constexpr int kIncrements = 20;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        absl::Status status = db_->Transaction([](Session& session) {
          absl::StatusOr<Result> r = session.Execute(
              "UPDATE counter SET n = n + 1 WHERE id = ? RETURNING n",
              {int64_t{1}});
          if (!r.ok()) return r.status();
          // Every increment must see a distinct value: seen.n is unique.
          return session
              .Execute("INSERT INTO seen VALUES (?)", {r->rows.at(0).Int(0)})
              .status();
        });
        if (!status.ok()) {
          ADD_FAILURE() << status;
          ++failures;
        }
        // Readers run alongside the writers.
        if (!db_->Execute("SELECT n FROM counter").ok()) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_OK_AND_ASSIGN(Result r, db_->Execute("SELECT n FROM counter"));
  EXPECT_EQ(r.rows.at(0).Int(0), kThreads * kIncrements);
  EXPECT_EQ(Count("seen"), kThreads * kIncrements);
}

TEST_P(SqlTest, ListenNeedsPostgres) {
  Inbox inbox;
  absl::StatusOr<std::unique_ptr<Subscription>> sub =
      db_->Listen("jobs", inbox.Callback());
  if (GetParam() == Dialect::kSqlite) {
    EXPECT_THAT(sub, StatusIs(absl::StatusCode::kUnimplemented,
                              HasSubstr("PostgreSQL")));
    return;
  }
  ASSERT_OK(sub);
  ASSERT_OK(db_->Execute("SELECT pg_notify(?, ?)",
                         {std::string("jobs"), std::string("job 7 done")})
                .status());
  EXPECT_TRUE(inbox.WaitFor("job 7 done", absl::Seconds(30)));
  // Notifications inside a transaction are delivered at commit.
  ASSERT_OK(db_->Transaction([](Session& session) {
    return session
        .Execute("SELECT pg_notify(?, ?)",
                 {std::string("jobs"), std::string("in transaction")})
        .status();
  }));
  EXPECT_TRUE(inbox.WaitFor("in transaction", absl::Seconds(30)));
}

INSTANTIATE_TEST_SUITE_P(
    Backends, SqlTest, ::testing::Values(Dialect::kSqlite, Dialect::kPostgres),
    [](const auto& info) { return std::string(DialectName(info.param)); });

TEST(OpenTest, RejectsUnknownUrlsAndBadOptions) {
  EXPECT_THAT(Database::Open("mysql://localhost/x"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("mysql://localhost/x")));
  EXPECT_THAT(
      Database::Open("sqlite:"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("names no file")));
  Options options;
  options.pool_size = 0;
  EXPECT_THAT(
      Database::Open("sqlite::memory:", options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pool_size")));
  // Checked before any connection is tried: no server is needed.
  EXPECT_THAT(
      Database::Open("postgresql://127.0.0.1:1/db", options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pool_size")));
  EXPECT_THAT(Database::Open("postgresql://h/db?nonsense_option=1"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("nonsense_option")));
}

TEST(OpenTest, SqliteFileProblemsAreReported) {
  TempDir dir;
  EXPECT_THAT(
      Database::Open((dir.path() / "missing-dir" / "x.db").string()),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("x.db")));
  const auto not_a_db = dir.path() / "junk.db";
  ::mm::testing::WriteFile(not_a_db, std::string(4096, 'j'));
  EXPECT_THAT(Database::Open(not_a_db.string()),
              StatusIs(absl::StatusCode::kDataLoss));
}

TEST(OpenTest, MemoryAndBarePathsWork) {
  ASSERT_OK_AND_ASSIGN(auto memory, Database::Open("sqlite::memory:"));
  ASSERT_OK(memory->Execute("CREATE TABLE t (x INTEGER)").status());
  ASSERT_OK(memory->Execute("INSERT INTO t VALUES (1)").status());
  ASSERT_OK_AND_ASSIGN(Result r, memory->Execute("SELECT x FROM t"));
  EXPECT_EQ(r.rows.at(0).Int(0), 1);

  TempDir dir;
  const std::string path = (dir.path() / "bare.db").string();
  ASSERT_OK_AND_ASSIGN(auto bare, Database::Open(path));
  ASSERT_OK(bare->Execute("CREATE TABLE t (x INTEGER)").status());
  ASSERT_OK_AND_ASSIGN(Result mode, bare->Execute("PRAGMA journal_mode"));
  EXPECT_EQ(mode.rows.at(0).Text(0), "wal");
  ASSERT_OK_AND_ASSIGN(Result fk, bare->Execute("PRAGMA foreign_keys"));
  EXPECT_EQ(fk.rows.at(0).Int(0), 1);
  // The same file through the sqlite: URL form sees the table.
  ASSERT_OK_AND_ASSIGN(auto again, Database::Open("sqlite://" + path));
  EXPECT_OK(again->Execute("SELECT x FROM t").status());
}

TEST(OpenTest, SqliteExecuteRunsOneStatement) {
  ASSERT_OK_AND_ASSIGN(auto db, Database::Open("sqlite::memory:"));
  EXPECT_THAT(db->Execute("CREATE TABLE a (x); CREATE TABLE b (x)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("more than one statement")));
  EXPECT_OK(db->Execute("CREATE TABLE a (x); -- only a comment").status());
}

// The value of the series `series` ("name" or "name{labels}") in a
// registry's text, or -1 when absent.
double SeriesValue(const metrics::Registry& registry,
                   const std::string& series) {
  std::string text = "\n" + registry.Render();
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

TEST(OpenTest, FailedCallsAreCountedByCode) {
  metrics::Registry registry;
  Options options;
  options.metrics = &registry;
  ASSERT_OK_AND_ASSIGN(auto db, Database::Open("sqlite::memory:", options));
  ASSERT_OK(db->Execute("CREATE TABLE t (x INTEGER PRIMARY KEY)").status());
  EXPECT_OK(db->Execute("INSERT INTO t VALUES (1)").status());
  EXPECT_THAT(db->Execute("INSERT INTO t VALUES (1)"),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(db->Execute("CREATE TABLE a (x); CREATE TABLE b (x)"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(db->Transaction([](Session&) {
    return absl::AbortedError("the body gave up");
  }),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_OK(db->Ping());
  EXPECT_EQ(
      SeriesValue(registry, "mm_db_errors_total{code=\"ALREADY_EXISTS\"}"), 1);
  EXPECT_EQ(
      SeriesValue(registry, "mm_db_errors_total{code=\"INVALID_ARGUMENT\"}"),
      1);
  EXPECT_EQ(SeriesValue(registry, "mm_db_errors_total{code=\"ABORTED\"}"), 1);
  // Without Options.metrics nothing is counted anywhere.
  ASSERT_OK_AND_ASSIGN(auto quiet, Database::Open("sqlite::memory:"));
  EXPECT_FALSE(quiet->Execute("SELECT * FROM nowhere").ok());
  EXPECT_EQ(
      SeriesValue(registry, "mm_db_errors_total{code=\"ALREADY_EXISTS\"}"), 1);
}

TEST(OpenTest, SqliteLockHeldPastBusyTimeoutIsUnavailable) {
  TempDir dir;
  const std::string url = "sqlite:" + (dir.path() / "shared.db").string();
  ASSERT_OK_AND_ASSIGN(auto holder, Database::Open(url));
  ASSERT_OK(holder->Execute("CREATE TABLE t (x INTEGER)").status());
  Options impatient;
  impatient.busy_timeout = absl::Milliseconds(50);
  // A second Database stands in for another process on the same file.
  ASSERT_OK_AND_ASSIGN(auto other, Database::Open(url, impatient));
  EXPECT_OK(holder->Transaction([&](Session& session) {
    EXPECT_OK(session.Execute("INSERT INTO t VALUES (1)").status());
    EXPECT_THAT(
        other->Execute("INSERT INTO t VALUES (2)"),
        StatusIs(absl::StatusCode::kUnavailable, HasSubstr("busy_timeout")));
    // WAL: the other side still reads the last committed state.
    absl::StatusOr<Result> read = other->Execute("SELECT COUNT(*) FROM t");
    EXPECT_OK(read);
    if (read.ok()) {
      EXPECT_EQ(read->rows.at(0).Int(0), 0);
    }
    return absl::OkStatus();
  }));
  ASSERT_OK_AND_ASSIGN(Result r, other->Execute("SELECT COUNT(*) FROM t"));
  EXPECT_EQ(r.rows.at(0).Int(0), 1);
}

TEST(RedactUrlTest, HidesPasswords) {
  EXPECT_EQ(RedactUrl("postgresql://mm:s3cret@db:5432/mm"),
            "postgresql://mm:***@db:5432/mm");
  EXPECT_EQ(RedactUrl("postgresql:///mm?host=/run&password=s3cret&x=1"),
            "postgresql:///mm?host=/run&password=***&x=1");
  EXPECT_EQ(RedactUrl("sqlite:/var/mm/records.db"),
            "sqlite:/var/mm/records.db");
}

TEST(RewritePlaceholdersTest, SkipsLiteralsIdentifiersAndComments) {
  using internal::RewritePlaceholders;
  EXPECT_EQ(RewritePlaceholders("SELECT ?, ?").sql, "SELECT $1, $2");
  EXPECT_EQ(RewritePlaceholders("SELECT ?, ?").placeholder_count, 2);
  const std::string untouched =
      "SELECT 'a?''?', \"c?\"\"?\", E'\\'?', $$?$$, $t$ ? $t$ -- ?\n"
      "/* ? /* ? */ ? */";
  EXPECT_EQ(RewritePlaceholders(untouched).sql, untouched);
  EXPECT_EQ(RewritePlaceholders(untouched).placeholder_count, 0);
  EXPECT_EQ(RewritePlaceholders("SELECT ? -- ?\n, ?").sql,
            "SELECT $1 -- ?\n, $2");
  EXPECT_EQ(RewritePlaceholders("WHERE a$b = ? AND c = 'it''s' AND d = ?").sql,
            "WHERE a$b = $1 AND c = 'it''s' AND d = $2");
  // Unterminated text is left for the server to reject.
  EXPECT_EQ(RewritePlaceholders("SELECT 'oops ?").sql, "SELECT 'oops ?");
}

// The statements prepared on the session that runs the query, as
// "statement [executions]" (PostgreSQL 14+ counts the plans each one ran
// with), leaving out this query itself.
absl::StatusOr<std::vector<std::string>> PreparedStatements(Database& db) {
  ASSIGN_OR_RETURN(Result r,
                   db.Execute("SELECT statement, generic_plans + custom_plans "
                              "FROM pg_prepared_statements "
                              "WHERE statement NOT LIKE '%pg_prepared%' "
                              "ORDER BY name"));
  std::vector<std::string> out;
  for (const Row& row : r.rows) {
    out.push_back(absl::StrCat(row.Text(0), " [", row.Int(1), "]"));
  }
  return out;
}

// PostgreSQL keeps queries prepared per connection. One connection, so
// every call runs on the session the test inspects.
class PostgresPreparedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<PostgresCluster*> cluster = SharedCluster::Get();
    if (!cluster.ok()) MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(cluster.status());
    static int next_database = 0;
    ASSERT_OK_AND_ASSIGN(
        std::string url,
        (*cluster)->CreateDatabase(absl::StrCat("prepared", next_database++)));
    Options options;
    options.pool_size = 1;
    ASSERT_OK_AND_ASSIGN(db_, Database::Open(url, options));
  }

  absl::StatusOr<int64_t> Twice(int64_t n) {
    ASSIGN_OR_RETURN(Result r,
                     db_->Execute("SELECT CAST(? AS bigint) * 2", {n}));
    return r.rows.at(0).Int(0);
  }

  std::unique_ptr<Database> db_;
};

TEST_F(PostgresPreparedTest, EachQueryIsPreparedOncePerConnection) {
  ASSERT_OK(
      db_->Execute("CREATE TABLE p (id BIGINT PRIMARY KEY, s TEXT)").status());
  const std::vector<std::string> names = {"zero", "one", "two"};
  for (size_t i = 0; i < names.size(); ++i) {
    ASSERT_OK(db_->Execute("INSERT INTO p VALUES (?, ?)",
                           {static_cast<int64_t>(i), names[i]})
                  .status());
  }
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < names.size(); ++i) {
      ASSERT_OK_AND_ASSIGN(Result r,
                           db_->Execute("SELECT s FROM p WHERE id = ?",
                                        {static_cast<int64_t>(i)}));
      ASSERT_EQ(r.rows.size(), 1u);
      EXPECT_EQ(r.rows[0].Text(0), names[i]);
    }
  }
  // The DDL ran as a one-off and was not kept.
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> prepared,
                       PreparedStatements(*db_));
  EXPECT_THAT(prepared, ElementsAre("INSERT INTO p VALUES ($1, $2) [3]",
                                    "SELECT s FROM p WHERE id = $1 [6]"));
}

TEST_F(PostgresPreparedTest, ParameterTypesGetTheirOwnStatement) {
  // Prepared for a bigint parameter, the statement would reject text; the
  // server infers each signature's types as it does for a one-off.
  ASSERT_OK_AND_ASSIGN(Result number,
                       db_->Execute("SELECT CAST(? AS TEXT)", {int64_t{5}}));
  EXPECT_EQ(number.rows.at(0).Text(0), "5");
  ASSERT_OK_AND_ASSIGN(Result text, db_->Execute("SELECT CAST(? AS TEXT)",
                                                 {std::string("five")}));
  EXPECT_EQ(text.rows.at(0).Text(0), "five");
  ASSERT_OK_AND_ASSIGN(
      Result null, db_->Execute("SELECT CAST(? AS TEXT)", {std::monostate()}));
  EXPECT_TRUE(null.rows.at(0).IsNull(0));
  // A cached statement does not hide a wrong parameter count.
  EXPECT_THAT(db_->Execute("SELECT CAST(? AS TEXT)", {int64_t{1}, int64_t{2}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("has 1 placeholders but 2 parameters")));
}

TEST_F(PostgresPreparedTest, CacheIsBoundedAndNamesNeverRepeat) {
  // More distinct queries than the cache holds (256): it is flushed and
  // refilled, and new names never clash with old ones on the server.
  constexpr int kQueries = 300;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < kQueries; ++i) {
      ASSERT_OK_AND_ASSIGN(
          Result r, db_->Execute(absl::StrCat("SELECT CAST(? AS bigint) + ", i),
                                 {int64_t{1000}}));
      ASSERT_EQ(r.rows.at(0).Int(0), 1000 + i) << "round " << round;
    }
  }
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> prepared,
                       PreparedStatements(*db_));
  EXPECT_GT(prepared.size(), 0u);
  EXPECT_LE(prepared.size(), 256u);
}

TEST_F(PostgresPreparedTest, SchemaChangeUnderAStatementIsRetried) {
  ASSERT_OK(db_->Execute("CREATE TABLE s (a BIGINT)").status());
  ASSERT_OK(db_->Execute("INSERT INTO s VALUES (1)").status());
  const std::string query = "SELECT * FROM s WHERE a = ?";
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(Result r, db_->Execute(query, {int64_t{1}}));
    EXPECT_THAT(r.columns, ElementsAre("a"));
  }
  // PostgreSQL refuses to change the columns of a prepared statement;
  // outside a transaction nothing ran, so the call prepares it again.
  ASSERT_OK(
      db_->Execute("ALTER TABLE s ADD COLUMN b TEXT DEFAULT 'x'").status());
  ASSERT_OK_AND_ASSIGN(Result widened, db_->Execute(query, {int64_t{1}}));
  EXPECT_THAT(widened.columns, ElementsAre("a", "b"));
  EXPECT_EQ(widened.rows.at(0).Text(1), "x");

  // Inside a transaction the error has already aborted it: it is returned,
  // and the next attempt works.
  ASSERT_OK(
      db_->Execute("ALTER TABLE s ADD COLUMN c TEXT DEFAULT 'y'").status());
  auto select = [&](Session& session) {
    return session.Execute(query, {int64_t{1}}).status();
  };
  EXPECT_THAT(db_->Transaction(select),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("cached plan must not change result type")));
  EXPECT_OK(db_->Transaction(select));
  ASSERT_OK_AND_ASSIGN(Result widest, db_->Execute(query, {int64_t{1}}));
  EXPECT_THAT(widest.columns, ElementsAre("a", "b", "c"));
}

TEST_F(PostgresPreparedTest, StatementsDroppedOnTheServerArePreparedAgain) {
  ASSERT_OK_AND_ASSIGN(int64_t first, Twice(21));
  EXPECT_EQ(first, 42);
  for (const char* drop : {"DEALLOCATE ALL", "DISCARD ALL"}) {
    ASSERT_OK(db_->Execute(drop).status()) << drop;
    ASSERT_OK_AND_ASSIGN(int64_t again, Twice(21));
    EXPECT_EQ(again, 42) << drop;
  }
}

TEST_F(PostgresPreparedTest, RollbackKeepsPreparedStatementsUsable) {
  // Prepared statements are not transactional: one prepared inside a
  // transaction that rolls back is still there, and still works.
  EXPECT_THAT(db_->Transaction([](Session& session) -> absl::Status {
    absl::StatusOr<Result> r =
        session.Execute("SELECT CAST(? AS bigint) * 2", {int64_t{4}});
    if (!r.ok()) return r.status();
    return absl::FailedPreconditionError("changed my mind");
  }),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("changed my mind")));
  ASSERT_OK_AND_ASSIGN(int64_t ten, Twice(5));
  EXPECT_EQ(ten, 10);
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> prepared,
                       PreparedStatements(*db_));
  EXPECT_THAT(prepared, ElementsAre("SELECT CAST($1 AS bigint) * 2 [2]"));
}

TEST(PostgresOutageTest, FailsFastWhileDownAndRecovers) {
  absl::StatusOr<std::unique_ptr<PostgresCluster>> cluster =
      PostgresCluster::Start();
  if (!cluster.ok()) MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(cluster.status());
  metrics::Registry registry;
  Options options;
  options.reconnect_backoff_max = absl::Seconds(1);
  options.metrics = &registry;
  ASSERT_OK_AND_ASSIGN(auto db, Database::Open((*cluster)->url(), options));
  ASSERT_OK(db->Execute("CREATE TABLE t (x BIGINT)").status());
  Inbox inbox;
  ASSERT_OK_AND_ASSIGN(auto subscription,
                       db->Listen("changes", inbox.Callback()));

  ASSERT_OK((*cluster)->Stop());
  for (int attempt = 0; attempt < 3; ++attempt) {
    const absl::Time start = absl::Now();
    EXPECT_THAT(db->Execute("INSERT INTO t VALUES (?)", {int64_t{1}}),
                StatusIs(absl::StatusCode::kUnavailable));
    EXPECT_THAT(db->Transaction([](Session&) { return absl::OkStatus(); }),
                StatusIs(absl::StatusCode::kUnavailable));
    // Fails fast: well inside connect_timeout, never minutes.
    EXPECT_LT(absl::Now() - start, options.connect_timeout);
  }

  ASSERT_OK((*cluster)->Restart());
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  absl::Status status;
  do {
    status = db->Execute("INSERT INTO t VALUES (?)", {int64_t{2}}).status();
    if (status.ok()) break;
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable));
    absl::SleepFor(absl::Milliseconds(50));  // polling interval, not a sync
  } while (absl::Now() < deadline);
  ASSERT_OK(status);
  EXPECT_OK(db->Ping());

  // The listener reconnected, said so, and receives new payloads.
  EXPECT_TRUE(inbox.WaitFor(std::nullopt, absl::Seconds(30)));
  ASSERT_OK(db->Execute("SELECT pg_notify(?, ?)",
                        {std::string("changes"), std::string("after")})
                .status());
  EXPECT_TRUE(inbox.WaitFor("after", absl::Seconds(30)));

  // Counted: the failed calls while down (3 x 2 at least), the failed
  // connection attempts, and the pool's and the listener's reconnection.
  EXPECT_GE(SeriesValue(registry, "mm_db_errors_total{code=\"UNAVAILABLE\"}"),
            6);
  EXPECT_GE(SeriesValue(registry, "mm_db_connect_failures_total"), 1);
  EXPECT_GE(SeriesValue(registry, "mm_db_reconnects_total"), 2);
}

TEST(PostgresOutageTest, PreparedStatementsAreRebuiltAfterARestart) {
  absl::StatusOr<std::unique_ptr<PostgresCluster>> cluster =
      PostgresCluster::Start();
  if (!cluster.ok()) MM_SKIP_OR_FAIL_WITHOUT_POSTGRES(cluster.status());
  Options options;
  options.pool_size = 1;
  options.reconnect_backoff_max = absl::Seconds(1);
  ASSERT_OK_AND_ASSIGN(auto db, Database::Open((*cluster)->url(), options));
  ASSERT_OK(db->Execute("CREATE TABLE r (x BIGINT)").status());
  ASSERT_OK(db->Execute("INSERT INTO r VALUES (7)").status());
  const std::string query = "SELECT x FROM r WHERE x = ?";
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(Result r, db->Execute(query, {int64_t{7}}));
    ASSERT_EQ(r.rows.size(), 1u);
  }

  // The new server session has none of the old statements; the
  // connection that replaces the lost one starts with an empty cache.
  ASSERT_OK((*cluster)->Stop());
  EXPECT_THAT(db->Execute(query, {int64_t{7}}),
              StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK((*cluster)->Restart());
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  absl::StatusOr<Result> r;
  do {
    r = db->Execute(query, {int64_t{7}});
    if (r.ok()) break;
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable));
    absl::SleepFor(absl::Milliseconds(50));  // polling interval, not a sync
  } while (absl::Now() < deadline);
  ASSERT_OK(r);
  ASSERT_EQ(r->rows.size(), 1u);
  EXPECT_EQ(r->rows[0].Int(0), 7);
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> prepared,
                       PreparedStatements(*db));
  EXPECT_THAT(prepared, ElementsAre("SELECT x FROM r WHERE x = $1 [1]"));
}

TEST(PostgresOutageTest, OpenFailsWhenServerIsDown) {
  TempDir dir;
  absl::Time start = absl::Now();
  EXPECT_THAT(
      Database::Open("postgresql:///x?host=" + dir.path().string() +
                     "&port=5432"),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot connect")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

}  // namespace
}  // namespace mm::sql
