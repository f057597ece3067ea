#include "services/records/sql_record_store.h"

#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/sql/database.h"
#include "common/status.h"
#include "services/records/store_util.h"

namespace mm::records {
namespace {

using nlohmann::json;
using sql::Dialect;
using sql::Value;

constexpr char kNotifyChannel[] = "mm_records_changes";
// Trim the change log every this many revisions.
constexpr int64_t kTrimEvery = 1000;

const std::vector<sql::Migration>& Migrations() {
  static const auto* migrations = new std::vector<sql::Migration>{
      {1, "models table, change log, store state, create requests",
       // SQLite: JSON text plus virtual generated columns (spec §3).
       R"sql(
CREATE TABLE models (
  id TEXT NOT NULL PRIMARY KEY,
  config TEXT NOT NULL,
  revision INTEGER NOT NULL,
  created_at INTEGER NOT NULL
    DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)),
  updated_at INTEGER NOT NULL
    DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)),
  hash TEXT GENERATED ALWAYS AS (json_extract(config, '$.hash')) VIRTUAL,
  base TEXT GENERATED ALWAYS AS (json_extract(config, '$.base')) VIRTUAL NOT NULL,
  type TEXT GENERATED ALWAYS AS (json_extract(config, '$.type')) VIRTUAL NOT NULL,
  path TEXT GENERATED ALWAYS AS (json_extract(config, '$.path')) VIRTUAL NOT NULL,
  format TEXT GENERATED ALWAYS AS (json_extract(config, '$.format')) VIRTUAL NOT NULL,
  name TEXT GENERATED ALWAYS AS (json_extract(config, '$.name')) VIRTUAL NOT NULL,
  name_lower TEXT GENERATED ALWAYS AS (lower(json_extract(config, '$.name'))) VIRTUAL,
  description TEXT GENERATED ALWAYS AS (json_extract(config, '$.description')) VIRTUAL,
  source TEXT GENERATED ALWAYS AS (json_extract(config, '$.source')) VIRTUAL,
  source_type TEXT GENERATED ALWAYS AS (json_extract(config, '$.source_type')) VIRTUAL,
  file_size INTEGER GENERATED ALWAYS AS (json_extract(config, '$.file_size')) VIRTUAL,
  has_compatible_bases INTEGER GENERATED ALWAYS AS
    (json_array_length(config, '$.compatible_bases') > 0) VIRTUAL
);
CREATE UNIQUE INDEX models_path_unique ON models(path);
CREATE INDEX models_with_compatible_bases ON models(has_compatible_bases)
  WHERE has_compatible_bases = 1;
CREATE INDEX models_base ON models(base);
CREATE INDEX models_type ON models(type);
CREATE INDEX models_name ON models(name);
CREATE INDEX models_hash ON models(hash);
CREATE INDEX models_default_order ON models(type, base, name_lower, format, id);
CREATE TABLE model_changes (
  revision INTEGER NOT NULL PRIMARY KEY,
  key TEXT NOT NULL,
  change TEXT NOT NULL,
  config TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE model_store_state (
  id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
  revision INTEGER NOT NULL,
  trimmed_through INTEGER NOT NULL
);
INSERT INTO model_store_state (id, revision, trimmed_through) VALUES (1, 0, 0);
CREATE TABLE model_create_requests (
  request_id TEXT NOT NULL PRIMARY KEY,
  key TEXT NOT NULL,
  created_at INTEGER NOT NULL
    DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER))
);
)sql",
       // PostgreSQL: jsonb plus stored generated columns; "C" collation so
       // ordering and lower() match SQLite byte for byte.
       R"sql(
