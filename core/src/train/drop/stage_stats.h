#pragma once

#include <vector>

#include <ATen/core/Tensor.h>

#include "learndrop/model.h"
#include "learndrop/policy.h"

namespace ld::core {

struct Checkpoint;

/// Measures, per stage, how much its parameters changed since the previous
/// evaluation point: ‖θ(t) − θ(t−1)‖₂ / ‖θ(t−1)‖₂, plus parameter and
/// gradient norms.
class StageStatsTracker {
 public:
  /// Takes the first snapshot θ(0).
  explicit StageStatsTracker(StagedModel& model);

  /// Statistics of every stage at the current point (stages < cut are
  /// reported as dropped), then the snapshot moves to the current weights.
  std::vector<StageStats> measure(std::size_t cut);

  /// Adds each trained stage's gradient norm of the step just taken to the
  /// period's mean (StageStats::mean_grad_norm); call after backward.
  void add_step_gradients(std::size_t cut);

  /// Adds the snapshot and the period's gradient sums to `ckpt`.
  void save(Checkpoint& ckpt) const;
  /// Restores what save() wrote, into tensors laid out as the current
  /// parameters (so that the measurements reduce in the same order).
  void load(const Checkpoint& ckpt);

 private:
  /// Each stage's sum of its steps' gradient norms since the last point.
  std::vector<double> step_norm_totals() const;

  StagedModel& model_;
  std::vector<std::vector<at::Tensor>> snapshot_;
  std::vector<at::Tensor> step_norm_sums_;  ///< Per stage, since the last point (a double on the device).
  std::int64_t grad_steps_ = 0;
};

}  // namespace ld::core
