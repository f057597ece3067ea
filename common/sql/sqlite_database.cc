// SQLite backend: one writer connection guarded as a single-slot pool (so
// writers in this process queue fairly instead of spinning in SQLite's busy
// handler) plus reader connections that run read-only statements
// concurrently, which WAL allows. Other processes are handled by SQLite's
// file locks and busy_timeout.
#include "common/sql/sqlite_database.h"

#include <sqlite3.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "common/status.h"
#include "common/strings.h"

namespace mm::sql::internal {
namespace {

// Prepared statements kept per connection before the cache is flushed.
constexpr size_t kMaxCachedStatements = 256;

std::string Shorten(std::string_view sql) {
  constexpr size_t kMax = 160;
  std::string text(absl::StripAsciiWhitespace(AsAbsl(sql)));
  if (text.size() > kMax) text = absl::StrCat(text.substr(0, kMax), "...");
  return text;
}

// Maps an SQLite (extended) result code to a status, per database.h.
absl::Status SqliteError(int rc, absl::string_view message,
                         std::string_view sql) {
  const std::string where =
      sql.empty() ? std::string() : absl::StrCat(" (in `", Shorten(sql), "`)");
  switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
      return absl::AlreadyExistsError(absl::StrCat(
          message, ": a row with that value already exists", where));
    case SQLITE_CONSTRAINT_NOTNULL:
    case SQLITE_CONSTRAINT_CHECK:
    case SQLITE_CONSTRAINT_DATATYPE:
      return absl::InvalidArgumentError(absl::StrCat(message, where));
    case SQLITE_BUSY_SNAPSHOT:
      return absl::AbortedError(absl::StrCat(
          message, ": another connection wrote first; retry the transaction",
          where));
    default:
      break;
  }
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      return absl::FailedPreconditionError(absl::StrCat(message, where));
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(absl::StrCat(
          message,
          ": another connection or process held the lock longer than "
          "busy_timeout; retry later or raise busy_timeout",
          where));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(absl::StrCat(
          message, ": the SQLite file is damaged or not a database", where));
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(
          absl::StrCat(message, ": the disk is full", where));
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
      return absl::FailedPreconditionError(
          absl::StrCat(message,
                       ": check that the file and its directory exist and are "
                       "writable",
                       where));
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
      return absl::InvalidArgumentError(absl::StrCat(message, where));
    default:
      return absl::InternalError(
          absl::StrCat("sqlite error ", rc, ": ", message, where));
  }
}

// One sqlite3 handle with its statement cache. Used by one thread at a time
// (the pool hands it out exclusively).
class SqliteConnection {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteConnection>> Open(
      const std::string& path, bool create, const Options& options) {
    sqlite3* db = nullptr;
    const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                      (create ? SQLITE_OPEN_CREATE : 0);
    const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    if (rc != SQLITE_OK) {
      std::string message =
          db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
      const int code = db != nullptr ? sqlite3_extended_errcode(db) : rc;
      sqlite3_close_v2(db);
      return Annotate(SqliteError(code, message, ""),
                      absl::StrCat("opening SQLite database ", path));
    }
    auto connection =
        std::unique_ptr<SqliteConnection>(new SqliteConnection(db));
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(
        db, static_cast<int>(absl::ToInt64Milliseconds(options.busy_timeout)));
    RETURN_IF_ERROR(
        Annotate(connection->ExecScript("PRAGMA foreign_keys = ON; "
                                        "PRAGMA synchronous = NORMAL"),
                 absl::StrCat("configuring SQLite database ", path)));
    return connection;
  }

  SqliteConnection(const SqliteConnection&) = delete;
  SqliteConnection& operator=(const SqliteConnection&) = delete;