CREATE TABLE models (
  id text PRIMARY KEY,
  config jsonb NOT NULL,
  revision bigint NOT NULL,
  created_at bigint NOT NULL
    DEFAULT (floor(extract(epoch FROM clock_timestamp()) * 1000000))::bigint,
  updated_at bigint NOT NULL
    DEFAULT (floor(extract(epoch FROM clock_timestamp()) * 1000000))::bigint,
  hash text GENERATED ALWAYS AS (config->>'hash') STORED,
  base text COLLATE "C" GENERATED ALWAYS AS (config->>'base') STORED NOT NULL,
  type text COLLATE "C" GENERATED ALWAYS AS (config->>'type') STORED NOT NULL,
  path text COLLATE "C" GENERATED ALWAYS AS (config->>'path') STORED NOT NULL,
  format text COLLATE "C" GENERATED ALWAYS AS (config->>'format') STORED NOT NULL,
  name text COLLATE "C" GENERATED ALWAYS AS (config->>'name') STORED NOT NULL,
  name_lower text COLLATE "C"
    GENERATED ALWAYS AS (lower((config->>'name') COLLATE "C")) STORED,
  description text GENERATED ALWAYS AS (config->>'description') STORED,
  source text GENERATED ALWAYS AS (config->>'source') STORED,
  source_type text GENERATED ALWAYS AS (config->>'source_type') STORED,
  file_size bigint GENERATED ALWAYS AS ((config->>'file_size')::bigint) STORED,
  has_compatible_bases boolean GENERATED ALWAYS AS (
    CASE WHEN jsonb_typeof(config->'compatible_bases') = 'array'
         THEN jsonb_array_length(config->'compatible_bases') > 0
         ELSE false END) STORED
);
CREATE UNIQUE INDEX models_path_unique ON models(path);
CREATE INDEX models_with_compatible_bases ON models(has_compatible_bases)
  WHERE has_compatible_bases;
CREATE INDEX models_base ON models(base);
CREATE INDEX models_type ON models(type);
CREATE INDEX models_name ON models(name);
CREATE INDEX models_hash ON models(hash);
CREATE INDEX models_default_order ON models(type, base, name_lower, format, id COLLATE "C");
CREATE INDEX models_tags ON models USING gin ((config->'tags'));
CREATE TABLE model_changes (
  revision bigint PRIMARY KEY,
  key text NOT NULL,
  change text NOT NULL,
  config jsonb NOT NULL,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);
CREATE TABLE model_store_state (
  id integer PRIMARY KEY CHECK (id = 1),
  revision bigint NOT NULL,
  trimmed_through bigint NOT NULL
);
INSERT INTO model_store_state (id, revision, trimmed_through) VALUES (1, 0, 0);
CREATE TABLE model_create_requests (
  request_id text PRIMARY KEY,
  key text NOT NULL,
  created_at bigint NOT NULL
    DEFAULT (floor(extract(epoch FROM clock_timestamp()) * 1000000))::bigint
);
)sql"},
  };
  return *migrations;
}

std::string_view ChangeName(ChangeType type) {
  switch (type) {
    case ChangeType::kAdded:
      return "ADDED";
    case ChangeType::kModified:
      return "MODIFIED";
    case ChangeType::kDeleted:
      return "DELETED";
  }
  return "MODIFIED";
}

ChangeType ParseChange(const std::string& text) {
  if (text == "ADDED") return ChangeType::kAdded;
  if (text == "DELETED") return ChangeType::kDeleted;
  return ChangeType::kModified;
}

// The columns each ordering sorts by (the key, "id", is appended), and
// whether each holds an integer.
struct SortColumn {
  const char* column;
  bool integer;
};

std::vector<SortColumn> SortColumns(ModelOrder order) {
  switch (order) {
    case ModelOrder::kDefault:
      return {{"type", false},
              {"base", false},
              {"name_lower", false},
              {"format", false}};
    case ModelOrder::kName:
      return {{"name_lower", false}};
    case ModelOrder::kBase:
      return {{"base", false}};
    case ModelOrder::kType:
      return {{"type", false}};
    case ModelOrder::kFormat:
      return {{"format", false}};
    case ModelOrder::kSize:
      return {{"file_size", true}};
    case ModelOrder::kCreatedAt:
      return {{"created_at", true}};
    case ModelOrder::kUpdatedAt:
      return {{"updated_at", true}};
    case ModelOrder::kPath:
      return {{"path", false}};
  }
  return {};
}

class SqlRecordStore final : public RecordStore {
 public:
  explicit SqlRecordStore(std::unique_ptr<sql::Database> db)
      : db_(std::move(db)) {}

  ~SqlRecordStore() override {
    subscription_.reset();
    notifier_.Interrupt();
  }

  absl::Status Init() {
    RETURN_IF_ERROR(db_->Migrate("records", Migrations()));
    if (db_->dialect() == Dialect::kPostgres) {
      ASSIGN_OR_RETURN(
          subscription_,
          db_->Listen(kNotifyChannel, [this](std::optional<std::string> p) {
            int64_t revision = 0;
            if (p && absl::SimpleAtoi(*p, &revision)) {
              notifier_.Notify(revision);
            } else {
              notifier_.Poke();
            }
          }));
    }
    return absl::OkStatus();
  }

