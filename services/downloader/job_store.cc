#include "services/downloader/job_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status.h"

namespace mm::downloader {
namespace {

constexpr char kChannel[] = "mm_downloads";
constexpr char kColumns[] =
    "id, sequence, request_id, state, priority, revision, lease_owner, "
    "lease_expires, token_owner, ended_ms, body";

const std::vector<sql::Migration>& Migrations() {
  static const std::vector<sql::Migration>* migrations =
      new std::vector<sql::Migration>{
          {1, "download jobs and replicas",
           R"sql(
CREATE TABLE download_jobs (
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
CREATE INDEX download_jobs_queue ON download_jobs (state, priority, sequence);
CREATE INDEX download_jobs_sequence ON download_jobs (sequence);
CREATE TABLE download_replicas (
  id TEXT PRIMARY KEY,
  heartbeat_ms INTEGER NOT NULL);
CREATE TABLE download_sequence (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  value INTEGER NOT NULL);
INSERT INTO download_sequence (id, value) VALUES (1, 0);
)sql",
           R"sql(
CREATE SEQUENCE download_jobs_sequence_seq;
CREATE TABLE download_jobs (
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
CREATE INDEX download_jobs_queue ON download_jobs (state, priority, sequence);
CREATE INDEX download_jobs_sequence ON download_jobs (sequence);
CREATE TABLE download_replicas (
  id TEXT PRIMARY KEY,
  heartbeat_ms BIGINT NOT NULL);
)sql"},
      };
  return *migrations;
}

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

absl::StatusOr<Job> JobFromRow(const sql::Row& row) {
  Job job;
  job.id = row.Text(0);
  job.sequence = row.Int(1);
  job.request_id = row.OptionalText(2).value_or("");
  std::optional<JobState> state = StateFromName(row.Text(3));
  if (!state.has_value()) {
    return absl::DataLossError(
        absl::StrCat("job ", job.id, " has an unknown state ", row.Text(3)));
  }
  job.state = *state;
  job.priority = static_cast<int>(row.Int(4));
  job.revision = row.Int(5);
  job.lease_owner = row.Text(6);
  job.lease_expires_ms = row.Int(7);
  job.token_owner = row.Text(8);
  int64_t ended = row.Int(9);
  job.ended = ended == 0 ? absl::InfinitePast() : absl::FromUnixMillis(ended);
  nlohmann::json body =
      nlohmann::json::parse(row.Text(10), nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    return absl::DataLossError(
        absl::StrCat("job ", job.id, " has a body that is not JSON"));
  }
  RETURN_IF_ERROR(JobBodyFromJson(body, job));
  return job;
}

std::string ForUpdate(sql::Dialect dialect, bool skip_locked = false) {
  if (dialect != sql::Dialect::kPostgres) return "";
  return skip_locked ? " FOR UPDATE SKIP LOCKED" : " FOR UPDATE";
}

}  // namespace

void ChangeSignal::Notify() {
  MutexLock lock(&mu_);
  ++version_;
}

int64_t ChangeSignal::version() const {
  MutexLock lock(&mu_);
  return version_;
}

void ChangeSignal::WaitForChange(int64_t seen, absl::Time deadline) const {
  MutexLock lock(&mu_);
  mu_.AwaitWithDeadline([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                            mu_) { return version_ != seen || interrupted_; },
                        deadline);
}

void ChangeSignal::Interrupt() {
  MutexLock lock(&mu_);
  interrupted_ = true;
}

JobStore::JobStore(std::unique_ptr<sql::Database> db, std::string replica_id)
    : db_(std::move(db)), replica_id_(std::move(replica_id)) {}

JobStore::~JobStore() {
  subscription_.reset();
  changes_.Interrupt();
}

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(
    const std::string& url, const std::string& replica_id) {
  sql::Options options;
  options.pool_size = 6;
  ASSIGN_OR_RETURN(std::unique_ptr<sql::Database> db,
                   sql::Database::Open(url, options));
  RETURN_IF_ERROR(db->Migrate("downloader", Migrations()));
  std::unique_ptr<JobStore> store(new JobStore(std::move(db), replica_id));
  if (store->dialect() == sql::Dialect::kPostgres) {
    JobStore* raw = store.get();
    ASSIGN_OR_RETURN(
        store->subscription_,
        store->db_->Listen(kChannel, [raw](auto) { raw->changes_.Notify(); }));
  }
  RETURN_IF_ERROR(store->Heartbeat());
  return store;
}

void JobStore::Signal() { changes_.Notify(); }

absl::StatusOr<Job> JobStore::Write(sql::Session& session, Job job,
                                    bool insert) {
  std::string body = JobBodyJson(job).dump();
  int64_t ended =
      job.ended == absl::InfinitePast() ? 0 : absl::ToUnixMillis(job.ended);
  sql::Value request_id = job.request_id.empty() ? sql::Value(std::monostate{})
                                                 : sql::Value(job.request_id);
  if (insert) {
    job.revision = 1;
    ASSIGN_OR_RETURN(
        sql::Result ignored,
        session.Execute(
            absl::StrCat("INSERT INTO download_jobs (", kColumns,
                         ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            {job.id, job.sequence, request_id,
             std::string(StateName(job.state)), int64_t{job.priority},
             job.revision, job.lease_owner, job.lease_expires_ms,
             job.token_owner, ended, body}));
  } else {
    job.revision += 1;
    ASSIGN_OR_RETURN(
        sql::Result ignored,
        session.Execute(
            "UPDATE download_jobs SET state = ?, priority = ?, revision = ?, "
            "lease_owner = ?, lease_expires = ?, token_owner = ?, "
            "ended_ms = ?, body = ? WHERE id = ?",
            {std::string(StateName(job.state)), int64_t{job.priority},
             job.revision, job.lease_owner, job.lease_expires_ms,
             job.token_owner, ended, body, job.id}));
  }
  if (session.dialect() == sql::Dialect::kPostgres) {
    ASSIGN_OR_RETURN(sql::Result ignored,
                     session.Execute("SELECT pg_notify(?, CAST(? AS text))",
                                     {std::string(kChannel), job.id}));
  }
  return job;
}

absl::StatusOr<Job> JobStore::Create(Job job) {
  Job written;
  RETURN_IF_ERROR(db_->Transaction([&](sql::Session& session) -> absl::Status {
    if (!job.request_id.empty()) {
      ASSIGN_OR_RETURN(sql::Result existing,
                       session.Execute(absl::StrCat("SELECT ", kColumns,
                                                    " FROM download_jobs WHERE "
                                                    "request_id = ?"),
                                       {job.request_id}));
      if (!existing.rows.empty()) {
        ASSIGN_OR_RETURN(written, JobFromRow(existing.rows[0]));
        return absl::OkStatus();
      }
    }
    ASSIGN_OR_RETURN(
        sql::Result seq,
        session.Execute(
            session.dialect() == sql::Dialect::kPostgres
                ? "SELECT nextval('download_jobs_sequence_seq')"
                // Never MAX(sequence) + 1: a pruned newest job's number
                // would come back and hide the next job from pagers.
                : "UPDATE download_sequence SET value = value + 1 "
                  "RETURNING value"));
    job.sequence = seq.rows.at(0).Int(0);
    ASSIGN_OR_RETURN(written, Write(session, job, /*insert=*/true));
    return absl::OkStatus();
  }));
  Signal();
  return written;
}

absl::StatusOr<Job> JobStore::Get(const std::string& id) {
  ASSIGN_OR_RETURN(
      sql::Result result,
      db_->Execute(
          absl::StrCat("SELECT ", kColumns, " FROM download_jobs WHERE id = ?"),
          {id}));
  if (result.rows.empty()) {
    return absl::NotFoundError(absl::StrCat("no download job ", id));
  }
  return JobFromRow(result.rows[0]);
}

absl::StatusOr<std::vector<Job>> JobStore::List(
    const std::vector<JobState>& states, int64_t after_sequence, int limit) {
  std::string query = absl::StrCat("SELECT ", kColumns,
                                   " FROM download_jobs WHERE sequence > ?");
  std::vector<sql::Value> params = {after_sequence};
  if (!states.empty()) {
    std::vector<std::string> marks;
    for (JobState state : states) {
      marks.push_back("?");
      params.push_back(std::string(StateName(state)));
    }
    absl::StrAppend(&query, " AND state IN (", absl::StrJoin(marks, ", "), ")");
  }
  absl::StrAppend(&query, " ORDER BY sequence LIMIT ?");
  params.push_back(int64_t{limit});
  ASSIGN_OR_RETURN(sql::Result result, db_->Execute(query, params));
  std::vector<Job> jobs;
  for (const sql::Row& row : result.rows) {
    ASSIGN_OR_RETURN(Job job, JobFromRow(row));
    jobs.push_back(std::move(job));
  }
  return jobs;
}

absl::StatusOr<Job> JobStore::Update(
    const std::string& id, const std::function<absl::Status(Job&)>& change) {
  Job written;
  RETURN_IF_ERROR(db_->Transaction([&](sql::Session& session) -> absl::Status {
    ASSIGN_OR_RETURN(
        sql::Result result,
        session.Execute(absl::StrCat("SELECT ", kColumns,
                                     " FROM download_jobs WHERE id = ?",
                                     ForUpdate(session.dialect())),
                        {id}));
    if (result.rows.empty()) {
      return absl::NotFoundError(absl::StrCat("no download job ", id));
    }
    ASSIGN_OR_RETURN(Job job, JobFromRow(result.rows[0]));
    RETURN_IF_ERROR(change(job));
    ASSIGN_OR_RETURN(written, Write(session, std::move(job), false));
    return absl::OkStatus();
  }));
  Signal();
  return written;
}

absl::StatusOr<std::optional<Job>> JobStore::ClaimNext(
    absl::Duration lease, absl::Duration replica_ttl) {
  std::optional<Job> claimed;
  int64_t now = NowMs();
  RETURN_IF_ERROR(db_->Transaction([&](sql::Session& session) -> absl::Status {
    ASSIGN_OR_RETURN(
        sql::Result result,
        session.Execute(
            absl::StrCat(
                "SELECT ", kColumns,
                " FROM download_jobs WHERE (state = 'queued' OR state = "
                "'running') AND (lease_owner = '' OR lease_expires < ?) AND "
                "(token_owner = '' OR token_owner = ? OR token_owner NOT IN "
                "(SELECT id FROM download_replicas WHERE heartbeat_ms >= ?)) "
                "ORDER BY priority, sequence LIMIT 1",
                ForUpdate(session.dialect(), /*skip_locked=*/true)),
            {now, replica_id_, now - absl::ToInt64Milliseconds(replica_ttl)}));
    if (result.rows.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(Job job, JobFromRow(result.rows[0]));
    job.state = JobState::kRunning;
    job.lease_owner = replica_id_;
    job.lease_expires_ms = now + absl::ToInt64Milliseconds(lease);
    if (job.started == absl::InfinitePast()) job.started = absl::Now();
    ASSIGN_OR_RETURN(Job written, Write(session, std::move(job), false));
    claimed = std::move(written);
    return absl::OkStatus();
  }));
  if (claimed.has_value()) Signal();
  return claimed;
}

absl::StatusOr<Job> JobStore::SaveProgress(const Job& progress,
                                           absl::Duration lease, bool final) {
  Job current;
  bool wrote = false;
  RETURN_IF_ERROR(db_->Transaction([&](sql::Session& session) -> absl::Status {
    ASSIGN_OR_RETURN(
        sql::Result result,
        session.Execute(absl::StrCat("SELECT ", kColumns,
                                     " FROM download_jobs WHERE id = ?",
                                     ForUpdate(session.dialect())),
                        {progress.id}));
    if (result.rows.empty()) {
      return absl::NotFoundError(absl::StrCat("no download job ", progress.id));
    }
    ASSIGN_OR_RETURN(current, JobFromRow(result.rows[0]));
    if (current.lease_owner != replica_id_) return absl::OkStatus();
    if (current.state != JobState::kRunning) {
      // Paused or cancelled by a request. Once the worker has stopped: keep
      // the segment progress of a paused job for its resume, and give the
      // lease up.
      if (!final) return absl::OkStatus();
      if (current.state == JobState::kPaused) current.parts = progress.parts;
      current.lease_owner.clear();
      current.lease_expires_ms = 0;
      ASSIGN_OR_RETURN(current, Write(session, std::move(current), false));
      wrote = true;
      return absl::OkStatus();
    }
    // Only what a worker owns changes; priority etc. stay as stored.
    current.parts = progress.parts;
    current.bytes_per_second = progress.bytes_per_second;
    current.retries = progress.retries;
    current.state = progress.state;
    current.error = progress.error;
    current.status_message = progress.status_message;
    current.ended = progress.ended;
    current.lease_expires_ms = NowMs() + absl::ToInt64Milliseconds(lease);
    if (IsTerminal(progress.state) || progress.state == JobState::kPaused) {
      current.lease_owner.clear();
      current.lease_expires_ms = 0;
      current.token_owner.clear();
    }
    ASSIGN_OR_RETURN(current, Write(session, std::move(current), false));
    wrote = true;
    return absl::OkStatus();
  }));
  if (wrote) Signal();
  return current;
}

absl::Status JobStore::ReleaseLease(const std::string& id) {
  ASSIGN_OR_RETURN(
      sql::Result ignored,
      db_->Execute("UPDATE download_jobs SET lease_expires = 0 WHERE id = ? "
                   "AND lease_owner = ?",
                   {id, replica_id_}));
  return absl::OkStatus();
}

absl::Status JobStore::ExpireAllLeases() {
  ASSIGN_OR_RETURN(
      sql::Result ignored,
      db_->Execute("UPDATE download_jobs SET lease_expires = 0 WHERE state = "
                   "'running'"));
  // Forgetting the other replicas also frees the jobs whose token was in
  // their memory (ClaimNext skips only live owners).
  ASSIGN_OR_RETURN(sql::Result cleared,
                   db_->Execute("DELETE FROM download_replicas WHERE id <> ?",
                                {replica_id_}));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Job>> JobStore::Prune(absl::Time ended_before) {
  std::vector<Job> pruned;
  RETURN_IF_ERROR(db_->Transaction([&](sql::Session& session) -> absl::Status {
    std::vector<sql::Value> params = {absl::ToUnixMillis(ended_before)};
    ASSIGN_OR_RETURN(
        sql::Result result,
        session.Execute(absl::StrCat("SELECT ", kColumns,
                                     " FROM download_jobs WHERE state IN "
                                     "('succeeded', 'failed', 'cancelled') "
                                     "AND ended_ms < ?"),
                        params));
    for (const sql::Row& row : result.rows) {
      ASSIGN_OR_RETURN(Job job, JobFromRow(row));
      pruned.push_back(std::move(job));
    }
    ASSIGN_OR_RETURN(
        sql::Result deleted,
        session.Execute("DELETE FROM download_jobs WHERE state IN "
                        "('succeeded', 'failed', 'cancelled') AND ended_ms < ?",
                        params));
    if (!pruned.empty() && session.dialect() == sql::Dialect::kPostgres) {
      // Watches of these jobs on other replicas end now (NOT_FOUND), not
      // at their next periodic look.
      ASSIGN_OR_RETURN(
          sql::Result ignored,
          session.Execute("SELECT pg_notify(?, '')", {std::string(kChannel)}));
    }
    return absl::OkStatus();
  }));
  if (!pruned.empty()) Signal();
  return pruned;
}

absl::Status JobStore::Heartbeat() {
  ASSIGN_OR_RETURN(
      sql::Result ignored,
      db_->Execute("INSERT INTO download_replicas (id, heartbeat_ms) VALUES "
                   "(?, ?) ON CONFLICT (id) DO UPDATE SET heartbeat_ms = "
                   "excluded.heartbeat_ms",
                   {replica_id_, NowMs()}));
  return absl::OkStatus();
}

absl::Status JobStore::Ping() {
  ASSIGN_OR_RETURN(sql::Result ignored, db_->Execute("SELECT 1"));
  return absl::OkStatus();
}

}  // namespace mm::downloader
