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
  /// Mean over the period's steps of each step's ‖∇θ‖₂ (0 for a dropped
  /// stage). The host measures it at every step for every policy.
  double mean_grad_norm = 0;
  /// Linear CKA (centred kernel alignment, Kornblith et al. 2019) between the
  /// stage's output on the host's probe batch now and at the previous
  /// evaluation point: 1 when the stage computes the same representation up
  /// to rotation and scale, lower as its function moves. -1 when not
  /// measured: the host measures it when the policy's
  /// `wants_feature_similarity()` is true or `policy.probe_samples` > 0. The
  /// probe batch is a fixed set of training samples, without augmentation,
  /// run through the model in eval mode.
  double feature_similarity = -1;
  /// The same against the model the run started from (its step 0): how far
  /// fine-tuning has moved the stage's function from the trained weights.
  double feature_similarity_start = -1;
  /// The freeze probe: the probe batch's loss (mean cross-entropy, eval
  /// mode) with this stage and every one before it computing what they
  /// computed at the run's start (their outputs at step 0), the later stages
  /// and the head as they are now. Against PolicyInput::probe_loss it says
  /// what freezing the prefix up to here from the start would have cost, on
  /// the probe (an estimate: the later stages adapted to the prefix that
  /// moved). -1 when not measured: the host measures it when the policy's
  /// `wants_freeze_probe()` is true or `policy.probe_samples` > 0.
  double frozen_probe_loss = -1;
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
  /// The host held back the cut this policy answered at the previous point
  /// (`held_cut`, 0 when it did not) and why (`held_reason`): its cost guard
  /// predicted that the drop would not pay.
  std::size_t held_cut = 0;
  std::string held_reason;
  /// The probe batch's loss (mean cross-entropy, eval mode) with the model as
  /// it is now; -1 when the freeze probe is not measured (StageStats::frozen_probe_loss).
  double probe_loss = -1;
  std::vector<StageStats> stages;
};

/// How a policy would like a drop to be done (Decision::mode). The config's
/// policy.drop_mode decides when it names a mode; with `auto` a policy's
/// preference replaces the host's choice by its cost model.
enum class DropModeHint { kAny, kCache, kFreeze };

/// A policy's answer: how many leading stages may be dropped, and why.
struct Decision {
  std::size_t cut = 0;
  std::string reason;
  DropModeHint mode = DropModeHint::kAny;
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

  /// Whether the host should fill StageStats::feature_similarity and
  /// feature_similarity_start (a forward pass of the probe batch at every
  /// evaluation point).
  virtual bool wants_feature_similarity() const { return false; }

  /// Whether the host should fill PolicyInput::probe_loss and
  /// StageStats::frozen_probe_loss (the freeze probe: forward passes of the
  /// probe batch from each stage's output at the run's start).
  virtual bool wants_freeze_probe() const { return false; }

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
