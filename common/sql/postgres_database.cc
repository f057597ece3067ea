// PostgreSQL backend over libpq: a bounded pool of blocking connections,
// checked for a server-side close before each use and re-established with
// exponential backoff after a failed attempt, each keeping its queries as
// prepared statements, plus a LISTEN thread per Subscription.
#include "common/sql/postgres_database.h"

#include <libpq-fe.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "common/status.h"
#include "common/strings.h"

namespace mm::sql::internal {
namespace {

// Type OIDs from pg_type.h (stable across server versions).
constexpr Oid kBoolOid = 16;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kOidOid = 26;
constexpr Oid kFloat4Oid = 700;
constexpr Oid kFloat8Oid = 701;
constexpr Oid kNumericOid = 1700;

bool IsIdentifierChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
         c == '$' || static_cast<unsigned char>(c) >= 0x80;
}

std::string Shorten(std::string_view sql) {
  constexpr size_t kMax = 160;
  std::string text(absl::StripAsciiWhitespace(AsAbsl(sql)));
  if (text.size() > kMax) text = absl::StrCat(text.substr(0, kMax), "...");
  return text;
}

std::string DoubleParam(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, end);
}

// libpq messages end in a newline and may span tab-indented lines; keep
// them on one line for logs and statuses.
std::string OneLine(const char* message) {
  std::string text;
  bool pending_space = false;
  for (const char* p = message != nullptr ? message : ""; *p != '\0'; ++p) {
    if (absl::ascii_isspace(static_cast<unsigned char>(*p))) {
      pending_space = !text.empty();
      continue;
    }
    if (pending_space) text.push_back(' ');
    pending_space = false;
    text.push_back(*p);
  }
  return text;
}

void LogNotice(void* /*arg*/, const char* message) {
  MM_LOG(DEBUG) << "postgres: " << OneLine(message);
}

// The status for a failed command (`result` may be null when libpq could
// not even send it).
absl::Status PgError(PGconn* conn, const PGresult* result,
                     std::string_view sql) {
  const std::string where =
      sql.empty() ? std::string() : absl::StrCat(" (in `", Shorten(sql), "`)");
  const char* sqlstate_field =
      result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE)
                        : nullptr;
  const std::string sqlstate = sqlstate_field ? sqlstate_field : "";
  std::string message = OneLine(result != nullptr ? PQresultErrorMessage(result)
                                                  : PQerrorMessage(conn));
  if (message.empty()) message = OneLine(PQerrorMessage(conn));
  if (PQstatus(conn) == CONNECTION_BAD || absl::StartsWith(sqlstate, "08") ||
      sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03") {
    return absl::UnavailableError(
        absl::StrCat("lost the connection to PostgreSQL: ", message,
                     "; retry once the server is reachable", where));
  }
  if (sqlstate.empty()) {
    return absl::InternalError(absl::StrCat("libpq: ", message, where));
  }
  if (sqlstate == "23505") {
    const char* constraint =
        PQresultErrorField(result, PG_DIAG_CONSTRAINT_NAME);
    const char* detail = PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL);
    return absl::AlreadyExistsError(
        absl::StrCat("unique constraint ", constraint ? constraint : "?",
                     " failed: ", detail ? OneLine(detail) : message, where));
  }
  if (sqlstate == "23502" || sqlstate == "23514" ||
      absl::StartsWith(sqlstate, "22")) {
    return absl::InvalidArgumentError(
        absl::StrCat(message, " [SQLSTATE ", sqlstate, "]", where));
  }
  if (absl::StartsWith(sqlstate, "23")) {
    return absl::FailedPreconditionError(
        absl::StrCat(message, " [SQLSTATE ", sqlstate, "]", where));
  }
  if (sqlstate == "40001" || sqlstate == "40P01") {
    return absl::AbortedError(absl::StrCat(message, " [SQLSTATE ", sqlstate,
                                           "]; retry the transaction", where));
  }
  if (absl::StartsWith(sqlstate, "53")) {
    return absl::ResourceExhaustedError(
        absl::StrCat(message, " [SQLSTATE ", sqlstate, "]", where));
  }
  if (sqlstate == "57014") {
    return absl::DeadlineExceededError(
        absl::StrCat(message, " [SQLSTATE ", sqlstate, "]", where));
  }
  return absl::InternalError(absl::StrCat("PostgreSQL error: ", message,
                                          " [SQLSTATE ", sqlstate, "]", where));
}