  ~SqliteConnection() {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  // A cached prepared statement for `sql` (exactly one statement).
  absl::StatusOr<sqlite3_stmt*> Prepare(std::string_view sql) {
    std::string key(sql);
    if (auto it = cache_.find(key); it != cache_.end()) return it->second;
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK) {
      return SqliteError(sqlite3_extended_errcode(db_), sqlite3_errmsg(db_),
                         sql);
    }
    if (stmt == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("SQL `", Shorten(sql), "` holds no statement"));
    }
    // Anything after the first statement other than blanks or comments is a
    // second statement, which Execute does not run.
    std::string_view rest(tail, sql.data() + sql.size() - tail);
    if (!absl::StripAsciiWhitespace(AsAbsl(rest)).empty()) {
      sqlite3_stmt* second = nullptr;
      rc = sqlite3_prepare_v2(db_, rest.data(), static_cast<int>(rest.size()),
                              &second, nullptr);
      sqlite3_finalize(second);
      if (rc != SQLITE_OK || second != nullptr) {
        sqlite3_finalize(stmt);
        return absl::InvalidArgumentError(absl::StrCat(
            "SQL `", Shorten(sql),
            "` holds more than one statement; Execute runs one (use "
            "Session::ExecuteScript for scripts without parameters)"));
      }
    }
    if (cache_.size() >= kMaxCachedStatements) {
      for (auto& [cached_sql, cached] : cache_) sqlite3_finalize(cached);
      cache_.clear();
    }
    cache_.emplace(std::move(key), stmt);
    return stmt;
  }

  absl::StatusOr<Result> Run(sqlite3_stmt* stmt, std::string_view sql,
                             const std::vector<Value>& params) {
    // Leave the statement reusable whatever happens below.
    struct ResetOnExit {
      sqlite3_stmt* stmt;
      ~ResetOnExit() {
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
      }
    } reset{stmt};

    const int expected = sqlite3_bind_parameter_count(stmt);
    if (expected != static_cast<int>(params.size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "SQL `", Shorten(sql), "` has ", expected, " placeholders but ",
          params.size(), " parameters were given"));
    }
    for (int i = 0; i < expected; ++i) {
      const Value& value = params[i];
      int rc = SQLITE_OK;
      if (const auto* n = std::get_if<int64_t>(&value)) {
        rc = sqlite3_bind_int64(stmt, i + 1, *n);
      } else if (const auto* d = std::get_if<double>(&value)) {
        rc = sqlite3_bind_double(stmt, i + 1, *d);
      } else if (const auto* s = std::get_if<std::string>(&value)) {
        // SQLITE_STATIC: `params` outlives the step and bindings are cleared.
        rc = sqlite3_bind_text64(stmt, i + 1, s->data(), s->size(),
                                 SQLITE_STATIC, SQLITE_UTF8);
      } else {
        rc = sqlite3_bind_null(stmt, i + 1);
      }
      if (rc != SQLITE_OK) {
        return Annotate(SqliteError(rc, sqlite3_errmsg(db_), sql),
                        absl::StrCat("binding parameter ", i + 1));
      }
    }

    Result result;
    const int columns = sqlite3_column_count(stmt);
    result.columns.reserve(columns);
    for (int c = 0; c < columns; ++c) {
      const char* name = sqlite3_column_name(stmt, c);
      result.columns.emplace_back(name != nullptr ? name : "");
    }
    const int64_t changes_before = sqlite3_total_changes64(db_);
    while (true) {
      const int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) {
        return SqliteError(rc, sqlite3_errmsg(db_), sql);
      }
      std::vector<Value> values;
      values.reserve(columns);
      for (int c = 0; c < columns; ++c) {
        switch (sqlite3_column_type(stmt, c)) {
          case SQLITE_INTEGER:
            values.emplace_back(
                static_cast<int64_t>(sqlite3_column_int64(stmt, c)));
            break;
          case SQLITE_FLOAT:
            values.emplace_back(sqlite3_column_double(stmt, c));
            break;
          case SQLITE_TEXT: {
            const auto* text =
                reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
            values.emplace_back(
                std::string(text, sqlite3_column_bytes(stmt, c)));
            break;
          }
          case SQLITE_BLOB: {
            const auto* blob =
                static_cast<const char*>(sqlite3_column_blob(stmt, c));
            const int bytes = sqlite3_column_bytes(stmt, c);
            values.emplace_back(blob != nullptr ? std::string(blob, bytes)
                                                : std::string());
            break;
          }
          default:
            values.emplace_back(std::monostate());
        }
      }
      result.rows.emplace_back(std::move(values));
    }
    // sqlite3_changes64 keeps the count of the last writing statement, so
    // only trust it when this statement changed something.
    if (sqlite3_total_changes64(db_) != changes_before) {
      result.affected_rows = sqlite3_changes64(db_);
    }
    return result;
  }

  absl::StatusOr<Result> Execute(std::string_view sql,
                                 const std::vector<Value>& params) {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql));
    return Run(stmt, sql, params);
  }

  absl::Status ExecScript(std::string_view sql) {
    const std::string text(sql);
    char* error = nullptr;
    const int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &error);
    if (rc == SQLITE_OK) return absl::OkStatus();
    std::string message = error != nullptr ? error : sqlite3_errstr(rc);
    sqlite3_free(error);
    return SqliteError(sqlite3_extended_errcode(db_), message, sql);
  }

  bool in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }

 private:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}

  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;
};

