#include "learndrop/core/results_db.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "learndrop/error.h"

namespace ld::core {

namespace {

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY,
  suite TEXT NOT NULL,
  label TEXT NOT NULL,
  config_hash TEXT NOT NULL,
  code_version TEXT NOT NULL,
  baseline_hash TEXT NOT NULL,
  is_baseline INTEGER NOT NULL,
  matrix_values TEXT NOT NULL,
  config_yaml TEXT NOT NULL,
  out_dir TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
  error TEXT NOT NULL DEFAULT '',
  started TEXT NOT NULL,
  ended TEXT NOT NULL DEFAULT '',
  summary TEXT NOT NULL DEFAULT '',
  role TEXT NOT NULL DEFAULT '',
  budget_hash TEXT NOT NULL DEFAULT '',
  UNIQUE (config_hash, code_version)
);
CREATE TABLE IF NOT EXISTS epochs (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  epoch INTEGER NOT NULL,
  metrics TEXT NOT NULL,
  PRIMARY KEY (run_id, epoch)
);
PRAGMA user_version = 2;
)sql";

std::string busy_hint(sqlite3* db) {
  return sqlite3_errcode(db) == SQLITE_BUSY || sqlite3_errcode(db) == SQLITE_LOCKED
             ? " (another process held it longer than LEARNDROP_RESULTS_DB_WAIT allows, " +
                   std::to_string(static_cast<long long>(ResultsDb::wait_seconds())) + " s)"
             : "";
}

// A prepared statement, finalized on scope exit.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql, const std::string& file) : db_(db), file_(file) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr) != SQLITE_OK) fail("prepare");
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement& bind(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.c_str(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) fail("step");
    return false;
  }
  std::string text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p ? reinterpret_cast<const char*>(p) : "";
  }
  std::int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  [[noreturn]] void fail(const char* what) const {
    throw Error("results database " + file_ + ": " + what + ": " + sqlite3_errmsg(db_) + busy_hint(db_));
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  std::string file_;
};

}  // namespace

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

ResultsDb::ResultsDb(const std::filesystem::path& path, Mode mode) : path_(path) {
  const int flags = mode == Mode::kReadOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error("results database " + path.string() + ": cannot open: " + msg);
  }
  wait_ = wait_seconds();
  sqlite3_busy_handler(db_, &ResultsDb::on_busy, this);
  if (mode == Mode::kReadOnly) {
    // A report reads; a zero-byte file or another program's database is not
    // given LearnDrop's tables.
    bool ours = false;
    try {
      ours = has_column("runs", "config_hash") && has_column("epochs", "metrics");
    } catch (const Error&) {
      sqlite3_close(db_);
      db_ = nullptr;
      throw;
    }
    if (!ours) {
      sqlite3_close(db_);
      db_ = nullptr;
      throw Error("results database " + path.string() +
                  ": not a LearnDrop results database (no 'runs' and 'epochs' tables); it was left unchanged");
    }
    return;
  }
  exec("PRAGMA foreign_keys = ON;");
  exec("PRAGMA journal_mode = WAL;");
  exec(kSchema);
  // Databases of schema 1 (before budget-matched baselines) gain the columns.
  for (const char* column : {"role", "budget_hash"}) {
    if (!has_column("runs", column)) exec(std::string("ALTER TABLE runs ADD COLUMN ") + column + " TEXT NOT NULL DEFAULT '';");
  }
  // Schema 3 (issue 21): the other baselines of a run, by role.
  if (!has_column("runs", "compare")) exec("ALTER TABLE runs ADD COLUMN compare TEXT NOT NULL DEFAULT '{}';");
}

double ResultsDb::wait_seconds() {
  const char* v = std::getenv("LEARNDROP_RESULTS_DB_WAIT");
  if (v == nullptr || *v == '\0') return 600;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  if (end == v || *end != '\0' || !(s >= 0) || s > 1e6) {
    throw Error(std::string("LEARNDROP_RESULTS_DB_WAIT: expected seconds between 0 and 1e6, got '") + v + "'");
  }
  return s;
}

