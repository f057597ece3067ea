#include "common/jobs/job_table.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/paging.h"
#include "common/status.h"

namespace mm::jobs {
namespace {

constexpr char kColumns[] =
    "id, sequence, request_id, state, priority, revision, lease_owner, "
    "lease_expires, token_owner, ended_ms, body";

// The shared schema; $P is the spec's prefix. The SQLite sequence lives in
// a one-row table: never MAX(sequence) + 1, or a pruned newest job's
// number would come back and hide the next job from pagers.
constexpr char kSqliteSchema[] = R"sql(
CREATE TABLE $P_jobs (
  id TEXT PRIMARY KEY,
  sequence INTEGER NOT NULL,
  request_id TEXT UNIQUE,
  state TEXT NOT NULL,
  priority INTEGER NOT NULL,
  revision INTEGER NOT NULL,
  lease_owner TEXT NOT NULL DEFAULT '',
  lease_expires INTEGER NOT NULL DEFAULT 0,
  token_owner TEXT NOT NULL DEFAULT '',
  ended_ms INTEGER NOT NULL DEFAULT 0,
  body TEXT NOT NULL);
CREATE INDEX $P_jobs_queue ON $P_jobs (state, priority, sequence);
CREATE INDEX $P_jobs_sequence ON $P_jobs (sequence);
CREATE TABLE $P_replicas (
  id TEXT PRIMARY KEY,
  heartbeat_ms INTEGER NOT NULL);
CREATE TABLE $P_sequence (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  value INTEGER NOT NULL);
INSERT INTO $P_sequence (id, value) VALUES (1, 0);
)sql";

constexpr char kPostgresSchema[] = R"sql(
CREATE SEQUENCE $P_jobs_sequence_seq;
CREATE TABLE $P_jobs (
  id TEXT PRIMARY KEY,
  sequence BIGINT NOT NULL,
  request_id TEXT UNIQUE,
  state TEXT NOT NULL,
  priority INTEGER NOT NULL,
  revision BIGINT NOT NULL,
  lease_owner TEXT NOT NULL DEFAULT '',
  lease_expires BIGINT NOT NULL DEFAULT 0,
  token_owner TEXT NOT NULL DEFAULT '',
  ended_ms BIGINT NOT NULL DEFAULT 0,
  body TEXT NOT NULL);
CREATE INDEX $P_jobs_queue ON $P_jobs (state, priority, sequence);
CREATE INDEX $P_jobs_sequence ON $P_jobs (sequence);
CREATE TABLE $P_replicas (
  id TEXT PRIMARY KEY,
  heartbeat_ms BIGINT NOT NULL);
)sql";

std::vector<sql::Migration> Migrations(const JobTableSpec& spec) {
  auto with_prefix = [&](const char* text) {
    return absl::StrReplaceAll(text, {{"$P", spec.prefix}});
  };
  std::vector<sql::Migration> migrations = {
      {1, absl::StrCat(spec.prefix, " jobs and replicas"),
       with_prefix(kSqliteSchema), with_prefix(kPostgresSchema)}};
  migrations.insert(migrations.end(), spec.extra_migrations.begin(),
                    spec.extra_migrations.end());
  return migrations;
}

absl::StatusOr<JobRow> RowFromResult(const sql::Row& result) {
  JobRow row;
  row.id = result.Text(0);
  row.sequence = result.Int(1);
  row.request_id = result.OptionalText(2).value_or("");
  row.state = result.Text(3);
  row.priority = static_cast<int>(result.Int(4));
  row.revision = result.Int(5);
  row.lease_owner = result.Text(6);
  row.lease_expires_ms = result.Int(7);
  row.token_owner = result.Text(8);
  row.ended_ms = result.Int(9);
  row.body = nlohmann::json::parse(result.Text(10), nullptr,
                                   /*allow_exceptions=*/false);
  if (!row.body.is_object()) {
    return absl::DataLossError(
        absl::StrCat("job ", row.id, " has a body that is not a JSON object"));
  }
  return row;
}

