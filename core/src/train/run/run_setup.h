#pragma once
// The setup part of a run (run_training = setup, loop, reporting): every
// object a run is made of, created from its config.

#include <cstdint>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

#include "learndrop/core/batch_feed.h"
#include "learndrop/core/cache_plan.h"
#include "learndrop/core/checkpoint.h"
#include "learndrop/core/config.h"
#include "learndrop/core/device.h"
#include "learndrop/core/drop_controller.h"
#include "drop/feature_probe.h"
#include "learndrop/core/flops.h"
#include "loop/optimizer.h"
#include "run/run_output.h"
#include "drop/stage_stats.h"
#include "learndrop/core/run.h"
#include "learndrop/core/judge.h"
#include "learndrop/policy.h"
#include "learndrop/core/drop_cost.h"
#include "loop/schedule.h"

namespace ld::core {

/// A run's parts. Created in order (device and precision, dataset, model,
/// policy, cache plugin, run folder, drop controller, optimizer, feed), so a
/// bad config or plugin fails before the run folder exists where it can.
struct RunParts {
  at::Device device = at::Device(at::kCPU);
  Precision precision = Precision::kFp32;
  std::unique_ptr<GradScaler> scaler;
  std::shared_ptr<Dataset> dataset;
  std::shared_ptr<StagedModel> model;
  std::string model_label;  ///< The model's label(), or its plugin's name.
  ModelProfile profile;
  std::int64_t n_train = 0;
  /// Steps of an epoch over every training sample (a stream's epochs have
  /// fewer before its last part arrives: schedule->steps_in).
  std::int64_t steps_per_epoch = 0;
  std::unique_ptr<Schedule> schedule;
  std::unique_ptr<DropCost> cost;
  /// model.freeze resolved: stages frozen from the first step.
  std::size_t freeze_stages = 0;
  /// What model.weights loaded ("" without).
  std::string weights_loaded;
  std::shared_ptr<DropPolicy> policy;
  PolicyContext policy_context;  ///< What the policy was created with.
  /// How the host takes the policy's answers: its drop guards, the cost
  /// guard, shadow mode (judge.h). Points at `cost`.
  JudgeRules judge;
  std::unique_ptr<RunOutput> out;
  std::unique_ptr<DropController> controller;
  std::unique_ptr<StagedOptimizer> optimizer;
  std::unique_ptr<StageStatsTracker> tracker;
  /// The feature probe (policy.probe_samples, or a policy that wants feature similarity); null without.
  std::unique_ptr<FeatureProbe> probe;
  std::unique_ptr<BatchFeed> feed;
  /// How the run caches and augments after a drop (what `ldrop cache plan` prints).
  CachePlan cache;
};

/// Creates the parts of the run of `cfg`: plugins from the host, the model on
/// its device (channels-last), the run folder with config.yaml. Throws
/// ld::Error naming the key or plugin at fault.
/// Sets LibTorch's threads and seed first. `checkpoint`: the run goes on in
/// its folder from it (restore_run then loads its state into the parts).
RunParts set_up_run(const RunConfig& cfg, const PluginHost& host, const RunOptions& opts,
                    const Checkpoint* checkpoint = nullptr);

}  // namespace ld::core