  std::string backend() const override {
    return db_->dialect() == Dialect::kPostgres ? "postgresql" : "sqlite";
  }
  std::string schema_version() const override {
    return absl::StrCat(Migrations().back().version);
  }

  absl::StatusOr<StoredModel> Insert(const json& config,
                                     const std::string& request_id) override {
    std::string key = config.value("key", "");
    StoredModel out;
    int64_t revision = 0;
    absl::Status status = db_->Transaction([&](sql::Session& s)
                                               -> absl::Status {
      if (!request_id.empty()) {
        ASSIGN_OR_RETURN(
            sql::Result earlier,
            s.Execute(
                "SELECT key FROM model_create_requests WHERE request_id = ?",
                {request_id}));
        if (!earlier.rows.empty()) {
          ASSIGN_OR_RETURN(out, GetIn(s, earlier.rows[0].Text(0)));
          revision = 0;  // nothing new committed
          return absl::OkStatus();
        }
      }
      ASSIGN_OR_RETURN(revision, NextRevision(s));
      ASSIGN_OR_RETURN(
          sql::Result inserted,
          s.Execute(absl::StrCat("INSERT INTO models (id, config, revision) "
                                 "VALUES (?, ",
                                 JsonParam(),
                                 ", ?) RETURNING created_at, "
                                 "updated_at"),
                    {key, config.dump(), revision}));
      out.config = config;
      out.revision = revision;
      out.created_at_us = inserted.rows.at(0).Int(0);
      out.updated_at_us = inserted.rows.at(0).Int(1);
      RETURN_IF_ERROR(LogChange(s, ChangeType::kAdded, out));
      if (!request_id.empty()) {
        RETURN_IF_ERROR(
            s.Execute("INSERT INTO model_create_requests (request_id, key) "
                      "VALUES (?, ?)",
                      {request_id, key})
                .status());
      }
      return absl::OkStatus();
    });
    if (absl::IsAlreadyExists(status)) return DuplicateError(status, config);
    RETURN_IF_ERROR(status);
    if (revision > 0) notifier_.Notify(revision);
    return out;
  }

  absl::StatusOr<StoredModel> Get(const std::string& key) override {
    ASSIGN_OR_RETURN(sql::Result result, db_->Execute(kSelectByKey, {key}));
    if (result.rows.empty()) return UnknownKey(key);
    return FromRow(result.rows[0]);
  }

  absl::StatusOr<StoredModel> Replace(const std::string& key,
                                      const json& config,
                                      int64_t expected_revision) override {
    StoredModel out;
    absl::Status status =
        db_->Transaction([&](sql::Session& s) -> absl::Status {
          ASSIGN_OR_RETURN(int64_t revision, NextRevision(s));
          ASSIGN_OR_RETURN(StoredModel current, GetIn(s, key));
          RETURN_IF_ERROR(CheckRevision(key, current, expected_revision));
          ASSIGN_OR_RETURN(
              sql::Result updated,
              s.Execute(absl::StrCat("UPDATE models SET config = ", JsonParam(),
                                     ", revision = ?, updated_at = ", NowExpr(),
                                     " WHERE id = ? RETURNING created_at, "
                                     "updated_at"),
                        {config.dump(), revision, key}));
          out.config = config;
          out.revision = revision;
          out.created_at_us = updated.rows.at(0).Int(0);
          out.updated_at_us = updated.rows.at(0).Int(1);
          return LogChange(s, ChangeType::kModified, out);
        });
    if (absl::IsAlreadyExists(status)) return DuplicateError(status, config);
    RETURN_IF_ERROR(status);
    notifier_.Notify(out.revision);
    return out;
  }

  absl::StatusOr<int64_t> Delete(const std::string& key,
                                 int64_t expected_revision) override {
    int64_t revision = 0;
    RETURN_IF_ERROR(db_->Transaction([&](sql::Session& s) -> absl::Status {
      ASSIGN_OR_RETURN(revision, NextRevision(s));
      ASSIGN_OR_RETURN(StoredModel current, GetIn(s, key));
      RETURN_IF_ERROR(CheckRevision(key, current, expected_revision));
      RETURN_IF_ERROR(
          s.Execute("DELETE FROM models WHERE id = ?", {key}).status());
      current.revision = revision;
      return LogChange(s, ChangeType::kDeleted, current);
    }));
    notifier_.Notify(revision);
    return revision;
  }