std::string ForUpdate(sql::Dialect dialect, bool skip_locked = false) {
  if (dialect != sql::Dialect::kPostgres) return "";
  return skip_locked ? " FOR UPDATE SKIP LOCKED" : " FOR UPDATE";
}

// "?, ?, ?" for `values`, appended to `params`.
std::string Marks(const std::vector<std::string>& values,
                  std::vector<sql::Value>& params) {
  std::vector<std::string> marks;
  for (const std::string& value : values) {
    marks.push_back("?");
    params.push_back(value);
  }
  return absl::StrJoin(marks, ", ");
}

}  // namespace

JobTable::JobTable(std::unique_ptr<sql::Database> db, std::string replica_id,
                   JobTableSpec spec, Clock* clock)
    : db_(std::move(db)),
      replica_id_(std::move(replica_id)),
      spec_(std::move(spec)),
      clock_(clock),
      jobs_(absl::StrCat(spec_.prefix, "_jobs")),
      replicas_(absl::StrCat(spec_.prefix, "_replicas")) {}

JobTable::~JobTable() {
  subscription_.reset();
  changes_.Interrupt();
}

absl::StatusOr<std::unique_ptr<JobTable>> JobTable::Open(
    const std::string& url, std::string replica_id, JobTableSpec spec,
    Clock* clock, metrics::Registry* metrics) {
  if (spec.prefix.empty() || spec.channel.empty() ||
      spec.claimable_states.empty() || spec.terminal_states.empty()) {
    return absl::InvalidArgumentError(
        "a job table needs a prefix, a channel, claimable and terminal "
        "states");
  }
  sql::Options options;
  // Workers, rpc handlers and the LISTEN thread at once.
  options.pool_size = 6;
  options.metrics = metrics;
  ASSIGN_OR_RETURN(std::unique_ptr<sql::Database> db,
                   sql::Database::Open(url, options));
  RETURN_IF_ERROR(db->Migrate(spec.component, Migrations(spec)));
  std::unique_ptr<JobTable> table(new JobTable(
      std::move(db), std::move(replica_id), std::move(spec), clock));
  if (table->dialect() == sql::Dialect::kPostgres) {
    JobTable* raw = table.get();
    ASSIGN_OR_RETURN(table->subscription_,
                     table->db_->Listen(table->spec_.channel, [raw](auto) {
                       raw->changes_.Notify();
                     }));
  }
  RETURN_IF_ERROR(table->Heartbeat());
  return table;
}

int64_t JobTable::NowMs() const { return absl::ToUnixMillis(clock_->Now()); }

std::string JobTable::Select() const {
  return absl::StrCat("SELECT ", kColumns, " FROM ", jobs_);
}

