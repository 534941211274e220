#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "learndrop/error.h"
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
  /// Mean over the period's steps of each step's ‖∇θ‖₂; filled only for a
  /// policy whose `wants_step_gradient_norms()` is true (0 otherwise), as it
  /// costs a pass over the gradients at every step.
  double mean_grad_norm = 0;
};

/// Everything a drop policy sees at an evaluation point.
struct PolicyInput {
  std::int64_t eval_point = 0;  ///< 1 for the first evaluation point of the run.
  std::int64_t step = 0;        ///< Optimizer steps done so far.
  double epoch = 0;             ///< Epochs done so far (fractional between epoch ends).
  std::size_t cut = 0;          ///< Stages dropped so far.
  double train_loss = 0;        ///< Mean training loss since the previous point.
  double lr = 0;                ///< Learning rate of the last step.
  /// Sum of the learning rates of the steps since the previous point: how far
  /// the schedule let the parameters move. Dividing a change by it makes the
  /// change independent of the schedule (a decaying learning rate alone then
  /// does not look like convergence).
  double lr_sum = 0;
  std::int64_t steps_since_point = 0;  ///< Optimizer steps since the previous point.
  /// Training samples the run has: all of them, or in a stream (stream.parts
  /// > 1) those arrived so far.
  std::int64_t samples = 0;
  /// Parts of a stream arrived so far (1 without a stream).
  std::int64_t arrivals = 1;
  /// Epochs done when the host last applied a drop this policy asked for
  /// (in shadow mode: when it would have); -1 before the first. A decision
  /// the host held back (its cost guard) or stages frozen by model.freeze
  /// are not drops of the policy. DropGuards' cooldown counts from here.
  double last_drop_epoch = -1;
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
  /// Epochs of the learning-rate schedule's linear warm-up (train.warmup_epochs).
  double lr_warmup_epochs = 0;
};

/// What a policy remembers between evaluation points, as named lists of
/// numbers (doubles, so integers up to 2^53 and every double round-trip
/// exactly). A checkpoint stores it; its names are the policy's business.
struct PolicyState {
  std::map<std::string, std::vector<double>> values;

  /// The list `name`; throws ld::Error naming it when absent or not `size` long (size < 0: any length).
  const std::vector<double>& at(const std::string& name, std::int64_t size = -1) const {
    auto it = values.find(name);
    if (it == values.end()) throw Error("policy state: no '" + name + "'");
    if (size >= 0 && static_cast<std::int64_t>(it->second.size()) != size) {
      throw Error("policy state: '" + name + "' has " + std::to_string(it->second.size()) + " values, expected " +
                  std::to_string(size));
    }
    return it->second;
  }
};

/// A drop criterion.
///
/// It sees per-stage statistics after each evaluation period and answers how
/// many leading stages may be dropped. It may keep state between calls; it
/// never touches the model. The host enforces the invariants: a smaller cut
/// than the current one is ignored, a cut past the last stage is clamped.
///
/// In shadow mode (`policy.shadow: true`) the host consults the policy exactly
/// as if its drops were applied (`cut` and `StageStats::dropped` follow its
/// answers) but trains every stage; the would-be drops are only logged.
class LEARNDROP_VISIBLE DropPolicy {
 public:
  virtual ~DropPolicy() = default;

  /// Evaluation period in optimizer steps; 0 means once per epoch.
  virtual std::int64_t period_steps() const { return 0; }

  /// Called at every evaluation point.
  virtual Decision decide(const PolicyInput& input) = 0;

  /// Whether the host should fill StageStats::mean_grad_norm (a gradient-norm
  /// pass at every step).
  virtual bool wants_step_gradient_norms() const { return false; }

  /// Whether this policy saves and restores its state (save_state and
  /// load_state). A policy that does not cannot be resumed from a checkpoint.
  virtual bool has_state() const { return false; }

  /// Everything decide() remembers from earlier calls.
  virtual PolicyState save_state() const { return {}; }

  /// Restores what save_state returned, on a policy made with the same
  /// options and context: it then decides exactly as the saved one would.
  /// Throws ld::Error on a state it cannot take.
  virtual void load_state(const PolicyState& state) {
    (void)state;
    throw Error("this policy does not restore its state");
  }
};

}  // namespace ld