int ResultsDb::on_busy(void* self, int attempt) {
  // SQLite calls this while another connection holds the lock, attempt
  // 0, 1, 2, ... for one statement; returning 0 gives up (SQLITE_BUSY).
  auto* db = static_cast<ResultsDb*>(self);
  if (attempt == 0) {
    db->waited_ = 0;
    db->said_after_ = 10;
  }
  if (db->waited_ >= db->wait_) return 0;
  const double pause = std::min({0.001 * (1 << std::min(attempt, 8)), 0.25, db->wait_ - db->waited_});
  std::this_thread::sleep_for(std::chrono::duration<double>(pause));
  db->waited_ += pause;
  if (db->waited_ >= db->said_after_) {
    std::fprintf(stderr, "results database %s is locked by another process; waited %.0f s of at most %.0f s\n",
                 db->path_.c_str(), db->waited_, db->wait_);
    db->said_after_ += 10;
  }
  return 1;
}

bool ResultsDb::has_column(const std::string& table, const std::string& column) const {
  Statement info(db_, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", path_.string());
  info.bind(1, table).bind(2, column);
  return info.step();
}

ResultsDb::~ResultsDb() { sqlite3_close(db_); }

void ResultsDb::exec(const std::string& sql) const {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = (err ? err : "unknown error") + busy_hint(db_);
    sqlite3_free(err);
    throw Error("results database " + path_.string() + ": " + msg);
  }
}

bool ResultsDb::finished(const std::string& hash, const std::string& code_version) const {
  // A summary that is not valid JSON (a corrupt record) does not count.
  Statement s(db_,
              "SELECT 1 FROM runs WHERE config_hash = ?1 AND code_version = ?2 AND status = 'finished' "
              "AND json_valid(summary)",
              path_.string());
  s.bind(1, hash).bind(2, code_version);
  return s.step();
}

void ResultsDb::transaction(const std::function<void()>& body) {
  exec("BEGIN IMMEDIATE;");
  try {
    body();
    exec("COMMIT;");
  } catch (...) {
    exec("ROLLBACK;");
    throw;
  }
}

std::int64_t ResultsDb::start(const RunRecord& r) {
  transaction([&] {
    Statement del(db_, "DELETE FROM runs WHERE config_hash = ?1 AND code_version = ?2", path_.string());
    del.bind(1, r.config_hash).bind(2, r.code_version);
    del.step();
    Statement ins(db_,
                  "INSERT INTO runs (suite, label, config_hash, code_version, baseline_hash, is_baseline, "
                  "matrix_values, config_yaml, out_dir, status, started, role) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                  "?8, ?9, 'running', ?10, ?11)",
                  path_.string());
    ins.bind(1, r.suite).bind(2, r.label).bind(3, r.config_hash).bind(4, r.code_version).bind(5, r.baseline_hash);
    ins.bind(6, static_cast<std::int64_t>(r.is_baseline)).bind(7, r.values_json).bind(8, r.config_yaml);
    ins.bind(9, r.out_dir).bind(10, utc_now()).bind(11, r.role);
    ins.step();
  });
  return sqlite3_last_insert_rowid(db_);
}

void ResultsDb::finish(std::int64_t id, const std::string& summary_json, const std::vector<std::string>& epochs) {
  transaction([&] {
    for (std::size_t e = 0; e < epochs.size(); ++e) {
      Statement s(db_, "INSERT OR REPLACE INTO epochs (run_id, epoch, metrics) VALUES (?1, ?2, ?3)", path_.string());
      s.bind(1, id).bind(2, static_cast<std::int64_t>(e + 1)).bind(3, epochs[e]);
      s.step();
    }
    Statement u(db_, "UPDATE runs SET status = 'finished', ended = ?2, summary = ?3, error = '' WHERE id = ?1",
                path_.string());
    u.bind(1, id).bind(2, utc_now()).bind(3, summary_json);
    u.step();
  });
}