class SqliteSession : public Session {
 public:
  explicit SqliteSession(SqliteConnection& connection)
      : connection_(connection) {}

  absl::StatusOr<Result> Execute(std::string_view sql,
                                 const std::vector<Value>& params) override {
    absl::StatusOr<Result> result = connection_.Execute(sql, params);
    if (!result.ok() && first_error_.ok()) first_error_ = result.status();
    return result;
  }

  absl::Status ExecuteScript(std::string_view sql) override {
    absl::Status status = connection_.ExecScript(sql);
    if (!status.ok() && first_error_.ok()) first_error_ = status;
    return status;
  }

  Dialect dialect() const override { return Dialect::kSqlite; }

  const absl::Status& first_error() const { return first_error_; }

 private:
  SqliteConnection& connection_;
  absl::Status first_error_;
};

class SqliteDatabase : public Database {
 public:
  SqliteDatabase(std::string path, const Options& options,
                 std::unique_ptr<SqliteConnection> writer,
                 std::vector<std::unique_ptr<SqliteConnection>> readers)
      : path_(std::move(path)),
        options_(options),
        reader_count_(readers.size()),
        writer_(std::move(writer)),
        readers_(std::move(readers)) {}

  Dialect dialect() const override { return Dialect::kSqlite; }

  absl::StatusOr<Result> Execute(std::string_view sql,
                                 const std::vector<Value>& params) override {
    if (reader_count_ > 0) {
      ASSIGN_OR_RETURN(std::unique_ptr<SqliteConnection> reader,
                       Take(&SqliteDatabase::ReaderFree, "reader"));
      absl::StatusOr<sqlite3_stmt*> stmt = reader->Prepare(sql);
      if (stmt.ok() && sqlite3_stmt_readonly(*stmt)) {
        absl::StatusOr<Result> result = reader->Run(*stmt, sql, params);
        GiveBackReader(std::move(reader));
        return result;
      }
      GiveBackReader(std::move(reader));
      if (!stmt.ok()) return stmt.status();
    }
    ASSIGN_OR_RETURN(std::unique_ptr<SqliteConnection> writer,
                     Take(&SqliteDatabase::WriterFree, "writer"));
    absl::StatusOr<Result> result = writer->Execute(sql, params);
    GiveBackWriter(std::move(writer));
    return result;
  }

  absl::Status Transaction(
      absl::FunctionRef<absl::Status(Session&)> body) override {
    ASSIGN_OR_RETURN(std::unique_ptr<SqliteConnection> writer,
                     Take(&SqliteDatabase::WriterFree, "writer"));
    absl::Status status = RunTransaction(*writer, body);
    GiveBackWriter(std::move(writer));
    return status;
  }

  absl::StatusOr<std::unique_ptr<Subscription>> Listen(
      std::string_view channel,
      std::function<void(std::optional<std::string>)> callback) override {
    return absl::UnimplementedError(absl::StrCat(
        "Listen(\"", AsAbsl(channel),
        "\"): LISTEN/NOTIFY needs PostgreSQL; the SQLite backend serves one "
        "process, so notify in-process instead"));
  }

