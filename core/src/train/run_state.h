#pragma once
// The state of a run's loop: everything a checkpoint restores besides the
// model, the optimizer, the policy and the drops, in named fields with one
// save/load pair (docs/checkpoints.md).

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "learndrop/cache.h"

namespace ld::core {

struct Checkpoint;

/// Test loss and accuracy of the full model.
struct EvalResult {
  double loss = 0;
  double accuracy = 0;
};

/// Running totals of one epoch. Loss and correct predictions are summed on
/// the training device and read only when printed or written, so that a GPU
/// never waits for the host between steps.
struct EpochTally {
  explicit EpochTally(at::Device device);
  double loss() const;
  double accuracy() const;
  /// Starts a new epoch (zeroes every total on its device).
  void reset();
  at::Tensor loss_sum, correct_sum;
  std::int64_t seen = 0;
  std::int64_t flops = 0;
};

/// What the loop adds up over the run.
struct RunTotals {
  std::int64_t flops = 0, flops_full = 0, eval_flops = 0;
  double train_seconds = 0, cache_seconds = 0, cache_wait_seconds = 0;
  double checkpoint_seconds = 0;  ///< Writing checkpoints (not training time).
  std::int64_t cache_read_bytes = 0;
  std::int64_t images = 0;  ///< Training images of every step.
  EvalResult last_eval;
  bool evaluated = false;  ///< Whether last_eval is the current epoch's.
  /// Data-parallel: gradient bytes one step all-reduces, at the first step and the last.
  std::int64_t allreduce_bytes_first = 0, allreduce_bytes_last = 0;
};

/// Where the loop is and what it has added up. The loop reads and writes
/// this struct; a checkpoint saves it whole and a resumed run loads it back.
struct RunState {
  explicit RunState(at::Device device);

  // Position.
  std::int64_t epoch = 0;          ///< The epoch the loop is in, 0-based.
  std::int64_t step_in_epoch = 0;  ///< Steps of that epoch done.
  std::int64_t step = 0;           ///< Optimizer steps done in the run.
  std::int64_t eval_point = 0;     ///< Evaluation points so far.

  // Since the last evaluation point.
  at::Tensor loss_since_point;  ///< Summed on the device.
  std::int64_t steps_since_point = 0;
  double lr_since_point = 0;  ///< Sum of the steps' learning rates.
  double last_lr = 0;         ///< The learning rate of the last step.
  std::size_t shadow_cut = 0;  ///< policy.shadow: the cut the policy believes in.
  /// Epochs done when a drop the policy asked for was last applied (in
  /// shadow mode: would have been); -1 before the first (PolicyInput).
  double last_drop_epoch = -1;
  /// The cut the host's cost guard held back at the last point (0: none)
  /// and why: the next PolicyInput tells the policy.
  std::size_t held_cut = 0;
  std::string held_reason;

  // The current epoch.
  EpochTally tally;
  /// Cache reads of this epoch done before a resume within it.
  CacheStats read_carry;

  RunTotals totals;
  double wall_before = 0;  ///< Wall seconds of the processes before a resume.

  // A stream.
  std::int64_t arrivals = 0;  ///< Parts arrived so far.

  // The self-normalised speed: the run's own epochs that trained the whole
  // model (cut 0 throughout), the first apart (it carries one-time costs).
  std::int64_t full_epochs = 0;
  double first_full_images = 0, first_full_seconds = 0;
  double full_images = 0, full_seconds = 0;  ///< Full epochs after the first.
  /// Seconds per image of full training as this run measured it (0: no full epoch).
  double full_seconds_per_image() const;

  /// Writes every field into `ckpt` (counters in its JSON, floating-point
  /// values and tensors as named tensors, so that they come back exactly).
  void save(Checkpoint& ckpt) const;
  /// Reads what save() wrote; throws ld::Error naming the checkpoint and the field at fault.
  void load(const Checkpoint& ckpt);
};

}  // namespace ld::core