  absl::StatusOr<ModelPage> List(const ModelQuery& query) override {
    ASSIGN_OR_RETURN(json after, DecodePageToken(query));
    bool pg = db_->dialect() == Dialect::kPostgres;
    // Filters other than base, shared by both branches below.
    std::vector<std::string> where;
    std::vector<Value> params;
    auto add = [&](const char* clause, const std::string& value) {
      where.push_back(clause);
      params.push_back(value);
    };
    if (query.name) add("name = ?", *query.name);
    if (query.type) add("type = ?", *query.type);
    if (query.format) add("format = ?", *query.format);
    if (query.path) add("path = ?", *query.path);
    if (query.hash) add("hash = ?", *query.hash);
    if (!query.tags.empty()) {
      if (pg) {
        add("config->'tags' @> CAST(? AS jsonb)", json(query.tags).dump());
      } else {
        for (const std::string& tag : query.tags) {
          add("EXISTS (SELECT 1 FROM json_each(models.config, '$.tags') "
              "WHERE value = ?)",
              tag);
        }
      }
    }
    // Sort columns, selected as s0..sN so the merged branches can be
    // ordered by them; text compares in the "C" collation on PostgreSQL.
    std::vector<SortColumn> columns = SortColumns(query.order);
    columns.push_back({"id", false});
    std::vector<std::string> selected;
    std::vector<std::string> aliases;
    std::vector<std::string> tuple_right;
    for (size_t i = 0; i < columns.size(); ++i) {
      const SortColumn& c = columns[i];
      std::string term = (pg && !c.integer)
                             ? absl::StrCat(c.column, " COLLATE \"C\"")
                             : std::string(c.column);
      selected.push_back(absl::StrCat(term, " AS s", i));
      aliases.push_back(absl::StrCat("s", i));
      tuple_right.push_back(c.integer ? "CAST(? AS bigint)"
                                      : "CAST(? AS text)");
    }
    std::vector<std::string> order_terms;
    for (const std::string& alias : aliases) {
      order_terms.push_back(
          absl::StrCat(alias, query.descending ? " DESC" : " ASC"));
    }
    std::string order_by = absl::StrJoin(order_terms, ", ");
    std::string limit = absl::StrCat(" LIMIT ", query.page_size + 1);
    if (!after.is_null()) {
      std::vector<std::string> tuple_left;
      for (const std::string& item : selected) {
        tuple_left.push_back(item.substr(0, item.rfind(" AS ")));
      }
      where.push_back(absl::StrCat("(", absl::StrJoin(tuple_left, ", "), ") ",
                                   query.descending ? "<" : ">", " (",
                                   absl::StrJoin(tuple_right, ", "), ")"));
      for (const json& v : after) {
        if (v.is_number_integer()) {
          params.push_back(v.get<int64_t>());
        } else {
          params.push_back(v.get<std::string>());
        }
      }
    }
    std::string select =
        absl::StrCat("SELECT id, config, revision, created_at, updated_at, ",
                     absl::StrJoin(selected, ", "), " FROM models");
    auto branch = [&](const std::vector<std::string>& extra,
                      const char* index_hint) {
      std::vector<std::string> all = extra;
      all.insert(all.end(), where.begin(), where.end());
      std::string sql = absl::StrCat(select, index_hint);
      if (!all.empty())
        absl::StrAppend(&sql, " WHERE ", absl::StrJoin(all, " AND "));
      absl::StrAppend(&sql, " ORDER BY ", order_by, limit);
      return sql;
    };
    std::string statement;
    std::vector<Value> bound;
    if (!query.base) {
      statement = branch({}, "");
      bound = params;
    } else {
      // `base = ?` OR "base is among compatible_bases" in one WHERE would
      // keep the planner from using the (type, base, ...) index. Two
      // branches instead: the indexed one, and the (few) records that list
      // compatible bases; each is already in order, so the merge reads at
      // most two pages.
      std::string compatible =
          pg ? "config->'compatible_bases' @> jsonb_build_array(CAST(? AS "
               "text))"
             : "EXISTS (SELECT 1 FROM json_each(models.config, "
               "'$.compatible_bases') WHERE value = ?)";
      statement = absl::StrCat(
          "SELECT * FROM (", branch({"base = ?"}, ""),
          ") AS by_base UNION ALL SELECT * FROM (",
          // SQLite would rather walk the type index and test every row;
          // the partial index holds only the records that list bases.
          branch({pg ? "has_compatible_bases" : "has_compatible_bases = 1",
                  "base <> ?", compatible},
                 pg ? "" : " INDEXED BY models_with_compatible_bases"),
          ") AS by_compatible ORDER BY ", order_by, limit);
      bound.push_back(*query.base);
      bound.insert(bound.end(), params.begin(), params.end());
      bound.push_back(*query.base);
      bound.push_back(*query.base);
      bound.insert(bound.end(), params.begin(), params.end());
    }

    ModelPage page;
    ASSIGN_OR_RETURN(page.revision, CurrentRevision());
    ASSIGN_OR_RETURN(sql::Result result, db_->Execute(statement, bound));
    for (const sql::Row& row : result.rows) {
      if (static_cast<int>(page.models.size()) == query.page_size) {
        page.next_page_token =
            EncodePageToken(query, SortValues(page.models.back(), query.order));
        break;
      }
      ASSIGN_OR_RETURN(StoredModel model, FromRow(row));
      page.models.push_back(std::move(model));
    }
    return page;
  }