using ResultPtr = std::unique_ptr<PGresult, decltype(&PQclear)>;

Value CellValue(const PGresult* result, int row, int col) {
  if (PQgetisnull(result, row, col)) return std::monostate();
  const char* text = PQgetvalue(result, row, col);
  const int length = PQgetlength(result, row, col);
  absl::string_view cell(text, length);
  switch (PQftype(result, col)) {
    case kBoolOid:
      return int64_t{cell == "t" ? 1 : 0};
    case kInt2Oid:
    case kInt4Oid:
    case kInt8Oid:
    case kOidOid: {
      int64_t value = 0;
      if (absl::SimpleAtoi(cell, &value)) return value;
      break;
    }
    case kFloat4Oid:
    case kFloat8Oid:
    case kNumericOid: {
      double value = 0;
      if (absl::SimpleAtod(cell, &value)) return value;
      break;
    }
    default:
      break;
  }
  return std::string(cell);
}

absl::StatusOr<Result> ToResult(PGconn* conn, const PGresult* result,
                                std::string_view sql) {
  const ExecStatusType status = PQresultStatus(result);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK &&
      status != PGRES_EMPTY_QUERY) {
    return PgError(conn, result, sql);
  }
  Result out;
  const int columns = PQnfields(result);
  const int rows = PQntuples(result);
  out.columns.reserve(columns);
  for (int c = 0; c < columns; ++c)
    out.columns.emplace_back(PQfname(result, c));
  out.rows.reserve(rows);
  for (int r = 0; r < rows; ++r) {
    std::vector<Value> values;
    values.reserve(columns);
    for (int c = 0; c < columns; ++c) values.push_back(CellValue(result, r, c));
    out.rows.emplace_back(std::move(values));
  }
  const char* affected = PQcmdTuples(const_cast<PGresult*>(result));
  if (status == PGRES_COMMAND_OK && affected != nullptr && *affected != '\0') {
    // PQcmdTuples gives a decimal count or ""; anything else counts as 0.
    if (!absl::SimpleAtoi(affected, &out.affected_rows)) out.affected_rows = 0;
  }
  return out;
}

struct ConnDeleter {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnDeleter>;

// Parameters in libpq's text form, and the types the statement is
// prepared with.
struct BoundParams {
  std::vector<std::string> storage;
  std::vector<const char*> values;
  std::vector<Oid> types;
  // One letter per parameter (i: int8, d: float8, u: left to the server);
  // a statement prepared for one signature is only reused with the same,
  // so the server infers types exactly as it would for a one-off statement.
  std::string signature;
};

absl::StatusOr<BoundParams> BindParams(std::string_view sql,
                                       const std::vector<Value>& params) {
  BoundParams bound;
  bound.storage.resize(params.size());
  bound.values.assign(params.size(), nullptr);
  bound.types.assign(params.size(), 0);
  bound.signature.assign(params.size(), 'u');
  for (size_t i = 0; i < params.size(); ++i) {
    const Value& value = params[i];
    if (const auto* n = std::get_if<int64_t>(&value)) {
      bound.storage[i] = absl::StrCat(*n);
      bound.types[i] = kInt8Oid;
      bound.signature[i] = 'i';
    } else if (const auto* d = std::get_if<double>(&value)) {
      bound.storage[i] = DoubleParam(*d);
      bound.types[i] = kFloat8Oid;
      bound.signature[i] = 'd';
    } else if (const auto* s = std::get_if<std::string>(&value)) {
      if (s->find('\0') != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(
            "parameter ", i + 1, " of `", Shorten(sql),
            "` contains a NUL byte, which PostgreSQL text cannot hold"));
      }
      bound.storage[i] = *s;
      // Type 0 lets the server infer it (text, jsonb, timestamptz, ...).
    } else {
      continue;  // NULL: values[i] stays nullptr.
    }
    bound.values[i] = bound.storage[i].c_str();
  }
  return bound;
}

