#pragma once
// The loop of one run (run_training = setup, loop, reporting): epochs of
// steps, evaluation points where the policy decides, and drops through
// DropController::apply. Its state is one RunState; the data-parallel part
// is one DataParallel; checkpoints are written and read in run_checkpoint.cpp.

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <tbb/global_control.h>

#include "data_parallel.h"
#include "learndrop/core/checkpoint.h"
#include "learndrop/core/trainer.h"
#include "run_report.h"
#include "run_setup.h"
#include "run_state.h"

namespace ld::core {

/// Fault injection for the tests (docs/testing.md), read from the
/// environment once: LEARNDROP_TEST_SIGTERM_AT_STEP=N makes the run send
/// itself SIGTERM before step N; LEARNDROP_TEST_KILL_RANK_AT_STEP=R:N makes
/// rank R of a data-parallel run SIGKILL itself before step N.
struct TestFaults {
  static TestFaults from_environment();
  /// Raises the signal due before `step` of rank `rank` (-1 alone), if any.
  void before_step(std::int64_t step, int rank) const;
  std::int64_t sigterm_step = -1;
  /// The loss of step `nan_step` becomes NaN (LEARNDROP_TEST_NAN_AT_STEP): a
  /// divergence at a known step, whatever the CPU computes.
  std::int64_t nan_step = -1;
  int kill_rank = -1;
  std::int64_t kill_step = -1;
};

/// Refuses to resume from `c` a run whose config hashes differently, or
/// whose policy does not save its state; names `dir` and the reason.
void check_resumable(const Checkpoint& c, const RunConfig& config, const std::filesystem::path& dir);

/// With train.checkpoint_every > 0 the loop writes checkpoints at epoch ends
/// and, on SIGINT/SIGTERM, at the next step; a checkpoint holds everything
/// the loop goes on from, so that a resumed run computes exactly what it
/// would have.
class Trainer {
 public:
  Trainer(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts, const Checkpoint* resume);
  nlohmann::json run();

 private:
  static RunParts prepare(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts,
                          const Checkpoint* resume);
  /// Part `part` of a stream arrives (before its first epoch).
  void arrive(std::int64_t part);
  /// model.freeze: stages frozen before the first step (a drop in kFreeze at step 0).
  void freeze_from_start();
  void train_epoch();
  /// One optimizer step on batch (x, y).
  void train_step(const at::Tensor& x, const at::Tensor& y, Clock::time_point epoch_start);
  void end_epoch(Clock::time_point epoch_start);
  /// Stops a diverged run: throws ld::Error naming `what`, the epoch, the
  /// step and the learning rate when `value` is NaN or infinite. Nothing is
  /// checkpointed after it, so the last checkpoint holds finite weights.
  void check_finite(double value, const std::string& what) const;
  void evaluation_point();
  /// Applies the policy's decision `d` at this point, through the cost
  /// guard (drop_cost.h); returns the plan for the stats line.
  nlohmann::json drop(const Decision& d, double epoch);
  /// The policy's decision at this point (rank 0's in a data-parallel run).
  Decision decide(PolicyInput& in);
  /// Cache reads of this epoch so far.
  CacheStats epoch_reads() const;

  // run_checkpoint.cpp
  /// Writes checkpoint/ at the current position; `mid_epoch` keeps the
  /// epoch's tally and reads. Returns where, for messages.
  std::string save_checkpoint(bool mid_epoch);
  /// Restores the run from `c`: the model, drops and cache, optimizer,
  /// statistics, policy, generators, report and RunState.
  void restore(const Checkpoint& c);

  const RunConfig& cfg_;
  tbb::global_control tbb_threads_;
  RunParts p_;
  RunReporter report_;
  RunState state_;
  DataParallel dp_;
  std::uint64_t epoch_seed_ = 0;
  std::int64_t steps_ = 0;  // this epoch's steps
  // This epoch: cache builds and row additions (not part of its full-training
  // speed), and whether every step trained the whole model.
  double epoch_build_seconds_ = 0;
  Clock::time_point epoch_start_ = Clock::now();
  bool epoch_full_ = true;
  // This epoch's cache reads: the current cache's since the epoch began (or
  // since it was built).
  std::uint64_t generation_at_start_ = 0;
  CacheStats stats_at_start_;
  std::int64_t flops_full_at_start_ = 0;
  bool resumed_mid_epoch_ = false;

  const bool checkpoints_;  // not in data-parallel runs yet
  const TestFaults faults_;
  const Checkpoint* resume_;
  Clock::time_point run_start_ = Clock::now();
};

}  // namespace ld::core
