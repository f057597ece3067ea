#include "common/sql/database.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/sql/backend.h"
#include "common/sql/sqlite_database.h"
#include "common/status.h"
#include "common/strings.h"

namespace mm::sql {
namespace {

// pg_advisory_xact_lock key serializing every Migrate step in a PostgreSQL
// database ("mm_migr" in ASCII), so concurrent replicas take turns.
constexpr int64_t kMigrationLockKey = 0x6d6d5f6d69677200;

const Value& NullValue() {
  static const Value* const kNull = new Value();
  return *kNull;
}

std::string DoubleToText(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  if (ec != std::errc()) return absl::StrCat(value);
  return std::string(buffer, end);
}

int64_t DoubleToInt(double d) {
  if (std::isnan(d)) return 0;
  // Saturate instead of the undefined behaviour of an out-of-range cast.
  if (d >= 9.2e18) return INT64_MAX;
  if (d <= -9.2e18) return INT64_MIN;
  return static_cast<int64_t>(d);
}

int64_t ValueToInt(const Value& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  if (const auto* d = std::get_if<double>(&v)) return DoubleToInt(*d);
  if (const auto* s = std::get_if<std::string>(&v)) {
    int64_t parsed = 0;
    if (absl::SimpleAtoi(*s, &parsed)) return parsed;
    double as_double = 0;
    if (absl::SimpleAtod(*s, &as_double)) return DoubleToInt(as_double);
  }
  return 0;
}

}  // namespace

std::string_view DialectName(Dialect dialect) {
  return dialect == Dialect::kSqlite ? "sqlite" : "postgres";
}

const Value& Row::value(int col) const {
  if (col < 0 || col >= size()) return NullValue();
  return values_[col];
}

bool Row::IsNull(int col) const {
  return std::holds_alternative<std::monostate>(value(col));
}

int64_t Row::Int(int col) const { return ValueToInt(value(col)); }

double Row::Double(int col) const {
  const Value& v = value(col);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  if (const auto* s = std::get_if<std::string>(&v)) {
    double parsed = 0;
    if (absl::SimpleAtod(*s, &parsed)) return parsed;
  }
  return 0.0;
}

std::string Row::Text(int col) const {
  const Value& v = value(col);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* i = std::get_if<int64_t>(&v)) return absl::StrCat(*i);
  if (const auto* d = std::get_if<double>(&v)) return DoubleToText(*d);
  return "";
}

std::optional<std::string> Row::OptionalText(int col) const {
  if (IsNull(col)) return std::nullopt;
  return Text(col);
}

std::string RedactUrl(std::string_view url) {
  // postgresql://user:password@host/... → postgresql://user:***@host/...
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::string(url);
  const size_t authority_start = scheme_end + 3;
  size_t authority_end = url.find_first_of("/?", authority_start);
  if (authority_end == std::string_view::npos) authority_end = url.size();
  std::string result(url);
  const size_t at = url.rfind('@', authority_end);
  if (at != std::string_view::npos && at >= authority_start) {
    const size_t colon = url.find(':', authority_start);
    if (colon != std::string_view::npos && colon < at) {
      result = absl::StrCat(AsAbsl(url.substr(0, colon + 1)), "***",
                            AsAbsl(url.substr(at)));
    }
  }
  // A password may also be given as a query parameter.
  const size_t password = result.find("password=");
  if (password != std::string::npos && password > 0 &&
      (result[password - 1] == '?' || result[password - 1] == '&')) {
    size_t value_end = result.find('&', password);
    if (value_end == std::string::npos) value_end = result.size();
    result.replace(password + 9, value_end - password - 9, "***");
  }
  return result;
}

namespace {

// Counts the calls that failed, by code, and forwards everything.
class MeteredDatabase final : public Database {
 public:
  MeteredDatabase(std::unique_ptr<Database> inner, metrics::Registry* registry)
      : inner_(std::move(inner)),
        errors_(registry->AddCounter(
            "mm_db_errors_total",
            "Database calls (statements, transactions, pings) that failed, "
            "by status code",
            {"code"})) {}

  Dialect dialect() const override { return inner_->dialect(); }
  absl::StatusOr<Result> Execute(std::string_view sql,
                                 const std::vector<Value>& params) override {
    absl::StatusOr<Result> result = inner_->Execute(sql, params);
    Count(result.status());
    return result;
  }
  absl::Status Transaction(
      absl::FunctionRef<absl::Status(Session&)> body) override {
    absl::Status status = inner_->Transaction(body);
    Count(status);
    return status;
  }
  absl::StatusOr<std::unique_ptr<Subscription>> Listen(
      std::string_view channel,
      std::function<void(std::optional<std::string>)> callback) override {
    auto subscription = inner_->Listen(channel, std::move(callback));
    Count(subscription.status());
    return subscription;
  }
  absl::Status Ping() override {
    absl::Status status = inner_->Ping();
    Count(status);
    return status;
  }

 private:
  void Count(const absl::Status& status) {
    if (status.ok()) return;
    errors_->WithLabels({absl::StatusCodeToString(status.code())})->Increment();
  }

  const std::unique_ptr<Database> inner_;
  metrics::Family<metrics::Counter>* const errors_;
};

}  // namespace

