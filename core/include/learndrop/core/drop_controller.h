#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "learndrop/cache.h"
#include "learndrop/dataset.h"
#include "learndrop/model.h"

namespace ld::core {

/// Converts a model-layout batch (NCHW, channels-last strides) to the cache's
/// per-sample storage layout (NHWC, contiguous) and back, without changing a
/// single value. Tensors that are not 4-D are stored as they are.
at::Tensor to_storage_layout(const at::Tensor& batch);
at::Tensor from_storage_layout(const at::Tensor& stored, const std::vector<std::int64_t>& model_shape);

/// What one drop did.
struct DropReport {
  std::size_t from_cut = 0;
  std::size_t to_cut = 0;
  std::int64_t flops = 0;  ///< Forward FLOPs spent building the cache.
  double seconds = 0;
  std::int64_t cache_bytes = 0;
  std::string cache_description;
};

/// Owns the current cut and its feature cache, and holds the drop invariants:
/// only a prefix is dropped, a drop is monotone, dropped stages are frozen
/// (eval mode, no gradients), and a new cut is built from the previous cache
/// through the newly dropped stages only.
class DropController {
 public:
  using CacheMaker = std::function<std::shared_ptr<FeatureCache>()>;

  /// `stage_flops` and `stage_shapes` come from profile_model; the cache is
  /// built in batches of `build_batch`, stored as `dtype`.
  DropController(StagedModel& model, const Dataset& dataset, CacheMaker make_cache, at::ScalarType dtype,
                 std::vector<std::int64_t> stage_flops, std::vector<std::vector<std::int64_t>> stage_shapes,
                 std::int64_t build_batch, std::uint64_t seed);

  std::size_t cut() const { return cut_; }

  /// Freezes stages [cut, new_cut) and builds the cache at `new_cut` from the
  /// current one (or from the dataset at cut 0). `new_cut` must be larger than
  /// the current cut and at most the number of stages.
  DropReport advance(std::size_t new_cut);

  /// Puts dropped stages back in eval mode (call after `model.train()`).
  void keep_dropped_in_eval();

  /// Training inputs `indices` at the current cut: raw images at cut 0,
  /// cached features (in model layout) afterwards.
  at::Tensor inputs(const std::vector<std::int64_t>& indices, std::uint64_t augment_seed) const;

  /// A reader over cached features (model layout) for `order`; cut must be > 0.
  std::unique_ptr<BatchReader> reader(std::vector<std::int64_t> order, std::int64_t batch_size) const;

  /// Converts a batch from the cache reader into model layout.
  at::Tensor to_model_layout(const at::Tensor& stored) const;

  /// Training labels, gathered during the first cache build (undefined before).
  const at::Tensor& train_labels() const { return labels_; }

  /// The current cache (null at cut 0).
  const FeatureCache* cache() const { return cache_.get(); }

 private:
  StagedModel& model_;
  const Dataset& dataset_;
  CacheMaker make_cache_;
  at::ScalarType dtype_;
  std::vector<std::int64_t> stage_flops_;
  std::vector<std::vector<std::int64_t>> stage_shapes_;
  std::int64_t build_batch_;
  std::uint64_t seed_;
  std::size_t cut_ = 0;
  std::shared_ptr<FeatureCache> cache_;
  at::Tensor labels_;
};

}  // namespace ld::core
