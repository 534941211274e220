#pragma once
// The drop sequence of a run, at each evaluation point: the policy's
// decision (rank 0's in a data-parallel run), shadow mode, the cost guard's
// plan (rank 0's), the drop itself with the batch feed stopped around it,
// and its report. Also model.freeze's drop before the first step, and a
// stream's arrivals, whose rows join the cache that drops built. The loop
// (trainer.cpp) measures the point and accounts for what a drop did to its
// epoch (DropEffect).

#include <cstddef>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "learndrop/core/judge.h"
#include "learndrop/policy.h"
#include "loop/run_state.h"

namespace ld::core {

class BatchFeed;
class DataParallel;
class DropController;
class RunReporter;
class Schedule;
class StagedOptimizer;
struct RunConfig;

/// What the drop sequence acts on (parts of RunParts).
struct DropParts {
  DropPolicy& policy;
  DropController& controller;
  StagedOptimizer& optimizer;
  BatchFeed& feed;
  const Schedule& schedule;
  const JudgeRules& judge;  ///< Drop guards, cost guard (with the run's DropCost), shadow mode.
  std::size_t stages;       ///< The model's stage count.
};

/// The epoch the loop is in, so far: training seconds without cache builds
/// and images trained. Only for the seconds a drop is predicted to save,
/// which are shown, never decided on (the decision reads no clock).
struct EpochSoFar {
  double seconds = 0;
  std::int64_t images = 0;
};

/// What a point's drop did to the epoch the loop is in.
struct DropEffect {
  bool dropped = false;     ///< A drop was applied (cached, or frozen only).
  double seconds = 0;       ///< Building its cache: training work, not full-training time.
  std::int64_t flops = 0;   ///< The build's forward FLOPs.
};

struct DropPlan;

/// A drop plan as stats.jsonl records it (`drop_plan`): the cost guard's
/// options and choice for `target`, and why it held the drop back.
nlohmann::json plan_record(const DropPlan& plan, std::size_t target, std::int64_t images_ahead);

class DropSequence {
 public:
  /// `defer_interrupts`: a SIGINT/SIGTERM during a build waits for its end
  /// (the loop then writes a checkpoint at the next step).
  DropSequence(const RunConfig& cfg, DropParts parts, RunState& state, DataParallel& dp, RunReporter& report,
               bool defer_interrupts);

  /// model.freeze: the first `stages` stages frozen before the first step.
  void freeze_from_start(std::size_t stages, const std::string& reason);
  /// Part `part` (0-based) of a stream arrives before its first epoch: its
  /// rows join the cache, with the feed stopped meanwhile. `first_look`: the
  /// model's test on the part before training on it (null for the first).
  void arrive(std::int64_t part, const EvalResult* first_look);
  /// The evaluation point whose statistics and position the loop measured
  /// into `in`: decides, drops (or holds, or records a shadow drop) and
  /// writes the point's stats.jsonl line.
  DropEffect at_point(PolicyInput in, const EpochSoFar& so_far);

 private:
  /// The policy's decision (rank 0's, broadcast).
  Decision decide(PolicyInput& in);
  /// Applies the judged answer `d` (the cut `j` let through) and returns
  /// the plan for the stats line (null when the cut is not above the
  /// current one).
  nlohmann::json drop(const Decision& d, const Judgment& j, double epoch, const PointAhead& ahead,
                      const EpochSoFar& so_far, DropEffect& effect);

  const RunConfig& cfg_;
  DropParts p_;
  RunState& state_;
  DataParallel& dp_;
  RunReporter& report_;
  const bool defer_interrupts_;
};

}  // namespace ld::core