  absl::StatusOr<std::vector<ModelChange>> ChangesSince(int64_t after,
                                                        int limit) override {
    ASSIGN_OR_RETURN(
        sql::Result state,
        db_->Execute(
            "SELECT trimmed_through FROM model_store_state WHERE id = 1"));
    int64_t trimmed_through = state.rows.at(0).Int(0);
    if (after < trimmed_through) {
      return absl::OutOfRangeError(
          absl::StrCat("changes after revision ", after,
                       " are no longer kept (history starts after revision ",
                       trimmed_through,
                       "); list the models again and watch from the "
                       "revision of that listing"));
    }
    ASSIGN_OR_RETURN(
        sql::Result rows,
        db_->Execute("SELECT revision, key, change, config, created_at, "
                     "updated_at FROM model_changes WHERE revision > ? "
                     "ORDER BY revision LIMIT ?",
                     {after, static_cast<int64_t>(limit)}));
    std::vector<ModelChange> changes;
    for (const sql::Row& row : rows.rows) {
      ModelChange change;
      change.revision = row.Int(0);
      change.type = ParseChange(row.Text(2));
      change.model.config = json::parse(row.Text(3), nullptr, false);
      if (change.model.config.is_discarded()) {
        return absl::DataLossError(absl::StrCat(
            "change log entry ", change.revision, " holds invalid JSON"));
      }
      change.model.revision = change.revision;
      change.model.created_at_us = row.Int(4);
      change.model.updated_at_us = row.Int(5);
      changes.push_back(std::move(change));
    }
    return changes;
  }

  absl::StatusOr<int64_t> CurrentRevision() override {
    ASSIGN_OR_RETURN(
        sql::Result state,
        db_->Execute("SELECT revision FROM model_store_state WHERE id = 1"));
    return state.rows.at(0).Int(0);
  }

  void WaitForChange(int64_t after, absl::Time deadline) override {
    notifier_.Wait(after, deadline);
  }

  void Interrupt() override { notifier_.Interrupt(); }

  absl::Status Ping() override { return db_->Ping(); }

 private:
  static constexpr char kSelectByKey[] =
      "SELECT id, config, revision, created_at, updated_at FROM models "
      "WHERE id = ?";

  // The placeholder for a config parameter: jsonb needs a cast.
  std::string JsonParam() const {
    return db_->dialect() == Dialect::kPostgres ? "CAST(? AS jsonb)" : "?";
  }

  std::string NowExpr() const {
    return db_->dialect() == Dialect::kPostgres
               ? "(floor(extract(epoch FROM clock_timestamp()) * "
                 "1000000))::bigint"
               : "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS "
                 "INTEGER)";
  }

  static absl::Status UnknownKey(const std::string& key) {
    return absl::NotFoundError(absl::StrCat("unknown model key '", key, "'"));
  }