void ResultsDb::set_budget(const std::string& hash, const std::string& code_version, const std::string& budget_hash) {
  Statement u(db_, "UPDATE runs SET budget_hash = ?3 WHERE config_hash = ?1 AND code_version = ?2", path_.string());
  u.bind(1, hash).bind(2, code_version).bind(3, budget_hash);
  u.step();
}

void ResultsDb::set_compare(const std::string& hash, const std::string& code_version, const std::string& role,
                            const std::string& compare_hash) {
  transaction([&] {
    Statement q(db_, "SELECT compare FROM runs WHERE config_hash = ?1 AND code_version = ?2", path_.string());
    q.bind(1, hash).bind(2, code_version);
    nlohmann::json links = nlohmann::json::object();
    if (q.step() && nlohmann::json::accept(q.text(0))) links = nlohmann::json::parse(q.text(0));
    links[role] = compare_hash;
    Statement u(db_, "UPDATE runs SET compare = ?3 WHERE config_hash = ?1 AND code_version = ?2", path_.string());
    u.bind(1, hash).bind(2, code_version).bind(3, links.dump());
    u.step();
  });
}

void ResultsDb::fail(std::int64_t id, const std::string& error) {
  Statement u(db_, "UPDATE runs SET status = 'failed', ended = ?2, error = ?3 WHERE id = ?1", path_.string());
  u.bind(1, id).bind(2, utc_now()).bind(3, error);
  u.step();
}

std::vector<RunRecord> ResultsDb::runs() const {
  std::vector<RunRecord> out;
  // A read-only database of schema 1 lacks the budget columns.
  const std::string role = has_column("runs", "role") ? "role" : "''";
  const std::string budget = has_column("runs", "budget_hash") ? "budget_hash" : "''";
  const std::string compare = has_column("runs", "compare") ? "compare" : "'{}'";
  Statement s(db_,
              "SELECT id, suite, label, config_hash, code_version, baseline_hash, is_baseline, matrix_values, "
              "config_yaml, out_dir, status, error, started, ended, summary, " +
                  role + ", " + budget + ", " + compare + " FROM runs ORDER BY id",
              path_.string());
  while (s.step()) {
    RunRecord r;
    r.id = s.integer(0);
    r.suite = s.text(1);
    r.label = s.text(2);
    r.config_hash = s.text(3);
    r.code_version = s.text(4);
    r.baseline_hash = s.text(5);
    r.is_baseline = s.integer(6) != 0;
    r.values_json = s.text(7);
    r.config_yaml = s.text(8);
    r.out_dir = s.text(9);
    r.status = s.text(10);
    r.error = s.text(11);
    r.started = s.text(12);
    r.ended = s.text(13);
    r.summary_json = s.text(14);
    r.role = s.text(15);
    r.budget_hash = s.text(16);
    r.compare_json = s.text(17);
    out.push_back(std::move(r));
  }
  for (auto& r : out) {
    Statement e(db_, "SELECT metrics FROM epochs WHERE run_id = ?1 ORDER BY epoch", path_.string());
    e.bind(1, r.id);
    while (e.step()) r.epochs_json.push_back(e.text(0));
  }
  for (auto& r : out) {
    if (r.status != "finished") continue;
    auto corrupt = [&](const std::string& what, const std::string& text) {
      if (nlohmann::json::accept(text)) return false;
      r.status = "failed";
      r.error = "results database " + path_.string() + ": run " + r.label + " (id " + std::to_string(r.id) + "): its " +
                what + " is not valid JSON";
      return true;
    };
    if (corrupt("summary", r.summary_json) || corrupt("matrix values", r.values_json)) continue;
    for (std::size_t i = 0; i < r.epochs_json.size(); ++i) {
      if (corrupt("metrics of epoch " + std::to_string(i + 1), r.epochs_json[i])) break;
    }
  }
  return out;
}

}  // namespace ld::core