// `sql` with `?` rewritten, or INVALID_ARGUMENT when its placeholders do not
// match the parameters given.
absl::StatusOr<std::string> Rewrite(std::string_view sql, size_t params) {
  PlaceholderSql rewritten = RewritePlaceholders(sql);
  if (rewritten.placeholder_count != static_cast<int>(params)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SQL `", Shorten(sql), "` has ", rewritten.placeholder_count,
        " placeholders but ", params, " parameters were given"));
  }
  return std::move(rewritten.sql);
}

// Whether `sql` is worth keeping prepared: queries and data changes, which
// a program runs over and over. DDL, SET, LISTEN and the like run once, as
// one-off statements, and never fill the cache.
bool Cacheable(std::string_view sql) {
  size_t i = 0;
  while (i < sql.size() &&
         (absl::ascii_isspace(static_cast<unsigned char>(sql[i])) ||
          sql[i] == '(')) {
    ++i;
  }
  size_t end = i;
  while (end < sql.size() &&
         absl::ascii_isalpha(static_cast<unsigned char>(sql[end]))) {
    ++end;
  }
  const absl::string_view word(sql.data() + i, end - i);
  for (absl::string_view keyword :
       {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES"}) {
    if (absl::EqualsIgnoreCase(word, keyword)) return true;
  }
  return false;
}

// Prepared statements kept per connection; when a new one would exceed
// this, the connection's statements are all deallocated and the cache
// starts over (as the SQLite backend does).
constexpr size_t kMaxPreparedStatements = 256;

// One pooled connection and the statements prepared on it. The server keeps
// prepared statements per session, so the cache lives and dies with the
// connection: a reconnected session starts with an empty cache and can
// never be asked for a statement it lacks.
struct Connection {
  explicit Connection(ConnPtr c) : conn(std::move(c)) {}
  PGconn* get() const { return conn.get(); }

  ConnPtr conn;
  // Parameter signature + "|" + SQL as the caller wrote it → the name of
  // the server-side statement.
  std::unordered_map<std::string, std::string> prepared;
  // Names are "mm_<n>" with n counting up for the life of the connection,
  // never reused, so a name cannot collide even with a statement left
  // behind on the server after its cache entry was dropped.
  uint64_t next_statement = 0;
};
using ConnectionPtr = std::unique_ptr<Connection>;

// A one-off statement (the unnamed statement: parsed and planned per call).
absl::StatusOr<Result> RunUnnamed(PGconn* conn, std::string_view sql,
                                  const BoundParams& bound) {
  ASSIGN_OR_RETURN(std::string text, Rewrite(sql, bound.values.size()));
  ResultPtr result(
      PQexecParams(conn, text.c_str(), static_cast<int>(bound.values.size()),
                   bound.types.data(), bound.values.data(), nullptr, nullptr,
                   /*resultFormat=*/0),
      &PQclear);
  if (result == nullptr) return PgError(conn, nullptr, sql);
  return ToResult(conn, result.get(), sql);
}

absl::Status RunScript(PGconn* conn, std::string_view sql);

// Prepares `sql` on `c` under a fresh name and caches it under `key`.
absl::StatusOr<std::string> Prepare(Connection& c, const std::string& key,
                                    std::string_view sql,
                                    const BoundParams& bound) {
  ASSIGN_OR_RETURN(std::string text, Rewrite(sql, bound.values.size()));
  if (c.prepared.size() >= kMaxPreparedStatements) {
    // DEALLOCATE is not transactional, so this is safe inside a
    // transaction too: a rollback does not bring the statements back.
    RETURN_IF_ERROR(Annotate(RunScript(c.get(), "DEALLOCATE ALL"),
                             "dropping the prepared statement cache"));
    c.prepared.clear();
  }
  std::string name = absl::StrCat("mm_", c.next_statement++);
  ResultPtr result(
      PQprepare(c.get(), name.c_str(), text.c_str(),
                static_cast<int>(bound.types.size()), bound.types.data()),
      &PQclear);
  if (result == nullptr) return PgError(c.get(), nullptr, sql);
  RETURN_IF_ERROR(ToResult(c.get(), result.get(), sql).status());
  c.prepared.emplace(key, name);
  return name;
}

// Whether a prepared statement failed only because it went stale: the
// session no longer has it (someone ran DEALLOCATE or DISCARD on the
// connection), or a schema change altered the columns it returns, which
// PostgreSQL refuses to do under a prepared statement. Either way nothing
// ran.
bool StaleStatement(const PGresult* result, bool* dropped_by_server) {
  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  if (state == nullptr) return false;
  const std::string_view sqlstate(state);
  *dropped_by_server = sqlstate == "26000";
  if (*dropped_by_server) return true;
  const char* message = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  return sqlstate == "0A000" && message != nullptr &&
         absl::StrContains(message, "cached plan must not change result type");
}

// Runs one statement with bound text parameters: a query or data change
// through the connection's prepared statement for it (parsed and planned
// once per connection), anything else as a one-off.
absl::StatusOr<Result> RunStatement(Connection& c, std::string_view sql,
                                    const std::vector<Value>& params) {
  ASSIGN_OR_RETURN(BoundParams bound, BindParams(sql, params));
  if (!Cacheable(sql)) return RunUnnamed(c.get(), sql, bound);
  std::string key = absl::StrCat(bound.signature, "|", AsAbsl(sql));
  for (int attempt = 0;; ++attempt) {
    std::string name;
    bool fresh = false;
    if (auto it = c.prepared.find(key); it != c.prepared.end()) {
      name = it->second;
    } else {
      ASSIGN_OR_RETURN(name, Prepare(c, key, sql, bound));
      fresh = true;
    }
    ResultPtr result(PQexecPrepared(c.get(), name.c_str(),
                                    static_cast<int>(bound.values.size()),
                                    bound.values.data(), nullptr, nullptr,
                                    /*resultFormat=*/0),
                     &PQclear);
    if (result == nullptr) return PgError(c.get(), nullptr, sql);
    bool dropped_by_server = false;
    if (fresh || PQresultStatus(result.get()) != PGRES_FATAL_ERROR ||
        !StaleStatement(result.get(), &dropped_by_server)) {
      return ToResult(c.get(), result.get(), sql);
    }
    if (dropped_by_server) {
      // Whatever removed this one removed the others too.
      c.prepared.clear();
    } else {
      c.prepared.erase(key);
    }
    const bool autocommit = PQtransactionStatus(c.get()) == PQTRANS_IDLE;
    if (!dropped_by_server && autocommit) {
      // Free the server's copy now; a leftover would only cost memory
      // until the cache is next flushed or the connection closes.
      RunScript(c.get(), absl::StrCat("DEALLOCATE ", name)).IgnoreError();
    }
    // Inside a transaction the error has aborted it: report it (the next
    // attempt prepares afresh). In autocommit nothing ran, so prepare and
    // run again.
    if (!autocommit || attempt > 0) {
      return ToResult(c.get(), result.get(), sql);
    }
  }
}

absl::Status RunScript(PGconn* conn, std::string_view sql) {
  const std::string text(sql);
  ResultPtr result(PQexec(conn, text.c_str()), &PQclear);
  if (result == nullptr) return PgError(conn, nullptr, sql);
  return ToResult(conn, result.get(), sql).status();
}

// A live connection: nothing pending on its socket but a server-side close
// or error (which we consume here), so reusing it cannot half-run a call.
bool StillUsable(PGconn* conn) {
  if (PQstatus(conn) != CONNECTION_OK ||
      PQtransactionStatus(conn) != PQTRANS_IDLE) {
    return false;
  }
  // A terminating server sends an error message and then closes; reading
  // twice sees both.
  for (int i = 0; i < 4; ++i) {
    pollfd fd{PQsocket(conn), POLLIN, 0};
    if (fd.fd < 0) return false;
    const int ready = ::poll(&fd, 1, 0);
    if (ready == 0) return true;
    if (ready < 0) return false;
    if (PQconsumeInput(conn) == 0 || PQstatus(conn) != CONNECTION_OK) {
      return false;
    }
    while (PGnotify* stray = PQnotifies(conn)) PQfreemem(stray);
  }
  return PQstatus(conn) == CONNECTION_OK;
}

// Opens one connection; `conninfo` comes last so the URL overrides our
// defaults (e.g. a different connect_timeout).
// Counts `name` (a counter without labels) when the options ask for
// metrics. Only on rare paths (connection failures and recoveries), so the
// family look-up each time costs nothing that matters.
void CountEvent(const Options& options, const char* name, const char* help) {
  if (options.metrics == nullptr) return;
  options.metrics->AddCounter(name, help)->WithLabels({})->Increment();
}

void CountReconnect(const Options& options) {
  CountEvent(options, "mm_db_reconnects_total",
             "PostgreSQL connections made again after one was lost or an "
             "attempt failed (pool and listener)");
}

absl::StatusOr<ConnPtr> Connect(const std::string& conninfo,
                                const std::string& redacted,
                                const Options& options) {
  const std::string connect_timeout = absl::StrCat(
      std::max<int64_t>(2, absl::ToInt64Seconds(absl::Ceil(
                               options.connect_timeout, absl::Seconds(1)))));
  const std::string tcp_user_timeout =
      absl::StrCat(absl::ToInt64Milliseconds(options.tcp_user_timeout));
  const char* keywords[] = {"connect_timeout",  "keepalives",
                            "keepalives_idle",  "keepalives_interval",
                            "keepalives_count", "tcp_user_timeout",
                            "client_encoding",  "fallback_application_name",
                            "dbname",           nullptr};
  const char* values[] = {connect_timeout.c_str(),
                          "1",
                          "30",
                          "10",
                          "3",
                          tcp_user_timeout.c_str(),
                          "UTF8",
                          "mm",
                          conninfo.c_str(),
                          nullptr};
  ConnPtr conn(PQconnectdbParams(keywords, values, /*expand_dbname=*/1));
  if (conn == nullptr) {
    return absl::ResourceExhaustedError(
        "libpq could not allocate a connection object (out of memory)");
  }
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    CountEvent(options, "mm_db_connect_failures_total",
               "PostgreSQL connection attempts that failed");
    return absl::UnavailableError(absl::StrCat(
        "cannot connect to PostgreSQL at ", redacted, ": ",
        OneLine(PQerrorMessage(conn.get())),
        "; check that the server is running and the URL is right"));
  }
  PQsetNoticeProcessor(conn.get(), &LogNotice, nullptr);
  return conn;
}

