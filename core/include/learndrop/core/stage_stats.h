#pragma once

#include <vector>

#include <ATen/core/Tensor.h>

#include "learndrop/model.h"
#include "learndrop/policy.h"

namespace ld::core {

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

 private:
  StagedModel& model_;
  std::vector<std::vector<at::Tensor>> snapshot_;
};

}  // namespace ld::core
