#pragma once
// The loop of one run (run_training = setup, loop, reporting): epochs of
// steps and evaluation points, whose decisions and drops are the
// DropSequence's. Its state is one RunState; the data-parallel part is one
// DataParallel; checkpoints are written and read in run_checkpoint.cpp.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <tbb/global_control.h>

#include "parallel/data_parallel.h"
#include "drop/drop_sequence.h"
#include "learndrop/core/checkpoint.h"
#include "learndrop/core/run.h"
#include "run/run_checkpoint.h"
#include "run/run_report.h"
#include "run/run_setup.h"
#include "loop/run_state.h"

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

/// With train.checkpoint_every > 0 the loop writes checkpoints at epoch ends
/// and, on SIGINT/SIGTERM, at the next step; a checkpoint holds everything
/// the loop goes on from, so that a resumed run computes exactly what it
/// would have.
class Trainer {
 public:
  Trainer(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts, const Checkpoint* resume);
  nlohmann::json run();

 private:
  /// Part `part` of a stream arrives (before its first epoch).
  /// model.head: probe: fits the new head to the loaded stages before the first step.
  void fit_head_first();
  void arrive(std::int64_t part);
  void train_epoch();
  /// One optimizer step on batch (x, y).
  void train_step(const at::Tensor& x, const at::Tensor& y, Clock::time_point epoch_start);
  void end_epoch(Clock::time_point epoch_start);
  /// RunState::check_finite with this run's learning rate and checkpoints.
  void check_finite(double value, const std::string& what) const;
  /// Measures the point (loss, stage statistics, the feature probe) and
  /// hands it to the drop sequence.
  void evaluation_point();

  /// Writes checkpoint/ at the current position (run_checkpoint.h);
  /// `mid_epoch` keeps the epoch's tally and reads. Returns where.
  std::string save_checkpoint(bool mid_epoch);

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
  EpochReads reads_;  // this epoch's cache reads
  std::int64_t flops_full_at_start_ = 0;
  bool resumed_mid_epoch_ = false;

  const bool checkpoints_;  // not in data-parallel runs yet
  DropSequence drops_;
  const TestFaults faults_;
  const Checkpoint* resume_;
  const PluginHost& host_;
  const RunOptions& opts_;
  std::optional<Checkpoint> branch_checkpoint_;  // ldrop run --branch-from: the reference's, once read
  Clock::time_point run_start_ = Clock::now();
};

}  // namespace ld::core
