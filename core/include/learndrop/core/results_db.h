#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

struct sqlite3;

namespace ld::core {

/// One run as recorded in a results database.
struct RunRecord {
  std::int64_t id = 0;
  std::string suite;
  std::string label;
  std::string config_hash;
  std::string code_version;
  std::string baseline_hash;  ///< "" when the suite has no baseline.
  bool is_baseline = false;
  std::string values_json;  ///< The matrix values, {"key": "value", ...}.
  std::string config_yaml;  ///< The effective config.
  std::string out_dir;
  std::string status;  ///< running | finished | failed
  std::string error;
  std::string started, ended;            ///< ISO 8601 UTC.
  std::string summary_json;              ///< summary.json of a finished run.
  /// "" for a matrix run, "budget" for a budget-matched baseline (full
  /// training cut to the time or FLOPs of a paired run).
  std::string role;
  /// The config hash of this run's budget-matched baseline ("" when none).
  std::string budget_hash;
  /// The run's other baselines (suite `compare:`), role -> config hash, as JSON.
  std::string compare_json = "{}";
  std::vector<std::string> epochs_json;  ///< metrics.jsonl lines.
};

/// The SQLite results database of a suite (`results.db`): one row per run
/// and code version, and the per-epoch metrics of each. Writes are
/// transactions, so an interrupted suite leaves a consistent database.
class ResultsDb {
 public:
  enum class Mode { kReadWrite, kReadOnly };

  /// Opens or creates the database (and its schema). Read-only (reports)
  /// opens an existing LearnDrop database and never writes to it: a file that
  /// is not one is an error. Throws ld::Error naming the file.
  ///
  /// A database another process holds locked (a report, a second suite
  /// sharing the output, `sqlite3` in a terminal) is waited for, up to
  /// wait_seconds() in all for one statement, with a line on stderr every
  /// 10 s; after that the statement fails with an error naming the file.
  explicit ResultsDb(const std::filesystem::path& path, Mode mode = Mode::kReadWrite);
  ~ResultsDb();
  ResultsDb(const ResultsDb&) = delete;
  ResultsDb& operator=(const ResultsDb&) = delete;

  /// Whether a run with this config hash finished under this code version.
  bool finished(const std::string& config_hash, const std::string& code_version) const;

  /// Records a run as running (replacing an unfinished record of the same
  /// hash and code version); returns its id.
  std::int64_t start(const RunRecord& run);

  /// Records the end of run `id`: finished with its summary and epochs.
  void finish(std::int64_t id, const std::string& summary_json, const std::vector<std::string>& epochs_json);

  /// Pairs run `hash` (of `code_version`) with its budget-matched baseline.
  void set_budget(const std::string& hash, const std::string& code_version, const std::string& budget_hash);

  /// Records the end of run `id`: failed with an error message.
  void fail(std::int64_t id, const std::string& error);
  /// Links the finished runs of `hash` to a baseline of `role` (freeze, probe).
  void set_compare(const std::string& hash, const std::string& code_version, const std::string& role,
                   const std::string& compare_hash);

  /// Every run (epochs included), oldest first. A finished run whose stored
  /// JSON does not parse is returned as failed, its error naming the
  /// database and what was corrupt (and finished() does not count it).
  std::vector<RunRecord> runs() const;

  const std::filesystem::path& path() const { return path_; }

  /// How long a statement waits for a lock another process holds:
  /// `LEARNDROP_RESULTS_DB_WAIT` seconds (default 600).
  static double wait_seconds();

 private:
  static int on_busy(void* self, int attempt);
  void exec(const std::string& sql) const;
  bool has_column(const std::string& table, const std::string& column) const;
  /// Runs `body` in one write transaction, rolled back if it throws.
  void transaction(const std::function<void()>& body);
  std::filesystem::path path_;
  sqlite3* db_ = nullptr;
  double wait_ = 600;
  double waited_ = 0;       ///< Seconds the current statement has waited.
  double said_after_ = 0;   ///< The wait after which the next line is printed.
};

/// Current time as ISO 8601 UTC ("2026-11-26T01:02:03Z").
std::string utc_now();

}  // namespace ld::core
