#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "learndrop/export.h"

namespace ld {

/// Statistics of one stage at an evaluation point, computed by the host.
struct StageStats {
  std::string name;
  bool dropped = false;         ///< Already frozen and removed from training.
  std::int64_t num_params = 0;  ///< Trainable parameter count of the stage.
  double param_norm = 0;        ///< ‖θ(t)‖₂ over the stage's parameters.
  /// ‖θ(t) − θ(t−1)‖₂ / ‖θ(t−1)‖₂ since the previous evaluation point
  /// (0 for a dropped stage).
  double relative_change = 0;
  double grad_norm = 0;  ///< ‖∇θ‖₂ of the last step (0 for a dropped stage).
};

/// Everything a drop policy sees at an evaluation point.
struct PolicyInput {
  std::int64_t eval_point = 0;  ///< 1 for the first evaluation point of the run.
  std::int64_t step = 0;        ///< Optimizer steps done so far.
  double epoch = 0;             ///< Epochs done so far (fractional between epoch ends).
  std::size_t cut = 0;          ///< Stages dropped so far.
  double train_loss = 0;        ///< Mean training loss since the previous point.
  std::vector<StageStats> stages;
};

/// A policy's answer: how many leading stages may be dropped, and why.
struct Decision {
  std::size_t cut = 0;
  std::string reason;
};

/// What a policy plugin learns from the host when it is created.
struct PolicyContext {
  std::size_t num_stages = 0;
  std::int64_t steps_per_epoch = 0;
  std::int64_t epochs = 0;
};

/// A drop criterion.
///
/// It sees per-stage statistics after each evaluation period and answers how
/// many leading stages may be dropped. It may keep state between calls; it
/// never touches the model. The host enforces the invariants: a smaller cut
/// than the current one is ignored, a cut past the last stage is clamped.
class LEARNDROP_VISIBLE DropPolicy {
 public:
  virtual ~DropPolicy() = default;

  /// Evaluation period in optimizer steps; 0 means once per epoch.
  virtual std::int64_t period_steps() const { return 0; }

  /// Called at every evaluation point.
  virtual Decision decide(const PolicyInput& input) = 0;
};

}  // namespace ld
