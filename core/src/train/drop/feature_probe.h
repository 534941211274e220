#pragma once
// How much each stage's function changes between evaluation points, seen
// through its output on a fixed batch of training samples: linear CKA
// (centred kernel alignment; Kornblith et al., "Similarity of Neural Network
// Representations Revisited", 2019) between the outputs now and at the
// previous point, and between now and the run's step 0. And the freeze
// probe: the batch's loss when a prefix of stages computes what it computed
// at the run's start (its output then), the rest as now.

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "learndrop/core/device.h"
#include "learndrop/dataset.h"
#include "learndrop/model.h"
#include "learndrop/policy.h"

namespace ld::core {

struct Checkpoint;

/// Linear CKA of two centred Gram matrices of the same samples: ⟨K, L⟩ /
/// (‖K‖ ‖L‖), 1 for representations equal up to rotation and isotropic scale.
/// 1 when both are zero (a stage whose output is constant on the batch).
double linear_cka(const at::Tensor& centred_k, const at::Tensor& centred_l);

/// The centred Gram matrix H X Xᵀ H (double, on the CPU) of `features`
/// [N, ...] flattened per sample.
at::Tensor centred_gram(const at::Tensor& features);

/// The probe: a fixed batch, its stages' Gram matrices at the run's start and
/// at the last evaluation point, and with `losses` its stages' outputs at the
/// start.
class FeatureProbe {
 public:
  /// `samples`: dataset indices of the training split (the batch is read
  /// once, with the augmentation seed 0: the same images at every point).
  /// `losses`: also measure the freeze probe (frozen_probe_loss, probe_loss).
  FeatureProbe(StagedModel& model, const Dataset& dataset, const std::vector<std::int64_t>& samples,
               at::Device device, Precision precision, bool losses);

  /// Fills StageStats::feature_similarity and feature_similarity_start of
  /// every stage and, with losses, StageStats::frozen_probe_loss and
  /// `*probe_loss`; the first call (at step 0) only takes the reference. Runs
  /// the model in eval mode: the caller puts training stages back in train
  /// mode.
  void measure(std::vector<StageStats>* stages, double* probe_loss = nullptr);

  std::int64_t samples() const { return inputs_.size(0); }
  bool losses() const { return losses_; }

  void save(Checkpoint& ckpt) const;
  void load(const Checkpoint& ckpt);

 private:
  StagedModel& model_;
  at::Tensor inputs_, labels_;
  at::Device device_;
  Precision precision_;
  bool losses_;
  std::vector<at::Tensor> start_, previous_;
  std::vector<at::Tensor> outputs_;  ///< Each stage's output at the start (losses only).
};

}  // namespace ld::core