  absl::Status Ping() override { return Execute("SELECT 1", {}).status(); }

 private:
  absl::Status RunTransaction(SqliteConnection& writer,
                              absl::FunctionRef<absl::Status(Session&)> body) {
    RETURN_IF_ERROR(Annotate(writer.ExecScript("BEGIN IMMEDIATE"),
                             "starting a transaction"));
    SqliteSession session(writer);
    const absl::Status body_status = body(session);
    if (body_status.ok() && session.first_error().ok()) {
      absl::Status commit = writer.ExecScript("COMMIT");
      if (commit.ok()) return absl::OkStatus();
      if (writer.in_transaction()) writer.ExecScript("ROLLBACK").IgnoreError();
      return Annotate(commit, "committing the transaction");
    }
    // SQLite may already have rolled back on its own (e.g. after SQLITE_FULL).
    if (writer.in_transaction()) {
      absl::Status rollback = writer.ExecScript("ROLLBACK");
      if (!rollback.ok()) {
        MM_LOG(WARNING) << "sqlite " << path_
                        << ": rollback failed: " << rollback;
      }
    }
    if (!body_status.ok()) return body_status;
    return Annotate(session.first_error(),
                    "transaction rolled back because a statement failed");
  }

  bool WriterFree() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return writer_ != nullptr;
  }
  bool ReaderFree() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !readers_.empty();
  }

  absl::StatusOr<std::unique_ptr<SqliteConnection>> Take(
      bool (SqliteDatabase::*free)() const, std::string_view role) {
    MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(
            [this, free]()
                ABSL_NO_THREAD_SAFETY_ANALYSIS { return (this->*free)(); },
            options_.acquire_timeout)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "sqlite ", path_, ": no ", AsAbsl(role),
          " connection became free within ",
          absl::FormatDuration(options_.acquire_timeout),
          "; a transaction is running too long (or calls the Database from "
          "inside its body), or pool_size is too small"));
    }
    std::unique_ptr<SqliteConnection> connection;
    if (free == &SqliteDatabase::WriterFree) {
      connection = std::move(writer_);
    } else {
      connection = std::move(readers_.back());
      readers_.pop_back();
    }
    return connection;
  }

  void GiveBackWriter(std::unique_ptr<SqliteConnection> connection) {
    MutexLock lock(&mu_);
    writer_ = std::move(connection);
  }
  void GiveBackReader(std::unique_ptr<SqliteConnection> connection) {
    MutexLock lock(&mu_);
    readers_.push_back(std::move(connection));
  }

  const std::string path_;
  const Options options_;
  const size_t reader_count_;
  Mutex mu_;
  // Null while lent out.
  std::unique_ptr<SqliteConnection> writer_ ABSL_GUARDED_BY(mu_);
  // The idle readers.
  std::vector<std::unique_ptr<SqliteConnection>> readers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> OpenSqlite(const std::string& path,
                                                     const Options& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<SqliteConnection> writer,
                   SqliteConnection::Open(path, /*create=*/true, options));
  std::vector<std::unique_ptr<SqliteConnection>> readers;
  if (path != ":memory:") {
    // Reading the journal mode also makes SQLite read the file header, so a
    // file that is not a database fails here rather than on first use.
    ASSIGN_OR_RETURN(Result mode,
                     writer->Execute("PRAGMA journal_mode = WAL", {}));
    if (mode.rows.empty() || mode.rows[0].Text(0) != "wal") {
      MM_LOG(WARNING) << "sqlite " << path
                      << ": WAL journal mode unavailable (got "
                      << (mode.rows.empty() ? "" : mode.rows[0].Text(0))
                      << "); readers will wait for writers";
    }
    for (int i = 1; i < options.pool_size; ++i) {
      ASSIGN_OR_RETURN(std::unique_ptr<SqliteConnection> reader,
                       SqliteConnection::Open(path, /*create=*/false, options));
      readers.push_back(std::move(reader));
    }
  }
  return std::make_unique<SqliteDatabase>(path, options, std::move(writer),
                                          std::move(readers));
}

}  // namespace mm::sql::internal