namespace internal {

absl::Status ValidateOptions(const Options& options) {
  if (options.pool_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("sql Options.pool_size is ",
                                                   options.pool_size,
                                                   "; it must be at least 1"));
  }
  if (options.acquire_timeout <= absl::ZeroDuration() ||
      options.connect_timeout <= absl::ZeroDuration() ||
      options.busy_timeout < absl::ZeroDuration() ||
      options.reconnect_backoff_min <= absl::ZeroDuration() ||
      options.reconnect_backoff_max < options.reconnect_backoff_min) {
    return absl::InvalidArgumentError(
        "sql Options: acquire_timeout, connect_timeout and "
        "reconnect_backoff_min must be positive, busy_timeout not negative, "
        "and reconnect_backoff_max at least reconnect_backoff_min");
  }
  return absl::OkStatus();
}

std::unique_ptr<Database> WithMetrics(std::unique_ptr<Database> db,
                                      const Options& options) {
  if (options.metrics == nullptr) return db;
  return std::make_unique<MeteredDatabase>(std::move(db), options.metrics);
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<Database>> Database::OpenSqlite(
    std::string_view path, const Options& options) {
  RETURN_IF_ERROR(internal::ValidateOptions(options));
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "no SQLite file named; give a path, or :memory:");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Database> db,
                   internal::OpenSqlite(std::string(path), options));
  return internal::WithMetrics(std::move(db), options);
}

absl::Status Database::Migrate(std::string_view std_component,
                               const std::vector<Migration>& migrations) {
  const absl::string_view component = AsAbsl(std_component);
  if (component.empty()) {
    return absl::InvalidArgumentError(
        "Migrate: component is empty; name the component owning the "
        "migrations (e.g. \"records\")");
  }
  const bool postgres = dialect() == Dialect::kPostgres;
  std::vector<const Migration*> ordered;
  std::set<int> versions;
  for (const Migration& m : migrations) {
    if (m.version <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("migration of ", component, " has version ", m.version,
                       "; versions must be positive"));
    }
    if (!versions.insert(m.version).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("migrations of ", component, " list version ", m.version,
                       " twice; every version must be unique"));
    }
    if ((postgres ? m.postgres_sql : m.sqlite_sql).empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "migration ", component, " v", m.version, " (", m.description,
          ") has no ", postgres ? "postgres_sql" : "sqlite_sql"));
    }
    ordered.push_back(&m);
  }
  std::sort(ordered.begin(), ordered.end(),
            [](const Migration* a, const Migration* b) {
              return a->version < b->version;
            });
  const int newest_known = versions.empty() ? 0 : *versions.rbegin();

  const std::string create_table =
      postgres ? "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 "component TEXT NOT NULL, version BIGINT NOT NULL, "
                 "description TEXT NOT NULL, "
                 "applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), "
                 "PRIMARY KEY (component, version))"
               : "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 "component TEXT NOT NULL, version INTEGER NOT NULL, "
                 "description TEXT NOT NULL, "
                 "applied_at TEXT NOT NULL DEFAULT "
                 "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), "
                 "PRIMARY KEY (component, version))";
  // Taken first in every step: the table creation itself races between
  // replicas otherwise (PostgreSQL's IF NOT EXISTS is not concurrency-safe).
  auto lock_and_prepare = [&](Session& session) -> absl::Status {
    if (postgres) {
      RETURN_IF_ERROR(
          session
              .Execute("SELECT pg_advisory_xact_lock(?)", {kMigrationLockKey})
              .status());
    }
    return session.Execute(create_table).status();
  };

  std::set<int64_t> applied;
  RETURN_IF_ERROR(Annotate(
      Transaction([&](Session& session) -> absl::Status {
        RETURN_IF_ERROR(lock_and_prepare(session));
        ASSIGN_OR_RETURN(
            Result result,
            session.Execute(
                "SELECT version FROM schema_migrations WHERE component = ?",
                {std::string(component)}));
        for (const Row& row : result.rows) applied.insert(row.Int(0));
        return absl::OkStatus();
      }),
      absl::StrCat("reading schema_migrations for ", component)));
  if (!applied.empty() && *applied.rbegin() > newest_known) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the database schema of ", component, " is at version ",
        *applied.rbegin(), " but this program knows versions up to ",
        newest_known, "; run a newer release of the program"));
  }

  for (const Migration* m : ordered) {
    if (applied.count(m->version) > 0) continue;
    const std::string what = absl::StrCat(
        "migration ", component, " v", m->version, " (", m->description, ")");
    RETURN_IF_ERROR(Annotate(
        Transaction([&](Session& session) -> absl::Status {
          RETURN_IF_ERROR(lock_and_prepare(session));
          // Another replica may have applied it while we waited for the lock.
          ASSIGN_OR_RETURN(
              Result already,
              session.Execute("SELECT 1 FROM schema_migrations "
                              "WHERE component = ? AND version = ?",
                              {std::string(component), int64_t{m->version}}));
          if (!already.rows.empty()) return absl::OkStatus();
          RETURN_IF_ERROR(session.ExecuteScript(postgres ? m->postgres_sql
                                                         : m->sqlite_sql));
          return session
              .Execute(
                  "INSERT INTO schema_migrations (component, version, "
                  "description) VALUES (?, ?, ?)",
                  {std::string(component), int64_t{m->version}, m->description})
              .status();
        }),
        what));
  }
  return absl::OkStatus();
}

}  // namespace mm::sql
