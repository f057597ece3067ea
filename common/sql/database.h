// One SQL interface over SQLite (embedded default) and PostgreSQL (cluster).
//
// A Database is opened from a URL and hands out results of single statements
// (autocommit) or runs a callback inside a transaction on one connection.
// SQL text uses `?` placeholders in both dialects and every value travels as
// a bound parameter, never spliced into the text. Schema changes are numbered
// Migrations applied once per component and recorded in schema_migrations.
//
// Thread-safety: a Database is safe to use from any number of threads. A
// Session is only valid inside the Transaction callback that received it and
// belongs to that callback's thread. A Subscription may be destroyed from any
// thread except its own callback.
//
// PostgreSQL keeps each connection's queries and data changes prepared
// (parsed and planned once per connection); see docs/sql.md.
//
// Behaviour on outages (PostgreSQL): calls fail fast with UNAVAILABLE while
// the server is away; broken connections are re-established on later calls
// with exponential backoff; nothing exits or crashes. See docs/sql.md.
//
// Example:
//   ASSIGN_OR_RETURN(std::unique_ptr<sql::Database> db,
//                    sql::Database::Open("sqlite:/var/lib/mm/records.db"));
//   RETURN_IF_ERROR(db->Migrate("records", kRecordsMigrations));
//   ASSIGN_OR_RETURN(sql::Result r,
//                    db->Execute("SELECT name FROM models WHERE base = ?",
//                                {std::string("sdxl")}));
//   for (const sql::Row& row : r.rows) Use(row.Text(0));
#ifndef MM_COMMON_SQL_DATABASE_H_
#define MM_COMMON_SQL_DATABASE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/metrics/registry.h"

namespace mm::sql {

enum class Dialect { kSqlite, kPostgres };

// "sqlite" or "postgres", for messages and logs.
std::string_view DialectName(Dialect dialect);

// A bound parameter or a result cell. std::monostate is SQL NULL. Strings
// are UTF-8 text (SQLite BLOB cells are returned as their bytes).
using Value = std::variant<std::monostate, int64_t, double, std::string>;

// One result row. The typed accessors convert between representations, so
// callers read the same way from both backends (PostgreSQL sends text and is
// converted by column type: integers and bool → int64, float and numeric →
// double, everything else → text). A NULL cell, an out-of-range column or
// text that is not a number reads as 0 / 0.0 / "" — use IsNull() where NULL
// matters.
class Row {
 public:
  Row() = default;
  explicit Row(std::vector<Value> values) : values_(std::move(values)) {}

  int size() const { return static_cast<int>(values_.size()); }
  // The raw cell; a NULL Value for an out-of-range column.
  const Value& value(int col) const;
  bool IsNull(int col) const;
  int64_t Int(int col) const;
  double Double(int col) const;
  std::string Text(int col) const;
  // Text(col), or std::nullopt when the cell is NULL.
  std::optional<std::string> OptionalText(int col) const;

 private:
  std::vector<Value> values_;
};

struct Result {
  std::vector<std::string> columns;
  std::vector<Row> rows;
  // Rows inserted, updated or deleted by the statement; 0 for queries.
  int64_t affected_rows = 0;
};

// One connection inside an open transaction (see Database::Transaction).
class Session {
 public:
  virtual ~Session() = default;

  // Runs one statement with `?` placeholders bound to `params` in order.
  // Any error marks the transaction failed: it is rolled back when the
  // callback returns, whatever the callback returns.
  virtual absl::StatusOr<Result> Execute(
      std::string_view sql, const std::vector<Value>& params = {}) = 0;
  // Runs several `;`-separated statements without parameters (DDL scripts).
  virtual absl::Status ExecuteScript(std::string_view sql) = 0;
  virtual Dialect dialect() const = 0;
};

// One numbered schema change of a component. Both texts may hold several
// statements; the one matching the database's dialect is run.
struct Migration {
  int version = 0;  // > 0, unique within a component
  std::string description;
  std::string sqlite_sql;
  std::string postgres_sql;
};

struct Options {
  // Connections kept open. SQLite uses one for writes and the rest for
  // concurrent reads (":memory:" always uses exactly one).
  int pool_size = 4;
  // How long a call waits for a free pooled connection before failing with
  // RESOURCE_EXHAUSTED.
  absl::Duration acquire_timeout = absl::Seconds(10);
  // PostgreSQL: bound on establishing a connection (libpq connect_timeout,
  // whole seconds, at least 2).
  absl::Duration connect_timeout = absl::Seconds(5);
  // PostgreSQL over TCP: unacknowledged data is given up after this long
  // (tcp_user_timeout), so a vanished server fails calls instead of hanging.
  absl::Duration tcp_user_timeout = absl::Seconds(30);
  // SQLite: how long a statement waits for a lock held by another
  // connection or process before failing with UNAVAILABLE.
  absl::Duration busy_timeout = absl::Seconds(5);
  // PostgreSQL: after a failed connection attempt no new attempt is made for
  // this long, doubling per failure up to reconnect_backoff_max; calls in
  // between fail at once with UNAVAILABLE.
  absl::Duration reconnect_backoff_min = absl::Milliseconds(100);
  absl::Duration reconnect_backoff_max = absl::Seconds(5);
  // Where the database counts its failures (docs/operations.md):
  // mm_db_errors_total{code} (Execute, Transaction and Ping calls that
  // failed), mm_db_connect_failures_total and mm_db_reconnects_total
  // (PostgreSQL). Null: not counted. Must outlive the database.
  metrics::Registry* metrics = nullptr;
};

// An active LISTEN; destroying it stops listening (and waits for a running
// callback to return, so never destroy it from inside its callback).
class Subscription {
 public:
  virtual ~Subscription() = default;
};

class Database {
 public:
  virtual ~Database() = default;

