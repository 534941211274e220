#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/optim/optimizer.h>

#include "learndrop/core/config.h"
#include "learndrop/model.h"

namespace ld::core {

/// The optimizer over the trainable stages and the head, one parameter group
/// per stage, so that dropped stages can leave it.
class StagedOptimizer {
 public:
  StagedOptimizer(StagedModel& model, const TrainSettings& settings);

  /// Removes the parameter groups (and their state) of stages [0, cut).
  void drop_stages_before(std::size_t cut);

  /// Sets the learning rate of every group.
  void set_lr(double lr);

  void zero_grad() { optimizer_->zero_grad(); }
  void step() { optimizer_->step(); }

  /// Parameters the optimizer currently updates.
  std::vector<at::Tensor> parameters() const;

  /// Parameters that have optimizer state (momentum buffers, Adam moments).
  std::size_t state_entries() const;

  /// The state of the parameters it updates (LibTorch's optimizer archive).
  std::string save() const;
  /// Restores what save() returned, on an optimizer over the same groups
  /// (the same config, after the same drops). Throws ld::Error otherwise.
  void load(const std::string& bytes);

 private:
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<std::size_t> group_stage_;  ///< Stage of each group (num_stages for the head).
};

/// Learning rate at fractional `epoch` (0-based) of `settings.epochs`.
double learning_rate(const TrainSettings& settings, double epoch);

/// The linear warm-up's factor at fractional `epoch` of the run (1 after
/// `settings.warmup_epochs`): the one place the warm-up is computed, for
/// learning_rate and for a stream's restarting schedule alike.
double warmup_factor(const TrainSettings& settings, double epoch);

}  // namespace ld::core