class PostgresSession : public Session {
 public:
  explicit PostgresSession(Connection& conn) : conn_(conn) {}

  absl::StatusOr<Result> Execute(std::string_view sql,
                                 const std::vector<Value>& params) override {
    if (!first_error_.ok()) return AbortedByEarlierError();
    absl::StatusOr<Result> result = RunStatement(conn_, sql, params);
    if (!result.ok()) first_error_ = result.status();
    return result;
  }

  absl::Status ExecuteScript(std::string_view sql) override {
    if (!first_error_.ok()) return AbortedByEarlierError();
    absl::Status status = RunScript(conn_.get(), sql);
    if (!status.ok()) first_error_ = status;
    return status;
  }

  Dialect dialect() const override { return Dialect::kPostgres; }

  const absl::Status& first_error() const { return first_error_; }

 private:
  // PostgreSQL refuses every statement after an error in a transaction;
  // say why with the original error instead of "current transaction is
  // aborted".
  absl::Status AbortedByEarlierError() const {
    return Annotate(first_error_,
                    "transaction already failed on an earlier statement");
  }

  Connection& conn_;
  absl::Status first_error_;
};

class PostgresSubscription : public Subscription {
 public:
  PostgresSubscription(std::string conninfo, std::string redacted,
                       Options options, std::string listen_sql, ConnPtr conn,
                       std::function<void(std::optional<std::string>)> callback,
                       int wake_fd)
      : conninfo_(std::move(conninfo)),
        redacted_(std::move(redacted)),
        options_(options),
        listen_sql_(std::move(listen_sql)),
        callback_(std::move(callback)),
        wake_fd_(wake_fd) {
    thread_ = std::thread(
        [this, c = std::move(conn)]() mutable { Loop(std::move(c)); });
  }

