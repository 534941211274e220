#pragma once
// The state of a run's loop: everything a checkpoint restores besides the
// model, the optimizer, the policy and the drops, in named fields with one
// save/load pair (docs/checkpoints.md).

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "learndrop/cache.h"
#include "learndrop/policy.h"

namespace ld::core {

struct Checkpoint;
class DropController;

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

/// The cache reads of one epoch: the current cache's since the epoch began,
/// or since it was built when a drop replaced the cache during the epoch.
class EpochReads {
 public:
  /// At the start of the epoch.
  void start(const DropController& controller);
  /// The epoch's reads so far, plus `carry` (reads before a resume within it).
  CacheStats so_far(const DropController& controller, const CacheStats& carry) const;

 private:
  std::uint64_t generation_ = 0;
  CacheStats at_start_;
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
  /// A training step of `rows` rows at learning rate `last_lr`: `loss` is
  /// its mean loss (on the device, as a double), `point_loss` what it adds to
  /// the evaluation point's loss (weighted in a data-parallel run),
  /// `correct` its correct predictions, `flops` and `flops_full` the forward
  /// work per row of the trained part and of the whole model.
  void count_step(const at::Tensor& loss, const at::Tensor& point_loss, const at::Tensor& correct, std::int64_t rows,
                  std::int64_t flops, std::int64_t flops_full);
  /// The next evaluation point's input as far as the loop's state knows it
  /// (position, the period's learning rates, the last drop and hold); the
  /// loop adds the loss, the cut, the samples and the stage statistics.
  PolicyInput point_input(std::int64_t steps_in_epoch);
  /// After an evaluation point: the period's sums start again.
  void end_point();
  /// The state a checkpoint saves now: within the epoch (`mid_epoch`, with
  /// the epoch's cache reads so far), or at the start of the next one.
  /// `wall_seconds`: this process's seconds so far.
  RunState to_save(bool mid_epoch, const CacheStats& reads, double wall_seconds) const;
  /// An epoch that trained the whole model: `images` in `seconds` (cache builds excluded).
  void count_full_epoch(double images, double seconds);

  /// Stops a diverged run: throws ld::Error naming `what`, the epoch, the
  /// step and the learning rate when `value` is NaN or infinite (issue 31,
  /// defect 3). `checkpoint_kept`: a checkpoint of an earlier epoch boundary
  /// exists (nothing is checkpointed after a divergence).
  void check_finite(double value, const std::string& what, double train_lr, bool checkpoint_kept) const;

  /// Writes every field into `ckpt` (counters in its JSON, floating-point
  /// values and tensors as named tensors, so that they come back exactly).
  void save(Checkpoint& ckpt) const;
  /// Reads what save() wrote; throws ld::Error naming the checkpoint and the field at fault.
  void load(const Checkpoint& ckpt);
};

}  // namespace ld::core
