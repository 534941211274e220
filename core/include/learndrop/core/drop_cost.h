#pragma once
// Does a drop pay? The host's one answer, for every policy (docs/policies/
// learn-drop.md#does-a-drop-pay): the work a drop saves over the remaining
// schedule against the work it costs (building its cache, the rows of data
// that arrive later), for each way of dropping (DropMode), in a unit that
// needs no clock, so that the same config and seed make the same decisions.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "learndrop/core/cache_plan.h"
#include "learndrop/core/drop_controller.h"
#include "learndrop/core/flops.h"

namespace ld::core {

/// Work is counted in forward FLOPs: a trained stage costs 3x its forward
/// FLOPs per image (forward and backward), a frozen uncached stage 1x
/// (forward only), and moving a byte to or from memory (a cache row read or
/// written, an input decoded) `kFlopsPerByte`.
class DropCost {
 public:
  /// FLOP-equivalents of one byte moved (cache rows, inputs): the ratio of
  /// a 2-core CPU's training throughput (~240 GFLOP/s) to the bandwidth of
  /// its gathers (~8 GB/s); it only matters for cuts of large maps and few
  /// FLOPs (a ResNet's stem).
  static constexpr double kFlopsPerByte = 30;

  /// `input_shape` is a sample's [C, H, W]. The cache as `plan` makes it
  /// (a run's, or `ldrop model bench`'s): its row bytes at each cut, views per
  /// sample, and whether rows are shifted each epoch (one more copy).
  DropCost(const ModelProfile& profile, std::vector<std::int64_t> input_shape, const CachePlan& plan);
  /// A model of no stages (from_json fills one).
  DropCost() = default;

  /// What the model needs, as plain numbers (stats.jsonl records it, so that
  /// `ldrop policy replay` weighs drops exactly as the run did, without the
  /// model or the data); from_json throws ld::Error naming a missing field.
  nlohmann::json to_json() const;
  static DropCost from_json(const nlohmann::json& j);

  /// Work of training one image with `cache_cut` stages cached and `frozen` frozen.
  double step_work(std::size_t cache_cut, std::size_t frozen) const;
  /// Work of one cache row at `to` computed from the cache at `from` (0 = from the data).
  double row_work(std::size_t from, std::size_t to) const;

  /// What dropping to `target` in `mode` would save.
  struct Prediction {
    DropMode mode = DropMode::kCache;
    double saved = 0;  ///< Work saved by the remaining steps.
    double cost = 0;   ///< The build, and the rows of later arrivals.
    double net() const { return saved - cost; }
  };
  /// From (cache_cut, frozen) to `target` in `mode`, with `images_ahead`
  /// training images still to come, `cached_samples` samples to build rows
  /// for now and `arriving` samples whose rows later arrivals add.
  Prediction predict(std::size_t cache_cut, std::size_t frozen, std::size_t target, DropMode mode,
                     std::int64_t images_ahead, std::int64_t cached_samples, std::int64_t arriving) const;

 private:
  ModelProfile profile_;  // its FLOPs only: the output shapes are in row_bytes_
  double input_bytes_ = 0;
  std::vector<double> row_bytes_;
  std::int64_t views_ = 1;
  bool shifts_ = false;
};

/// The host's decision about a policy's cut: how to drop, or why not.
struct DropPlan {
  bool drop = false;
  DropMode mode = DropMode::kCache;
  DropCost::Prediction chosen;    ///< The prediction of `mode`.
  std::vector<DropCost::Prediction> options;  ///< Every mode weighed.
  std::string held;  ///< Why the drop is held back ("" when it happens).
};

/// policy.drop_mode with the policy's preference: a mode the config names
/// wins; with `auto` the policy's hint (cache or freeze) does.
std::string effective_drop_mode(const std::string& drop_mode, DropModeHint hint);

/// Weighs dropping to `target` in the modes `drop_mode` allows (auto: both,
/// the larger net saving wins, a tie goes to kFreeze, which keeps the real
/// augmentation); with `guard`, a drop whose net saving is not positive is
/// held back.
DropPlan plan_drop(const DropCost& cost, const std::string& drop_mode, bool guard, std::size_t cache_cut,
                   std::size_t frozen, std::size_t target, std::int64_t images_ahead, std::int64_t cached_samples,
                   std::int64_t arriving);

}  // namespace ld::core