  // `url` is one of:
  //   "sqlite:PATH" (also "sqlite:///abs/path"), or a bare PATH ending in
  //   ".db": a SQLite file, created when missing (its directory must exist);
  //   "sqlite::memory:": a private in-memory database (tests);
  //   "postgresql://..." or "postgres://...": a libpq connection URI, e.g.
  //   "postgresql://mm@db:5432/mm?sslmode=require" or, for a unix socket,
  //   "postgresql:///mm?host=/run/postgresql".
  // Fails with INVALID_ARGUMENT for an unknown URL or bad options, and with
  // UNAVAILABLE / FAILED_PRECONDITION when the database cannot be reached.
  // Defined with the PostgreSQL backend (library mm_sql).
  static absl::StatusOr<std::unique_ptr<Database>> Open(
      std::string_view url, const Options& options = {});

  // Open's SQLite half alone: the file at `path` (created when missing), or
  // a private in-memory database when `path` is ":memory:". In library
  // mm_sql_sqlite, which does not link libpq: a program that never opens
  // PostgreSQL (the `mm` command) links that alone and starts without
  // libpq's two dozen shared libraries (about 6 ms of every start).
  static absl::StatusOr<std::unique_ptr<Database>> OpenSqlite(
      std::string_view path, const Options& options = {});

  virtual Dialect dialect() const = 0;

  // One statement, autocommit, on a pooled connection.
  virtual absl::StatusOr<Result> Execute(
      std::string_view sql, const std::vector<Value>& params = {}) = 0;

  // Runs `body` in a transaction on one connection and commits when it
  // returns OK. It is rolled back when `body` fails (its status is returned)
  // or when any statement in it failed (that statement's status is returned,
  // even if `body` swallowed it), so dialects behave alike. SQLite uses
  // BEGIN IMMEDIATE (writers are serialized); PostgreSQL runs READ
  // COMMITTED, so read-modify-write should use UPDATE ... RETURNING or
  // SELECT ... FOR UPDATE. A failed commit (e.g. serialization failure)
  // returns ABORTED; the caller may run the whole transaction again.
  virtual absl::Status Transaction(
      absl::FunctionRef<absl::Status(Session&)> body) = 0;

  // Applies the `migrations` of `component` not yet recorded in
  // schema_migrations(component, version, description, applied_at), each in
  // its own transaction, in version order. Idempotent. On PostgreSQL each
  // step holds a transaction-scoped advisory lock, so replicas starting at
  // once apply each migration exactly once. Fails with FAILED_PRECONDITION
  // when the database records a version newer than any in `migrations`
  // (an older binary on a newer schema).
  absl::Status Migrate(std::string_view component,
                       const std::vector<Migration>& migrations);

  // PostgreSQL: LISTEN on `channel` on a dedicated connection and thread.
  // Returns once the LISTEN is active. `callback` gets each NOTIFY payload,
  // and std::nullopt after the connection was lost and re-established
  // (notifications may have been missed: re-read the state). Notify with
  // Execute("SELECT pg_notify(?, ?)", {channel, payload}); delivery happens
  // at commit of the notifying transaction. SQLite: UNIMPLEMENTED.
  virtual absl::StatusOr<std::unique_ptr<Subscription>> Listen(
      std::string_view channel,
      std::function<void(std::optional<std::string>)> callback) = 0;

  // OK when the database answers SELECT 1.
  virtual absl::Status Ping() = 0;
};

// `url` with any password replaced by "***", fit for logs.
std::string RedactUrl(std::string_view url);

}  // namespace mm::sql

#endif  // MM_COMMON_SQL_DATABASE_H_