  ~PostgresSubscription() override {
    stop_.store(true);
    const uint64_t one = 1;
    // A failed write only means the counter is already non-zero.
    [[maybe_unused]] ssize_t ignored = ::write(wake_fd_, &one, sizeof(one));
    thread_.join();
    ::close(wake_fd_);
  }

 private:
  // Waits until `fd` is readable (or only for `timeout` when fd < 0).
  // Returns false when asked to stop.
  bool Wait(int fd, int timeout_ms) {
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {fd, POLLIN, 0}};
    const int count = fd >= 0 ? 2 : 1;
    while (true) {
      const int ready = ::poll(fds, count, timeout_ms);
      if (ready < 0 && errno == EINTR) continue;
      break;
    }
    return !stop_.load() && (fds[0].revents & POLLIN) == 0;
  }

  void Loop(ConnPtr conn) {
    absl::Duration backoff = options_.reconnect_backoff_min;
    while (!stop_.load()) {
      if (conn == nullptr) {
        if (!Wait(-1, static_cast<int>(absl::ToInt64Milliseconds(backoff)))) {
          break;
        }
        absl::StatusOr<ConnPtr> fresh = Connect(conninfo_, redacted_, options_);
        absl::Status status = fresh.status();
        if (fresh.ok()) status = RunScript(fresh->get(), listen_sql_);
        if (!status.ok()) {
          backoff = std::min(backoff * 2, options_.reconnect_backoff_max);
          MM_LOG(DEBUG) << "postgres listener: " << status
                        << "; next attempt in "
                        << absl::FormatDuration(backoff);
          continue;
        }
        conn = std::move(*fresh);
        backoff = options_.reconnect_backoff_min;
        CountReconnect(options_);
        MM_LOG(INFO) << "postgres listener reconnected to " << redacted_ << " ("
                     << listen_sql_ << ")";
        callback_(std::nullopt);
      }
      if (!Wait(PQsocket(conn.get()), -1)) break;
      if (PQconsumeInput(conn.get()) == 0 ||
          PQstatus(conn.get()) != CONNECTION_OK) {
        MM_LOG(WARNING) << "postgres listener lost its connection to "
                        << redacted_ << ": "
                        << OneLine(PQerrorMessage(conn.get()))
                        << "; reconnecting";
        conn.reset();
        continue;
      }
      while (PGnotify* notify = PQnotifies(conn.get())) {
        std::string payload = notify->extra != nullptr ? notify->extra : "";
        PQfreemem(notify);
        callback_(std::move(payload));
      }
    }
  }

  const std::string conninfo_;
  const std::string redacted_;
  const Options options_;
  const std::string listen_sql_;
  const std::function<void(std::optional<std::string>)> callback_;
  const int wake_fd_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class PostgresDatabase : public Database {
 public:
  PostgresDatabase(std::string conninfo, const Options& options, ConnPtr first)
      : conninfo_(std::move(conninfo)),
        redacted_(RedactUrl(conninfo_)),
        options_(options) {
    MutexLock lock(&mu_);
    idle_.push_back(std::make_unique<Connection>(std::move(first)));
    open_ = 1;
    backoff_ = options_.reconnect_backoff_min;
  }

  Dialect dialect() const override { return Dialect::kPostgres; }

  absl::StatusOr<Result> Execute(std::string_view sql,
                                 const std::vector<Value>& params) override {
    ASSIGN_OR_RETURN(ConnectionPtr conn, Acquire());
    absl::StatusOr<Result> result = RunStatement(*conn, sql, params);
    Release(std::move(conn));
    return result;
  }

  absl::Status Transaction(
      absl::FunctionRef<absl::Status(Session&)> body) override {
    ASSIGN_OR_RETURN(ConnectionPtr conn, Acquire());
    absl::Status status = RunTransaction(*conn, body);
    Release(std::move(conn));
    return status;
  }

  absl::StatusOr<std::unique_ptr<Subscription>> Listen(
      std::string_view channel,
      std::function<void(std::optional<std::string>)> callback) override {
    if (channel.empty()) {
      return absl::InvalidArgumentError("Listen: channel is empty");
    }
    if (!callback) return absl::InvalidArgumentError("Listen: no callback");
    ASSIGN_OR_RETURN(ConnPtr conn, Connect(conninfo_, redacted_, options_));
    // A channel is an identifier, which cannot be a bound parameter; libpq
    // quotes it safely.
    const std::string name(channel);
    char* quoted = PQescapeIdentifier(conn.get(), name.data(), name.size());
    if (quoted == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Listen: channel \"", name,
          "\" cannot be quoted: ", OneLine(PQerrorMessage(conn.get()))));
    }
    std::string listen_sql = absl::StrCat("LISTEN ", quoted);
    PQfreemem(quoted);
    RETURN_IF_ERROR(RunScript(conn.get(), listen_sql));
    const int wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd < 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat("Listen: eventfd failed (errno ", errno, ")"));
    }
    return std::make_unique<PostgresSubscription>(
        conninfo_, redacted_, options_, std::move(listen_sql), std::move(conn),
        std::move(callback), wake_fd);
  }

  absl::Status Ping() override { return Execute("SELECT 1", {}).status(); }

 private:
  absl::Status RunTransaction(Connection& connection,
                              absl::FunctionRef<absl::Status(Session&)> body) {
    PGconn* conn = connection.get();
    RETURN_IF_ERROR(
        Annotate(RunScript(conn, "BEGIN"), "starting a transaction"));
    PostgresSession session(connection);
    const absl::Status body_status = body(session);
    if (body_status.ok() && session.first_error().ok()) {
      absl::Status commit = RunScript(conn, "COMMIT");
      if (commit.ok()) return absl::OkStatus();
      if (absl::IsUnavailable(commit)) {
        return Annotate(commit,
                        "committing (the outcome is unknown: the transaction "
                        "may or may not have been applied)");
      }
      return Annotate(commit, "committing the transaction");
    }
    if (PQtransactionStatus(conn) != PQTRANS_IDLE &&
        PQstatus(conn) == CONNECTION_OK) {
      // A failed rollback leaves the connection non-idle; Release drops it.
      RunScript(conn, "ROLLBACK").IgnoreError();
    }
    if (!body_status.ok()) return body_status;
    return Annotate(session.first_error(),
                    "transaction rolled back because a statement failed");
  }

  bool CanTake() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !idle_.empty() || open_ < options_.pool_size;
  }

  absl::StatusOr<ConnectionPtr> Acquire() {
    const absl::Time deadline = absl::Now() + options_.acquire_timeout;
    // Whether the connection made below replaces one the server closed.
    bool replacing = false;
    MutexLock lock(&mu_);
    while (true) {
      if (!mu_.AwaitWithDeadline(
              [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return CanTake(); },
              deadline)) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "postgres ", redacted_, ": all ", options_.pool_size,
            " pooled connections stayed busy for ",
            absl::FormatDuration(options_.acquire_timeout),
            "; raise pool_size, or do not call the Database from inside a "
            "Transaction body"));
      }
      if (!idle_.empty()) {
        ConnectionPtr conn = std::move(idle_.back());
        idle_.pop_back();
        if (StillUsable(conn->get())) return conn;
        --open_;  // Dropped; fall through to replace it.
        replacing = true;
        MM_LOG(INFO) << "postgres " << redacted_
                     << ": dropping a pooled connection the server closed: "
                     << OneLine(PQerrorMessage(conn->get()));
      }
      const absl::Time now = absl::Now();
      if (now < next_attempt_) {
        return absl::UnavailableError(
            absl::StrCat("PostgreSQL at ", redacted_, " is unreachable (",
                         last_error_, "); the next connection attempt is in ",
                         absl::FormatDuration(absl::Ceil(
                             next_attempt_ - now, absl::Milliseconds(1))),
                         "; retry later"));
      }
      ++open_;  // Reserve the slot while connecting without the lock.
      mu_.Unlock();
      absl::StatusOr<ConnPtr> conn = Connect(conninfo_, redacted_, options_);
      mu_.Lock();
      if (conn.ok()) {
        if (backoff_ > options_.reconnect_backoff_min) {
          MM_LOG(INFO) << "postgres " << redacted_ << ": reconnected";
        }
        if (backoff_ > options_.reconnect_backoff_min || replacing) {
          CountReconnect(options_);
        }
        backoff_ = options_.reconnect_backoff_min;
        next_attempt_ = absl::InfinitePast();
        return std::make_unique<Connection>(std::move(*conn));
      }
      --open_;
      if (backoff_ == options_.reconnect_backoff_min) {
        MM_LOG(WARNING) << conn.status();
      }
      last_error_ = std::string(conn.status().message());
      next_attempt_ = absl::Now() + backoff_;
      backoff_ = std::min(backoff_ * 2, options_.reconnect_backoff_max);
      return conn.status();
    }
  }

  void Release(ConnectionPtr conn) {
    // A broken connection, or one left inside a transaction, is dropped
    // rather than handed to the next caller.
    const bool reusable = PQstatus(conn->get()) == CONNECTION_OK &&
                          PQtransactionStatus(conn->get()) == PQTRANS_IDLE;
    if (!reusable) conn.reset();
    MutexLock lock(&mu_);
    if (reusable) {
      idle_.push_back(std::move(conn));
    } else {
      --open_;
    }
  }

  const std::string conninfo_;
  const std::string redacted_;
  const Options options_;
  Mutex mu_;
  std::vector<ConnectionPtr> idle_ ABSL_GUARDED_BY(mu_);
  // Connections that exist: idle, lent out, or being opened.
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  // No connection attempt before this time (backoff after a failure).
  absl::Time next_attempt_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration backoff_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