absl::StatusOr<JobRow> JobTable::Write(sql::Session& session, JobRow row,
                                       bool insert) {
  std::string body = row.body.dump();
  sql::Value request_id = row.request_id.empty() ? sql::Value(std::monostate{})
                                                 : sql::Value(row.request_id);
  if (insert) {
    row.revision = 1;
    ASSIGN_OR_RETURN(
        sql::Result ignored,
        session.Execute(
            absl::StrCat("INSERT INTO ", jobs_, " (", kColumns,
                         ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            {row.id, row.sequence, request_id, row.state, int64_t{row.priority},
             row.revision, row.lease_owner, row.lease_expires_ms,
             row.token_owner, row.ended_ms, body}));
  } else {
    row.revision += 1;
    ASSIGN_OR_RETURN(
        sql::Result ignored,
        session.Execute(
            absl::StrCat("UPDATE ", jobs_,
                         " SET state = ?, priority = ?, revision = ?, "
                         "lease_owner = ?, lease_expires = ?, token_owner = ?, "
                         "ended_ms = ?, body = ? WHERE id = ?"),
            {row.state, int64_t{row.priority}, row.revision, row.lease_owner,
             row.lease_expires_ms, row.token_owner, row.ended_ms, body,
             row.id}));
  }
  if (session.dialect() == sql::Dialect::kPostgres) {
    ASSIGN_OR_RETURN(sql::Result ignored,
                     session.Execute("SELECT pg_notify(?, CAST(? AS text))",
                                     {spec_.channel, row.id}));
  }
  return row;
}

absl::StatusOr<JobRow> JobTable::LockRow(sql::Session& session,
                                         const std::string& id) {
  ASSIGN_OR_RETURN(sql::Result result,
                   session.Execute(absl::StrCat(Select(), " WHERE id = ?",
                                                ForUpdate(session.dialect())),
                                   {id}));
  if (result.rows.empty()) {
    return absl::NotFoundError(absl::StrCat("no ", spec_.noun, " ", id));
  }
  return RowFromResult(result.rows[0]);
}

absl::StatusOr<JobRow> JobTable::Create(JobRow row) {
  JobRow written;
  RETURN_IF_ERROR(db_->Transaction([&](sql::Session& session) -> absl::Status {
    if (!row.request_id.empty()) {
      ASSIGN_OR_RETURN(
          sql::Result existing,
          session.Execute(absl::StrCat(Select(), " WHERE request_id = ?"),
                          {row.request_id}));
      if (!existing.rows.empty()) {
        ASSIGN_OR_RETURN(written, RowFromResult(existing.rows[0]));
        return absl::OkStatus();
      }
    }
    ASSIGN_OR_RETURN(
        sql::Result seq,
        session.Execute(
            session.dialect() == sql::Dialect::kPostgres
                ? absl::StrCat("SELECT nextval('", jobs_, "_sequence_seq')")
                : absl::StrCat("UPDATE ", spec_.prefix,
                               "_sequence SET value = value + 1 "
                               "RETURNING value")));
    row.sequence = seq.rows.at(0).Int(0);
    ASSIGN_OR_RETURN(written, Write(session, row, /*insert=*/true));
    return absl::OkStatus();
  }));
  changes_.Notify();
  return written;
}

absl::StatusOr<JobRow> JobTable::Get(const std::string& id) {
  ASSIGN_OR_RETURN(sql::Result result,
                   db_->Execute(absl::StrCat(Select(), " WHERE id = ?"), {id}));
  if (result.rows.empty()) {
    return absl::NotFoundError(absl::StrCat("no ", spec_.noun, " ", id));
  }
  return RowFromResult(result.rows[0]);
}

absl::StatusOr<std::vector<JobRow>> JobTable::List(
    const std::vector<std::string>& states, int64_t after_sequence, int limit) {
  std::string query = absl::StrCat(Select(), " WHERE sequence > ?");
  std::vector<sql::Value> params = {after_sequence};
  if (!states.empty()) {
    absl::StrAppend(&query, " AND state IN (", Marks(states, params), ")");
  }
  absl::StrAppend(&query, " ORDER BY sequence LIMIT ?");
  params.push_back(int64_t{limit});
  ASSIGN_OR_RETURN(sql::Result result, db_->Execute(query, params));
  std::vector<JobRow> rows;
  for (const sql::Row& found : result.rows) {
    ASSIGN_OR_RETURN(JobRow row, RowFromResult(found));
    rows.push_back(std::move(row));
  }
  return rows;
}

absl::StatusOr<JobPage> JobTable::ListPage(
    const std::vector<std::string>& states, int page_size,
    const std::string& page_token) {
  ASSIGN_OR_RETURN(int size, EffectivePageSize(page_size));
  // The token is bound to the set of states, in any order of the request.
  std::vector<std::string> sorted = states;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  std::string fingerprint =
      absl::StrCat(spec_.prefix, ":", absl::StrJoin(sorted, ","));
  ASSIGN_OR_RETURN(nlohmann::json after,
                   DecodePageToken(page_token, fingerprint));
  int64_t after_sequence = 0;
  if (!after.is_null()) {
    if (!after.is_number_integer() || after.get<int64_t>() < 0) {
      return absl::InvalidArgumentError("page_token is malformed");
    }
    after_sequence = after.get<int64_t>();
  }
  JobPage page;
  ASSIGN_OR_RETURN(page.rows, List(sorted, after_sequence, size + 1));
  if (static_cast<int>(page.rows.size()) > size) {
    page.rows.resize(size);
    page.next_page_token =
        EncodePageToken(fingerprint, page.rows.back().sequence);
  }
  return page;
}

absl::StatusOr<JobRow> JobTable::Update(
    const std::string& id, const std::function<absl::Status(JobRow&)>& change) {
  JobRow written;
  RETURN_IF_ERROR(db_->Transaction([&](sql::Session& session) -> absl::Status {
    ASSIGN_OR_RETURN(JobRow row, LockRow(session, id));
    RETURN_IF_ERROR(change(row));
    ASSIGN_OR_RETURN(written, Write(session, std::move(row), false));
    return absl::OkStatus();
  }));
  changes_.Notify();
  return written;
}

absl::StatusOr<JobRow> JobTable::UpdateLeased(
    const std::string& id,
    const std::function<absl::StatusOr<bool>(JobRow&)>& change) {
  JobRow current;
  bool wrote = false;
  RETURN_IF_ERROR(db_->Transaction([&](sql::Session& session) -> absl::Status {
    wrote = false;
    ASSIGN_OR_RETURN(current, LockRow(session, id));
    if (current.lease_owner != replica_id_) return absl::OkStatus();
    JobRow changed = current;
    ASSIGN_OR_RETURN(bool write, change(changed));
    if (!write) return absl::OkStatus();
    ASSIGN_OR_RETURN(current, Write(session, std::move(changed), false));
    wrote = true;
    return absl::OkStatus();
  }));
  if (wrote) changes_.Notify();
  return current;
}

absl::StatusOr<std::optional<JobRow>> JobTable::ClaimNext(
    absl::Duration lease, absl::Duration replica_ttl,
    const std::function<void(JobRow&)>& on_claim) {
  std::optional<JobRow> claimed;
  int64_t now = NowMs();
  RETURN_IF_ERROR(db_->Transaction([&](sql::Session& session) -> absl::Status {
    claimed.reset();
    std::vector<sql::Value> params;
    std::string states = Marks(spec_.claimable_states, params);
    params.push_back(now);
    params.push_back(replica_id_);
    params.push_back(now - absl::ToInt64Milliseconds(replica_ttl));
    ASSIGN_OR_RETURN(
        sql::Result result,
        session.Execute(
            absl::StrCat(Select(), " WHERE state IN (", states,
                         ") AND (lease_owner = '' OR lease_expires < ?) AND "
                         "(token_owner = '' OR token_owner = ? OR token_owner "
                         "NOT IN (SELECT id FROM ",
                         replicas_,
                         " WHERE heartbeat_ms >= ?)) "
                         "ORDER BY priority, sequence LIMIT 1",
                         ForUpdate(session.dialect(), /*skip_locked=*/true)),
            params));
    if (result.rows.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(JobRow row, RowFromResult(result.rows[0]));
    if (!spec_.claimed_state.empty()) row.state = spec_.claimed_state;
    row.lease_owner = replica_id_;
    row.lease_expires_ms = now + absl::ToInt64Milliseconds(lease);
    if (on_claim) on_claim(row);
    ASSIGN_OR_RETURN(JobRow written, Write(session, std::move(row), false));
    claimed = std::move(written);
    return absl::OkStatus();
  }));
  if (claimed.has_value()) changes_.Notify();
  return claimed;
}

int64_t JobTable::LeaseExpiryMs(absl::Duration lease) const {
  return NowMs() + absl::ToInt64Milliseconds(lease);
}

void JobTable::RenewLease(JobRow& row, absl::Duration lease) const {
  row.lease_owner = replica_id_;
  row.lease_expires_ms = LeaseExpiryMs(lease);
}

void JobTable::ClearLease(JobRow& row) {
  row.lease_owner.clear();
  row.lease_expires_ms = 0;
}

absl::Status JobTable::ReleaseLease(const std::string& id) {
  ASSIGN_OR_RETURN(sql::Result ignored,
                   db_->Execute(absl::StrCat("UPDATE ", jobs_,
                                             " SET lease_expires = 0 WHERE id "
                                             "= ? AND lease_owner = ?"),
                                {id, replica_id_}));
  return absl::OkStatus();
}

absl::Status JobTable::ExpireAllLeases() {
  ASSIGN_OR_RETURN(
      sql::Result ignored,
      spec_.claimed_state.empty()
          ? db_->Execute(absl::StrCat("UPDATE ", jobs_,
                                      " SET lease_expires = 0 WHERE "
                                      "lease_owner <> ''"),
                         {})
          : db_->Execute(absl::StrCat("UPDATE ", jobs_,
                                      " SET lease_expires = 0 WHERE state = ?"),
                         {spec_.claimed_state}));
  // Forgetting the other replicas also frees the jobs whose token was in
  // their memory (ClaimNext skips only live owners).
  ASSIGN_OR_RETURN(
      sql::Result cleared,
      db_->Execute(absl::StrCat("DELETE FROM ", replicas_, " WHERE id <> ?"),
                   {replica_id_}));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<JobRow>> JobTable::Prune(absl::Time ended_before) {
  std::vector<JobRow> pruned;
  RETURN_IF_ERROR(db_->Transaction([&](sql::Session& session) -> absl::Status {
    pruned.clear();
    std::vector<sql::Value> params;
    std::string where =
        absl::StrCat(" WHERE state IN (", Marks(spec_.terminal_states, params),
                     ") AND ended_ms < ?");
    // InfiniteFuture saturates to the largest millisecond count: all.
    params.push_back(absl::ToUnixMillis(ended_before));
    ASSIGN_OR_RETURN(
        sql::Result result,
        session.Execute(absl::StrCat(Select(), where, " ORDER BY sequence"),
                        params));
    for (const sql::Row& found : result.rows) {
      ASSIGN_OR_RETURN(JobRow row, RowFromResult(found));
      pruned.push_back(std::move(row));
    }
    ASSIGN_OR_RETURN(
        sql::Result deleted,
        session.Execute(absl::StrCat("DELETE FROM ", jobs_, where), params));
    if (!pruned.empty() && session.dialect() == sql::Dialect::kPostgres) {
      // Watches of these jobs on other replicas end now (NOT_FOUND), not
      // at their next periodic look.
      ASSIGN_OR_RETURN(
          sql::Result ignored,
          session.Execute("SELECT pg_notify(?, '')", {spec_.channel}));
    }
    return absl::OkStatus();
  }));
  if (!pruned.empty()) changes_.Notify();
  return pruned;
}

absl::Status JobTable::Heartbeat() {
  ASSIGN_OR_RETURN(
      sql::Result ignored,
      db_->Execute(absl::StrCat("INSERT INTO ", replicas_,
                                " (id, heartbeat_ms) VALUES (?, ?) ON "
                                "CONFLICT (id) DO UPDATE SET heartbeat_ms = "
                                "excluded.heartbeat_ms"),
                   {replica_id_, NowMs()}));
  return absl::OkStatus();
}

absl::StatusOr<JobCounts> JobTable::Count() {
  std::vector<sql::Value> params = {NowMs()};
  ASSIGN_OR_RETURN(
      sql::Result result,
      db_->Execute(absl::StrCat("SELECT state, COUNT(*), CAST(SUM(CASE WHEN "
                                "lease_owner = '' OR lease_expires < ? THEN 1 "
                                "ELSE 0 END) AS BIGINT) FROM ",
                                jobs_, " GROUP BY state"),
                   params));
  JobCounts counts;
  for (const sql::Row& row : result.rows) {
    std::string state = row.Text(0);
    counts.by_state[state] = row.Int(1);
    if (std::find(spec_.claimable_states.begin(), spec_.claimable_states.end(),
                  state) != spec_.claimable_states.end()) {
      counts.unclaimed += row.Int(2);
    }
  }
  return counts;
}

absl::Status JobTable::Ping() {
  ASSIGN_OR_RETURN(sql::Result ignored, db_->Execute("SELECT 1"));
  return absl::OkStatus();
}

}  // namespace mm::jobs
