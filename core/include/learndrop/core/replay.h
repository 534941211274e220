#pragma once
// `ldrop policy replay`: a drop criterion fed the evaluation points that a
// recorded run wrote to stats.jsonl, with the host's cost guard exactly as a
// live run applies it. Every run is bit-identical to full training until its
// first applied drop, so the points a full-training run (or any run, up to
// its own first drop, or a shadow run) recorded are what any criterion would
// see up to its first drop. Replay needs neither the model nor the data.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "learndrop/core/drop_cost.h"
#include "learndrop/drop_guards.h"
#include "learndrop/policy.h"

namespace ld::core {

/// A run folder as replay reads it: its stats.jsonl (format 2 or later) and
/// its summary's measured speed.
struct RecordedRun {
  std::filesystem::path dir;
  PolicyContext context;
  std::int64_t images_total = 0;  ///< Training images of the whole schedule.
  std::string policy;             ///< The policy that recorded the run.
  std::int64_t period = 0;        ///< Its evaluation period in steps (0 = the end of each epoch).
  bool shadow = false;
  std::string drop_mode = "auto";
  bool cost_guard = true;
  std::size_t freeze = 0;  ///< model.freeze: stages frozen from the start.
  DropCost cost;
  struct Point {
    PolicyInput input;                ///< As the policy saw it (stages as measured).
    std::int64_t images_ahead = 0;    ///< What the cost guard read.
    std::int64_t cached_samples = 0;
    std::int64_t arriving = 0;
    std::size_t logged_cut = 0;       ///< The decision the run's policy logged.
    std::string logged_reason;
  };
  std::vector<Point> points;
  /// Points that full training shares with the run: all of a shadow or
  /// full-training run's, a run's up to its first applied drop.
  std::size_t shared = 0;
  /// Seconds per training image of full training as the run measured it
  /// (its epochs at cut 0); 0 when it had none.
  double full_seconds_per_image = 0;
};

/// Reads `dir`'s stats.jsonl and summary.json (or metrics.jsonl while the
/// run is unfinished). Throws ld::Error naming the file, line and missing
/// field of a record written before format 2 or cut short.
RecordedRun read_recorded_run(const std::filesystem::path& dir);

/// The first drop a replayed policy makes, as the host would apply it.
struct ReplayDrop {
  std::int64_t eval_point = 0;
  double epoch = 0;
  std::size_t cut = 0;
  std::string mode;       ///< cache | freeze, as the cost guard picks.
  double saved = 0;       ///< Work the rest of the schedule saves (forward-FLOP equivalents).
  double cost = 0;        ///< Work the drop costs (the build, later arrivals' rows).
  double speedup = 1;     ///< Predicted speed of the whole run over full training, this drop alone.
  double seconds = 0;     ///< The net saving in seconds at the run's measured speed (0 if unknown).
  std::string reason;
};

struct ReplayResult {
  std::optional<ReplayDrop> drop;
  std::vector<Decision> decisions;        ///< The policy's answer at each point fed.
  std::vector<std::string> held;          ///< "point N: ..." for each answer the cost guard or a drop guard held back.
  std::int64_t not_judged = 0;            ///< Recorded points after the first drop (or after the shared ones).
};

/// Feeds `run`'s shared points to `policy` (created with `run.context`) as
/// a live run of it would see them, judging each answer as the live run
/// does (judge_point: the drop `guards`, then the cost guard with
/// `drop_mode` and `cost_guard`), until its first applied drop.
ReplayResult replay(const RecordedRun& run, DropPolicy& policy, const std::string& drop_mode, bool cost_guard,
                    const DropGuards& guards);

}  // namespace ld::core