PlaceholderSql RewritePlaceholders(std::string_view sql) {
  PlaceholderSql out;
  out.sql.reserve(sql.size() + 16);
  size_t i = 0;
  const size_t n = sql.size();
  // Copies sql[i..end) verbatim and moves i there.
  auto copy_to = [&](size_t end) {
    end = std::min(end, n);
    out.sql.append(sql.substr(i, end - i));
    i = end;
  };
  while (i < n) {
    const char c = sql[i];
    if (c == '\'') {
      // E'...' strings treat backslash as an escape.
      const bool backslash_escapes = i > 0 &&
                                     (sql[i - 1] == 'E' || sql[i - 1] == 'e') &&
                                     (i == 1 || !IsIdentifierChar(sql[i - 2]));
      size_t j = i + 1;
      while (j < n) {
        if (backslash_escapes && sql[j] == '\\') {
          j += 2;
        } else if (sql[j] == '\'') {
          if (j + 1 < n && sql[j + 1] == '\'') {
            j += 2;
          } else {
            break;
          }
        } else {
          ++j;
        }
      }
      copy_to(j + 1);
    } else if (c == '"') {
      size_t j = i + 1;
      while (j < n) {
        if (sql[j] == '"') {
          if (j + 1 < n && sql[j + 1] == '"') {
            j += 2;
            continue;
          }
          break;
        }
        ++j;
      }
      copy_to(j + 1);
    } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      const size_t newline = sql.find('\n', i);
      copy_to(newline == std::string_view::npos ? n : newline + 1);
    } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      // Block comments nest in PostgreSQL.
      int depth = 0;
      size_t j = i;
      while (j < n) {
        if (sql[j] == '/' && j + 1 < n && sql[j + 1] == '*') {
          ++depth;
          j += 2;
        } else if (sql[j] == '*' && j + 1 < n && sql[j + 1] == '/') {
          j += 2;
          if (--depth == 0) break;
        } else {
          ++j;
        }
      }
      copy_to(j);
    } else if (c == '$' && (i == 0 || !IsIdentifierChar(sql[i - 1]))) {
      // A dollar quote: $$...$$ or $tag$...$tag$ (a tag cannot start with a
      // digit, which tells it from $1).
      size_t j = i + 1;
      while (j < n && sql[j] != '$' &&
             (absl::ascii_isalpha(static_cast<unsigned char>(sql[j])) ||
              sql[j] == '_' ||
              (j > i + 1 &&
               absl::ascii_isdigit(static_cast<unsigned char>(sql[j]))) ||
              static_cast<unsigned char>(sql[j]) >= 0x80)) {
        ++j;
      }
      if (j < n && sql[j] == '$') {
        const std::string_view tag = sql.substr(i, j - i + 1);
        const size_t close = sql.find(tag, j + 1);
        copy_to(close == std::string_view::npos ? n : close + tag.size());
      } else {
        copy_to(i + 1);
      }
    } else if (c == '?') {
      absl::StrAppend(&out.sql, "$", ++out.placeholder_count);
      ++i;
    } else {
      out.sql.push_back(c);
      ++i;
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Database>> OpenPostgres(
    const std::string& conninfo, const Options& options) {
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), &error);
  if (parsed == nullptr) {
    std::string message = error != nullptr ? OneLine(error) : "out of memory";
    PQfreemem(error);
    return absl::InvalidArgumentError(
        absl::StrCat("database url \"", RedactUrl(conninfo),
                     "\" is not a valid libpq connection URI: ", message));
  }
  PQconninfoFree(parsed);
  ASSIGN_OR_RETURN(ConnPtr first,
                   Connect(conninfo, RedactUrl(conninfo), options));
  return std::make_unique<PostgresDatabase>(conninfo, options,
                                            std::move(first));
}

}  // namespace mm::sql::internal