  static absl::StatusOr<StoredModel> FromRow(const sql::Row& row) {
    StoredModel model;
    // Parsed where it lies: a copy of the text would be thrown away.
    const auto* text = std::get_if<std::string>(&row.value(1));
    model.config = text != nullptr ? json::parse(*text, nullptr, false)
                                   : json(json::value_t::discarded);
    if (model.config.is_discarded() || !model.config.is_object()) {
      return absl::DataLossError(
          absl::StrCat("stored record '", row.Text(0), "' holds invalid JSON"));
    }
    model.revision = row.Int(2);
    model.created_at_us = row.Int(3);
    model.updated_at_us = row.Int(4);
    return model;
  }

  absl::StatusOr<StoredModel> GetIn(sql::Session& s, const std::string& key) {
    ASSIGN_OR_RETURN(sql::Result result, s.Execute(kSelectByKey, {key}));
    if (result.rows.empty()) return UnknownKey(key);
    return FromRow(result.rows[0]);
  }

  static absl::Status CheckRevision(const std::string& key,
                                    const StoredModel& current,
                                    int64_t expected) {
    if (expected > 0 && current.revision != expected) {
      return absl::AbortedError(
          absl::StrCat("model '", key, "' changed since revision ", expected,
                       " (it is now at revision ", current.revision,
                       "); read it again and retry"));
    }
    return absl::OkStatus();
  }

  // Takes the next store revision. On PostgreSQL the row lock this takes is
  // held until commit, so writers on every replica commit in revision order.
  absl::StatusOr<int64_t> NextRevision(sql::Session& s) {
    ASSIGN_OR_RETURN(sql::Result result,
                     s.Execute("UPDATE model_store_state SET revision = "
                               "revision + 1 WHERE id = 1 RETURNING revision"));
    return result.rows.at(0).Int(0);
  }

  absl::Status LogChange(sql::Session& s, ChangeType type,
                         const StoredModel& model) {
    RETURN_IF_ERROR(
        s.Execute(absl::StrCat("INSERT INTO model_changes (revision, key, "
                               "change, config, created_at, updated_at) "
                               "VALUES (?, ?, ?, ",
                               JsonParam(), ", ?, ?)"),
                  {model.revision, model.config.value("key", ""),
                   std::string(ChangeName(type)), model.config.dump(),
                   model.created_at_us, model.updated_at_us})
            .status());
    if (model.revision % kTrimEvery == 0 &&
        model.revision > kChangeLogRetention) {
      int64_t through = model.revision - kChangeLogRetention;
      RETURN_IF_ERROR(
          s.Execute("DELETE FROM model_changes WHERE revision <= ?", {through})
              .status());
      RETURN_IF_ERROR(s.Execute("UPDATE model_store_state SET "
                                "trimmed_through = ? WHERE id = 1",
                                {through})
                          .status());
    }
    if (db_->dialect() == Dialect::kPostgres) {
      RETURN_IF_ERROR(
          s.Execute("SELECT pg_notify(?, ?)",
                    {std::string(kNotifyChannel), absl::StrCat(model.revision)})
              .status());
    }
    return absl::OkStatus();
  }

  // Turns the database's unique-violation message into one naming the field
  // and value that clash.
  static absl::Status DuplicateError(const absl::Status& status,
                                     const json& config) {
    if (absl::StrContains(status.message(), "path")) {
      return absl::AlreadyExistsError(absl::StrCat(
          "a model with path '", config.value("path", ""), "' already exists"));
    }
    if (absl::StrContains(status.message(), "id") ||
        absl::StrContains(status.message(), "pkey")) {
      return absl::AlreadyExistsError(absl::StrCat(
          "a model with key '", config.value("key", ""), "' already exists"));
    }
    return status;
  }

  std::unique_ptr<sql::Database> db_;
  ChangeNotifier notifier_;
  std::unique_ptr<sql::Subscription> subscription_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RecordStore>> OpenSqlRecordStore(
    const std::string& url, metrics::Registry* metrics) {
  sql::Options options;
  options.metrics = metrics;
  // Enough connections that gRPC's handler threads rarely queue for one;
  // PostgreSQL's default max_connections (100) leaves room for replicas.
  options.pool_size = 8;
  ASSIGN_OR_RETURN(std::unique_ptr<sql::Database> db,
                   sql::Database::Open(url, options));
  auto store = std::make_unique<SqlRecordStore>(std::move(db));
  RETURN_IF_ERROR(store->Init());
  return store;
}

}  // namespace mm::records
