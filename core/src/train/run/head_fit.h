#pragma once
// model.head: probe — a new head fitted to the loaded stages' features before
// fine-tuning (LP-FT: Kumar et al., "Fine-Tuning can Distort Pretrained
// Features and Underperform Out-of-Distribution", ICLR 2022).

#include <cstdint>
#include <vector>

#include "learndrop/core/config.h"
#include "learndrop/core/device.h"
#include "learndrop/dataset.h"
#include "learndrop/model.h"

namespace ld::core {

/// What the fit did, for the log and summary.json.
struct HeadFit {
  std::int64_t samples = 0;      ///< Training samples whose features the head saw.
  std::int64_t views = 0;        ///< Views of each (2: the image and its mirror; 1: one draw of its transform).
  std::int64_t epochs = 0;
  double lr = 0;
  double seconds = 0;            ///< Features and fit together: training time of the run.
  std::int64_t feature_flops = 0;  ///< Forward FLOPs of the features pass (samples x views x the whole model).
  double feature_bytes = 0;      ///< Memory the features took.
  double train_loss = 0;         ///< Mean loss of the fit's last epoch.
  double train_accuracy = 0;     ///< Of the fit's last epoch.
};

/// Fits `model`'s head, alone, to the output of all its stages over the
/// training samples `samples` (dataset indices): the stages run once in eval
/// mode without gradients and their outputs stay in memory; the head then
/// trains on them for cfg.model_head_epochs epochs with SGD at
/// cfg.model_head_lr (cosine to 0; the run's momentum, nesterov and weight
/// decay; its batch size; a seeded order per epoch). A dataset that shifts
/// and flips (Dataset::shift_flip) gives each sample its untransformed image
/// and its mirror; another augmenting dataset one seeded draw. The stages'
/// parameters and buffers are left as they were. `flops_per_sample`: the
/// whole model's forward FLOPs.
HeadFit fit_head(StagedModel& model, const Dataset& dataset, const std::vector<std::int64_t>& samples,
                 const RunConfig& cfg, at::Device device, Precision precision, std::int64_t flops_per_sample);

}  // namespace ld::core
